// The authorization request's rules: refusals that must not be redirected are pages, every other goes back to the
// client with the error OpenID Connect names and the request's state; PKCE, response modes, scopes, hints and the
// claims request of Microsoft Entra ID's external authentication methods.
import OIDC
import Testing

@Suite struct AuthorizationRequestTests {
    static let settings = OIDCSettings(
        issuer: "https://login.example.com", signingKeyFiles: [],
        clients: [
            OIDCClient(
                clientID: "webapp", clientSecret: Array("a client secret of at least thirty-two bytes".utf8),
                redirectURIs: ["https://app.example.com/cb"], tenant: "contoso"),
            OIDCClient(
                clientID: "spa", clientSecret: nil, redirectURIs: ["http://127.0.0.1:5000/cb"], tenant: "contoso"),
            OIDCClient(
                clientID: "entra", clientSecret: nil,
                redirectURIs: ["https://login.microsoftonline.com/common/federation/externalauthprovider"],
                tenant: "contoso",
                hintTrust: HintTrust(
                    issuer: "https://login.microsoftonline.com/t/v2.0", keys: .file("k"), userClaim: "upn")),
        ])
    /// RFC 7636, appendix B.
    static let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

    func parse(_ parameters: [(String, String)]) throws(AuthorizationRefusal) -> AuthorizationRequest {
        try AuthorizationRequest.parse(parameters.map { (name: $0.0, value: $0.1) }, settings: Self.settings)
    }

    func refusal(_ parameters: [(String, String)]) -> AuthorizationRefusal? {
        do {
            _ = try parse(parameters)
            return nil
        } catch {
            return error
        }
    }

    /// The error sent back to the client, or "page" when it is shown to the browser.
    func error(_ parameters: [(String, String)]) -> String? {
        switch refusal(parameters) {
        case .page?: "page"
        case .toClient(_, _, let error, _, _)?: error
        case nil: nil
        }
    }

    static let web: [(String, String)] = [
        ("client_id", "webapp"), ("redirect_uri", "https://app.example.com/cb"), ("response_type", "code"),
        ("scope", "openid profile"), ("state", "s-1"), ("nonce", "n-1"),
    ]

    @Test func aConfidentialClientsCodeRequestIsReadWhole() throws {
        let request = try parse(Self.web + [("login_hint", "alice@contoso.com"), ("ui_locales", "en"), ("x", "y")])
        #expect(request.client.clientID == "webapp" && request.responseType == .code && request.responseMode == .query)
        #expect(request.scopes == ["openid", "profile"] && request.state == "s-1" && request.nonce == "n-1")
        #expect(request.loginHint == "alice@contoso.com" && request.codeChallenge == nil)
    }

    @Test func whatCannotGoBackToTheClientIsAPage() {
        #expect(error([("redirect_uri", "https://app.example.com/cb"), ("response_type", "code")]) == "page")
        #expect(error([("client_id", "nobody"), ("redirect_uri", "https://app.example.com/cb")]) == "page")
        // Exactly as registered: no trailing slash, no other case, no extra query.
        for uri in [
            "https://app.example.com/cb/", "https://APP.example.com/cb", "https://app.example.com/cb?x=1",
            "https://evil.example/cb",
        ] {
            #expect(error([("client_id", "webapp"), ("redirect_uri", uri), ("response_type", "code")]) == "page")
        }
        #expect(error([("client_id", "webapp")]) == "page")
        #expect(error(Self.web + [("client_id", "webapp")]) == "page", "client_id twice")
    }

    @Test func otherRefusalsGoBackWithTheirStateAndMode() {
        guard case .toClient(let uri, let mode, let sent, _, let state)? = refusal(Self.web + [("state", "again")])
        else {
            Issue.record("not sent back")
            return
        }
        #expect(uri == "https://app.example.com/cb" && mode == .query && sent == "invalid_request" && state == "again")
        let without = Self.web.filter { $0.0 != "response_type" }
        #expect(error(without) == "invalid_request")
        #expect(error(without + [("response_type", "token")]) == "unsupported_response_type")
        #expect(error(without + [("response_type", "code id_token")]) == "unsupported_response_type")
        #expect(error(Self.web + [("response_mode", "fragment")]) == "invalid_request")
        #expect(error(Self.web.filter { $0.0 != "scope" } + [("scope", "profile")]) == "invalid_scope")
        #expect(error(Self.web + [("prompt", "none")]) == "login_required")
        #expect(error(Self.web + [("claims", "not json")]) == "invalid_request")
        #expect(error(Self.web + [("id_token_hint", "a.b.c")]) == "invalid_request", "this client sends no hints")
        // A state too long to echo is not echoed.
        let long = Self.web.filter { $0.0 != "state" } + [("state", String(repeating: "s", count: 5000))]
        guard case .toClient(_, _, let tooLong, _, let echoed)? = refusal(long) else {
            Issue.record("not sent back")
            return
        }
        #expect(tooLong == "invalid_request" && echoed == nil)
    }

    @Test func pkceIsS256AndRequiredOfAPublicClient() throws {
        let spa: [(String, String)] = [
            ("client_id", "spa"), ("redirect_uri", "http://127.0.0.1:5000/cb"), ("response_type", "code"),
            ("scope", "openid"),
        ]
        #expect(error(spa) == "invalid_request")
        #expect(error(spa + [("code_challenge", Self.challenge)]) == "invalid_request", "plain is refused")
        #expect(
            error(spa + [("code_challenge", Self.challenge), ("code_challenge_method", "plain")]) == "invalid_request")
        #expect(error(spa + [("code_challenge", "short"), ("code_challenge_method", "S256")]) == "invalid_request")
        let notBase64URL = String(Self.challenge.dropLast()) + "!"
        #expect(
            error(spa + [("code_challenge", notBase64URL), ("code_challenge_method", "S256")]) == "invalid_request")
        #expect(error(spa + [("code_challenge_method", "S256")]) == "invalid_request")
        let request = try parse(spa + [("code_challenge", Self.challenge), ("code_challenge_method", "S256")])
        #expect(request.codeChallenge == Self.challenge)
    }

    /// Microsoft Entra ID's request to an external authentication method: id_token by form_post, a nonce, a hint and
    /// a claims request for acr and amr.
    @Test func anEntraRequestWithItsHintAndClaimsIsRead() throws {
        let claims =
            #"{"id_token":{"acr":{"essential":true,"values":["possessionorinherence"]},"amr":{"essential":true,"values":["face","fido","hwk","swk"]}}}"#
        let entra: [(String, String)] = [
            ("client_id", "entra"),
            ("redirect_uri", "https://login.microsoftonline.com/common/federation/externalauthprovider"),
            ("response_type", "id_token"), ("response_mode", "form_post"), ("scope", "openid"), ("nonce", "n"),
            ("state", "st"), ("id_token_hint", "h.e.s"), ("claims", claims),
        ]
        let request = try parse(entra)
        #expect(request.responseType == .idToken && request.responseMode == .formPost && request.idTokenHint == "h.e.s")
        #expect(
            request.claims
                == RequestedClaims(acrValues: ["possessionorinherence"], amrValues: ["face", "fido", "hwk", "swk"]))
        // id_token goes back by form_post only, and needs a nonce.
        #expect(error(entra.filter { $0.0 != "nonce" }) == "invalid_request")
        guard
            case .toClient(_, let mode, let refused, _, _)? = refusal(
                entra.filter { $0.0 != "response_mode" } + [("response_mode", "query")])
        else {
            Issue.record("not sent back")
            return
        }
        #expect(mode == .query && refused == "invalid_request")
        #expect(try parse(entra.filter { $0.0 != "response_mode" }).responseMode == .formPost, "its default")
    }
}
