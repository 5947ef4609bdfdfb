// A sign-in's flow and the access token travel sealed: what one instance sealed comes back whole on another with
// the same key, until it expires, and only while its client and redirect URI are still registered; the hints are
// never sealed into it.
import Crypto
import OIDC
import Testing

@Suite struct SignInFlowTests {
    static let settings = TokenRequestTests.settings
    static let seal = FlowSeal(signingKey: try! OIDCSigningKey(pem: try! P256PrivateKey().pem, certificateName: "x"))

    static func request(state: String? = "s t&é", hint: String? = "alice") throws -> AuthorizationRequest {
        let parameters: [(name: String, value: String)] =
            [
                ("client_id", "web app"), ("redirect_uri", "https://app.example.com/cb"), ("response_type", "code"),
                ("scope", "openid profile"), ("nonce", "n"),
                ("code_challenge", Base64URL.encode(SHA256.hash(Array("verifier".utf8)))),
                ("code_challenge_method", "S256"),
                ("claims", #"{"id_token":{"acr":{"values":["possessionorinherence"]},"amr":{"values":["swk"]}}}"#),
            ] + (state.map { [("state", $0)] } ?? []) + (hint.map { [("login_hint", $0)] } ?? [])
        return try AuthorizationRequest.parse(parameters, settings: settings)
    }

    @Test(arguments: [
        SignInFlow.Stage.naming, .challenged(userID: "alice@contoso.com", challengeID: "ch_x", number: 42),
    ])
    func aFlowComesBackWholeWithoutItsHints(stage: SignInFlow.Stage) throws {
        let checked = try Self.request()
        let flow = SignInFlow(browser: "browser-id", request: checked, subject: "sub-1", stage: stage, now: 1_000)
        let sealed = flow.sealed(by: Self.seal)
        let opened = try #require(SignInFlow(sealed, seal: Self.seal, settings: Self.settings, now: 1_000))
        #expect(opened == flow && opened.stage == stage && opened.request.loginHint == nil)
        #expect(opened.request.claims.acrValues == ["possessionorinherence"] && opened.request.state == "s t&é")
        #expect(opened.expiresAt == 1_000 + SignInFlow.lifetimeSeconds)
        #expect(!sealed.contains("alice"))
        // Expired, sealed by another key, or for a client no longer registered: no flow.
        #expect(SignInFlow(sealed, seal: Self.seal, settings: Self.settings, now: 1_900) == nil)
        let other = FlowSeal(signingKey: try OIDCSigningKey(pem: try P256PrivateKey().pem, certificateName: "x"))
        #expect(SignInFlow(sealed, seal: other, settings: Self.settings, now: 1_000) == nil)
        let without = OIDCSettings(
            issuer: Self.settings.issuer, signingKeyFiles: [], clients: Array(Self.settings.clients.dropFirst()))
        #expect(SignInFlow(sealed, seal: Self.seal, settings: without, now: 1_000) == nil)
        // A code is not a flow.
        #expect(SignInFlow(Self.seal.seal("{}", for: .code), seal: Self.seal, settings: Self.settings, now: 0) == nil)
    }

    @Test func aFlowWithoutStateOrSubjectStaysWithout() throws {
        let flow = SignInFlow(
            browser: "b", request: try Self.request(state: nil, hint: nil), subject: nil, stage: .naming, now: 5)
        let opened = SignInFlow(flow.sealed(by: Self.seal), seal: Self.seal, settings: Self.settings, now: 5)
        #expect(opened == flow && opened?.request.state == nil && opened?.subject == nil)
    }

    @Test func anAccessTokenIsGoodForItsLifetimeOnly() throws {
        let token = AccessToken(clientID: "web app", subject: "sub-1", userID: "alice", issuedAt: 100)
        let sealed = token.sealed(by: Self.seal)
        #expect(AccessToken(sealed, seal: Self.seal, now: 100) == token)
        #expect(AccessToken(sealed, seal: Self.seal, now: 100 + AccessToken.lifetimeSeconds) == nil)
        #expect(AccessToken(Self.seal.seal("{}", for: .flow), seal: Self.seal, now: 100) == nil)
        #expect(token.userinfo == #"{"sub":"sub-1","preferred_username":"alice"}"#)
    }
}
