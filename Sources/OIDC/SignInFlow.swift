// One browser's sign-in between the authorization request and the return to the client, sealed (FlowSeal) into
// the URL of its pages: no instance keeps it, so any instance serves any step and a restart loses none. It names
// the browser that started it (the random id of its cookie): a browser that only learns a page's URL cannot follow
// or finish the flow. Its stages form a small state machine: the user is named, then a challenge stands for the
// sign-in until it ends. (A password fallback ends the flow where it is decided: it has no stage.)
import JSONText

public struct SignInFlow: Sendable, Equatable {
    /// How long a flow's pages work: the longest a challenge lives (600 s) and time to type a name.
    public static let lifetimeSeconds: Int64 = 900

    public enum Stage: Sendable, Equatable {
        /// The page asks for the user's name.
        case naming
        /// The user's phones were asked: the browser shows `number` until the challenge ends.
        case challenged(userID: String, challengeID: String, number: Int)
    }

    /// The id in the cookie of the browser that started it.
    public var browser: String
    /// The request, without its hints: what the return to the client needs.
    public var request: AuthorizationRequest
    /// The ID token's `sub` when the client's `id_token_hint` named the user; else the user id.
    public var subject: String?
    public var stage: Stage
    /// Unix seconds.
    public var expiresAt: Int64

    public init(browser: String, request: AuthorizationRequest, subject: String?, stage: Stage, now: Int64) {
        self.browser = browser
        self.request = request.withoutHints
        self.subject = subject
        self.stage = stage
        expiresAt = now + Self.lifetimeSeconds
    }

    /// The flow as the `f` parameter of its pages.
    public func sealed(by seal: FlowSeal) -> String {
        seal.seal(
            JSONWriter.object { flow in
                flow.string("browser", browser)
                flow.string("client_id", request.client.clientID)
                flow.string("redirect_uri", request.redirectURI)
                flow.string("response_type", request.responseType.rawValue)
                flow.string("response_mode", request.responseMode.rawValue)
                flow.strings("scope", request.scopes)
                if let state = request.state { flow.string("state", state) }
                if let nonce = request.nonce { flow.string("nonce", nonce) }
                if let challenge = request.codeChallenge { flow.string("code_challenge", challenge) }
                flow.strings("acr_values", request.claims.acrValues)
                flow.strings("amr_values", request.claims.amrValues)
                if let subject { flow.string("sub", subject) }
                switch stage {
                case .naming: break
                case .challenged(let userID, let challengeID, let number):
                    flow.string("user_id", userID)
                    flow.string("challenge_id", challengeID)
                    flow.integer("number", Int64(number))
                }
                flow.integer("exp", expiresAt)
            }, for: .flow)
    }

    /// The flow sealed in `text`, when this provider sealed it, it has not expired at `now`, and its client and
    /// redirect URI are still registered in `settings`.
    public init?(_ text: String, seal: FlowSeal, settings: OIDCSettings, now: Int64) {
        guard let opened = seal.open(text, for: .flow), let json = JSONValue.parse(Array(opened.utf8)),
            let browser = json["browser"]?.string, let clientID = json["client_id"]?.string,
            let client = settings.client(clientID), let redirectURI = json["redirect_uri"]?.string,
            client.redirectURIs.contains(redirectURI),
            let responseType = json["response_type"]?.string.flatMap(AuthorizationRequest.ResponseType.init),
            let responseMode = json["response_mode"]?.string.flatMap(AuthorizationRequest.ResponseMode.init),
            let expiresAt = json["exp"]?.int, now < expiresAt
        else { return nil }
        func strings(_ name: String) -> [String] {
            guard case .array(let items)? = json[name] else { return [] }
            return items.compactMap(\.string)
        }
        let stage: Stage
        if let userID = json["user_id"]?.string, let challengeID = json["challenge_id"]?.string,
            let number = json["number"]?.int
        {
            stage = .challenged(userID: userID, challengeID: challengeID, number: number)
        } else {
            stage = .naming
        }
        self.browser = browser
        request = AuthorizationRequest(
            client: client, redirectURI: redirectURI, responseType: responseType, responseMode: responseMode,
            scopes: strings("scope"), state: json["state"]?.string, nonce: json["nonce"]?.string,
            codeChallenge: json["code_challenge"]?.string, loginHint: nil, idTokenHint: nil,
            claims: RequestedClaims(acrValues: strings("acr_values"), amrValues: strings("amr_values")))
        subject = json["sub"]?.string
        self.stage = stage
        self.expiresAt = Int64(expiresAt)
    }
}

extension AuthorizationRequest {
    var withoutHints: AuthorizationRequest {
        AuthorizationRequest(
            client: client, redirectURI: redirectURI, responseType: responseType, responseMode: responseMode,
            scopes: scopes, state: state, nonce: nonce, codeChallenge: codeChallenge, loginHint: nil,
            idTokenHint: nil, claims: claims)
    }
}
