// What an authorization code stands for, sealed into the code itself (FlowSeal): the client, the redirect URI and
// the PKCE challenge it is bound to, who signed in by which challenge, and when it stops being redeemable. That it
// is redeemed once is a commit on the challenge, not a matter of this value.
import Crypto
import JSONText

public struct AuthorizationCode: Sendable, Equatable {
    /// How long a code may be redeemed.
    public static let lifetimeSeconds: Int64 = 60

    public var clientID: String
    public var redirectURI: String
    public var codeChallenge: String?
    public var tenantID: String
    public var userID: String
    /// The ID token's `sub`: the user id, or the hint's `sub`.
    public var subject: String
    public var challengeID: String
    public var nonce: String?
    public var requested: RequestedClaims
    /// Unix seconds.
    public var authTime: Int64
    public var expiresAt: Int64

    public init(
        clientID: String, redirectURI: String, codeChallenge: String?, tenantID: String, userID: String,
        subject: String, challengeID: String, nonce: String?, requested: RequestedClaims, authTime: Int64
    ) {
        self.clientID = clientID
        self.redirectURI = redirectURI
        self.codeChallenge = codeChallenge
        self.tenantID = tenantID
        self.userID = userID
        self.subject = subject
        self.challengeID = challengeID
        self.nonce = nonce
        self.requested = requested
        self.authTime = authTime
        expiresAt = authTime + Self.lifetimeSeconds
    }

    /// The code: this value sealed.
    public func sealed(by seal: FlowSeal) -> String {
        seal.seal(
            JSONWriter.object { code in
                code.string("client_id", clientID)
                code.string("redirect_uri", redirectURI)
                code.string("code_challenge", codeChallenge)
                code.string("tenant", tenantID)
                code.string("user_id", userID)
                code.string("sub", subject)
                code.string("challenge_id", challengeID)
                code.string("nonce", nonce)
                code.strings("acr_values", requested.acrValues)
                code.strings("amr_values", requested.amrValues)
                code.integer("auth_time", authTime)
                code.integer("exp", expiresAt)
            }, for: .code)
    }

    /// The code's value; nil for anything that is not a code this provider sealed.
    public init?(code: String, seal: FlowSeal) {
        guard let text = seal.open(code, for: .code), let json = JSONValue.parse(Array(text.utf8)),
            let clientID = json["client_id"]?.string, let redirectURI = json["redirect_uri"]?.string,
            let tenantID = json["tenant"]?.string, let userID = json["user_id"]?.string,
            let subject = json["sub"]?.string, let challengeID = json["challenge_id"]?.string,
            let authTime = json["auth_time"]?.int, let expiresAt = json["exp"]?.int
        else { return nil }
        func strings(_ name: String) -> [String] {
            guard case .array(let items)? = json[name] else { return [] }
            return items.compactMap(\.string)
        }
        self.init(
            clientID: clientID, redirectURI: redirectURI, codeChallenge: json["code_challenge"]?.string,
            tenantID: tenantID, userID: userID, subject: subject, challengeID: challengeID,
            nonce: json["nonce"]?.string,
            requested: RequestedClaims(acrValues: strings("acr_values"), amrValues: strings("amr_values")),
            authTime: Int64(authTime))
        self.expiresAt = Int64(expiresAt)
    }

    /// Whether `request` may redeem this code at `now` (Unix seconds): the same client and redirect URI, not
    /// expired, and the PKCE verifier matching the challenge (RFC 7636 §4.6) when the code is bound to one.
    public func redeemable(by request: TokenRequest, now: Int64) -> Bool {
        guard request.client.clientID == clientID, request.redirectURI == redirectURI, now < expiresAt else {
            return false
        }
        guard let codeChallenge else { return request.codeVerifier == nil }
        guard let verifier = request.codeVerifier else { return false }
        let computed = Base64URL.encode(SHA256.hash(Array(verifier.utf8)))
        return constantTimeEquals(Array(computed.utf8), Array(codeChallenge.utf8))
    }
}
