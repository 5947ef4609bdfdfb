// The authorization request (OpenID Connect Core §3.1.2.1, RFC 6749 §4.1.1, RFC 7636) as approvald takes it: read
// from the query or the form, each parameter at most once and bounded, and checked against the client's
// registration. What cannot be trusted to go back to the client (an unknown client, a redirect URI not registered
// for it) is shown to the browser instead; every other refusal goes back to the redirect URI with `error`.
import Crypto
import JSONText

/// A checked authorization request.
public struct AuthorizationRequest: Sendable, Equatable {
    public enum ResponseType: String, Sendable {
        case code
        case idToken = "id_token"
    }

    public enum ResponseMode: String, Sendable {
        case query
        case formPost = "form_post"
    }

    public let client: OIDCClient
    public let redirectURI: String
    public let responseType: ResponseType
    public let responseMode: ResponseMode
    public let scopes: [String]
    public let state: String?
    public let nonce: String?
    /// The PKCE S256 challenge (base64url of a SHA-256), which the token request's verifier must match.
    public let codeChallenge: String?
    public let loginHint: String?
    public let idTokenHint: String?
    /// What the `claims` parameter asks of the ID token's `acr` and `amr`.
    public let claims: RequestedClaims
}

/// The acceptable `acr` and `amr` values a `claims` request lists for the ID token (empty: none asked for).
public struct RequestedClaims: Sendable, Equatable {
    public var acrValues: [String] = []
    public var amrValues: [String] = []

    public init(acrValues: [String] = [], amrValues: [String] = []) {
        self.acrValues = acrValues
        self.amrValues = amrValues
    }
}

/// Why an authorization request is refused, and where the refusal goes.
public enum AuthorizationRefusal: Error, Sendable, Equatable {
    /// Shown to the browser (400), never redirected: the client or its redirect URI is unknown.
    case page(String)
    /// Sent back to the client's redirect URI: `error` (RFC 6749 §4.1.2.1, OpenID Connect Core §3.1.2.6), a
    /// description, and the request's `state`.
    case toClient(
        redirectURI: String, responseMode: AuthorizationRequest.ResponseMode, error: String, description: String,
        state: String?)
}

extension AuthorizationRequest {
    /// The parameters approvald reads; others are ignored, as OpenID Connect Core asks (§3.1.2.1).
    static let known: Set<String> = [
        "client_id", "redirect_uri", "response_type", "response_mode", "scope", "state", "nonce", "code_challenge",
        "code_challenge_method", "login_hint", "id_token_hint", "claims", "prompt", "max_age", "ui_locales",
        "acr_values", "display",
    ]

    /// Each parameter's bound in bytes; a `claims` request is JSON, an `id_token_hint` a JWT.
    static func limit(of name: String) -> Int {
        switch name {
        case "id_token_hint": 16_384
        case "claims", "state", "redirect_uri": 4_096
        default: 1_024
        }
    }

    /// Reads `parameters` (the query's or the form's, decoded) for a client of `settings`.
    public static func parse(
        _ parameters: [(name: String, value: String)], settings: OIDCSettings
    ) throws(AuthorizationRefusal) -> AuthorizationRequest {
        var values: [String: String] = [:]
        var repeated: String?
        var tooLong: String?
        for (name, value) in parameters where known.contains(name) {
            if values.updateValue(value, forKey: name) != nil { repeated = repeated ?? name }
            if value.utf8.count > limit(of: name) { tooLong = tooLong ?? name }
        }
        // The client and its redirect URI first: until both are known, nothing may be sent anywhere.
        guard repeated != "client_id", repeated != "redirect_uri", let clientID = values["client_id"],
            !clientID.isEmpty
        else { throw .page("The request names no client (client_id), or names one twice.") }
        guard let client = settings.client(clientID) else {
            throw .page("The request names a client this sign-in service does not know.")
        }
        guard let redirectURI = values["redirect_uri"], client.redirectURIs.contains(redirectURI) else {
            throw .page("The request's redirect_uri is not one the client registered.")
        }
        let state = values["state"].flatMap { $0.utf8.count <= limit(of: "state") ? $0 : nil }
        let responseType = values["response_type"].flatMap(ResponseType.init(rawValue:))
        // The mode a refusal goes back in: the one asked for when it is known, else the response type's default.
        let asked = values["response_mode"].flatMap(ResponseMode.init(rawValue:))
        let mode = asked ?? (responseType == .idToken ? .formPost : .query)
        func refuse(_ error: String, _ description: String) -> AuthorizationRefusal {
            .toClient(
                redirectURI: redirectURI, responseMode: mode, error: error, description: description, state: state)
        }
        if let repeated { throw refuse("invalid_request", "\(repeated) is given more than once") }
        if let tooLong { throw refuse("invalid_request", "\(tooLong) is too long") }
        guard values["response_type"] != nil else { throw refuse("invalid_request", "response_type is required") }
        guard let responseType else {
            throw refuse("unsupported_response_type", "response_type is code, or id_token with form_post")
        }
        if let given = values["response_mode"], asked == nil {
            throw refuse("invalid_request", "response_mode \(given) is not supported (query, form_post)")
        }
        if responseType == .idToken && mode != .formPost {
            throw refuse("invalid_request", "response_type id_token is returned by form_post only")
        }
        let scopes = (values["scope"] ?? "").split(separator: " ").map(String.init)
        guard scopes.contains("openid") else { throw refuse("invalid_scope", "scope must include openid") }
        let nonce = values["nonce"]
        if responseType == .idToken && (nonce ?? "").isEmpty {
            throw refuse("invalid_request", "nonce is required with response_type id_token")
        }
        let codeChallenge = values["code_challenge"]
        if let codeChallenge {
            guard values["code_challenge_method"] == "S256" else {
                throw refuse("invalid_request", "code_challenge_method must be S256")
            }
            guard isCodeChallenge(codeChallenge) else {
                throw refuse("invalid_request", "code_challenge is not the base64url of a SHA-256 (43 characters)")
            }
        } else if values["code_challenge_method"] != nil {
            throw refuse("invalid_request", "code_challenge_method without code_challenge")
        }
        if client.clientSecret == nil && responseType == .code && codeChallenge == nil {
            throw refuse("invalid_request", "a public client must use PKCE (code_challenge, S256)")
        }
        if values["prompt"]?.split(separator: " ").contains("none") == true {
            throw refuse("login_required", "signing in needs the user's phone")
        }
        let idTokenHint = values["id_token_hint"]
        if idTokenHint != nil && client.hintTrust == nil {
            throw refuse("invalid_request", "this client is not set up to send an id_token_hint")
        }
        let loginHint = values["login_hint"].flatMap { $0.isEmpty ? nil : $0 }
        let claims: RequestedClaims
        if let text = values["claims"] {
            guard let parsed = requestedClaims(text) else {
                throw refuse("invalid_request", "claims is not a claims request (OpenID Connect Core §5.5)")
            }
            claims = parsed
        } else {
            claims = RequestedClaims()
        }
        return AuthorizationRequest(
            client: client, redirectURI: redirectURI, responseType: responseType, responseMode: mode, scopes: scopes,
            state: state, nonce: nonce, codeChallenge: codeChallenge, loginHint: loginHint, idTokenHint: idTokenHint,
            claims: claims)
    }

    /// The base64url of a SHA-256, without padding: an S256 challenge (RFC 7636 §4.2).
    static func isCodeChallenge(_ text: String) -> Bool {
        text.utf8.count == 43 && Base64URL.decode(text)?.count == SHA256.byteCount
    }

    /// The ID token's `acr` and `amr` values of a claims request; nil when it is not a JSON object of objects.
    static func requestedClaims(_ text: String) -> RequestedClaims? {
        guard let request = JSONValue.parse(Array(text.utf8)), case .object = request else { return nil }
        guard let idToken = request["id_token"] else { return RequestedClaims() }
        guard case .object = idToken else { return nil }
        func values(_ name: String) -> [String]? {
            guard let claim = idToken[name] else { return [] }
            if claim == .null { return [] }
            guard case .object = claim else { return nil }
            if let single = claim["value"]?.string { return [single] }
            guard let list = claim["values"] else { return [] }
            guard case .array(let items) = list else { return nil }
            let strings = items.compactMap(\.string)
            return strings.count == items.count ? strings : nil
        }
        guard let acr = values("acr"), let amr = values("amr") else { return nil }
        return RequestedClaims(acrValues: acr, amrValues: amr)
    }
}
