// The token endpoint's rules and what it hands out: client authentication by one method (Basic, the form, or none
// for a public client), RFC 6749 §5.2's refusals, a code bound to its client, redirect URI, PKCE challenge and
// minute, and the ID token's claims as Entra's claims request asks for them.
import Crypto
import Foundation
import JSONText
import OIDC
import Testing

@Suite struct TokenRequestTests {
    static let secret = "a client secret of at least thirty-two bytes"
    static let settings = OIDCSettings(
        issuer: "https://login.example.com", signingKeyFiles: [],
        clients: [
            OIDCClient(
                clientID: "web app", clientSecret: Array(secret.utf8), redirectURIs: ["https://app.example.com/cb"],
                tenant: "contoso"),
            OIDCClient(
                clientID: "spa", clientSecret: nil, redirectURIs: ["http://127.0.0.1:5000/cb"], tenant: "contoso"),
        ])
    static let form: [(String, String)] = [
        ("grant_type", "authorization_code"), ("code", "c"), ("redirect_uri", "https://app.example.com/cb"),
    ]

    func parse(_ form: [(String, String)], _ authorization: String? = nil) throws(TokenRefusal) -> TokenRequest {
        try TokenRequest.parse(
            form: form.map { (name: $0.0, value: $0.1) }, authorization: authorization, settings: Self.settings)
    }

    func refusal(_ form: [(String, String)], _ authorization: String? = nil) -> TokenRefusal? {
        do {
            _ = try parse(form, authorization)
            return nil
        } catch {
            return error
        }
    }

    /// RFC 6749 §2.3.1: each part form-urlencoded, then base64.
    static func basic(_ id: String, _ secret: String) -> String {
        func encoded(_ text: String) -> String {
            text.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!.replacingOccurrences(
                of: "%20", with: "+")
        }
        return "Basic " + Data("\(encoded(id)):\(encoded(secret))".utf8).base64EncodedString()
    }

    @Test func aConfidentialClientAuthenticatesByBasicOrByTheForm() throws {
        let byBasic = try parse(Self.form, Self.basic("web app", Self.secret))
        #expect(byBasic.client.clientID == "web app" && byBasic.code == "c" && byBasic.codeVerifier == nil)
        let byForm = try parse(Self.form + [("client_id", "web app"), ("client_secret", Self.secret)])
        #expect(byForm.client.clientID == "web app")
        // Both at once, a wrong secret, none, an unknown client.
        #expect(
            refusal(Self.form + [("client_secret", Self.secret)], Self.basic("web app", Self.secret))?.error
                == "invalid_request")
        let wrong = refusal(Self.form, Self.basic("web app", "not the secret"))
        #expect(wrong?.status == 401 && wrong?.error == "invalid_client" && wrong?.basic == true)
        #expect(refusal(Self.form + [("client_id", "web app")])?.error == "invalid_client")
        #expect(refusal(Self.form + [("client_id", "nobody")])?.status == 401)
        #expect(refusal(Self.form, "Bearer x")?.error == "invalid_client")
        let malformed = "Basic " + Data("web%ZZapp:\(Self.secret)".utf8).base64EncodedString()
        #expect(refusal(Self.form, malformed)?.status == 401, "a malformed escape in the credentials")
        #expect(
            refusal(Self.form + [("client_id", "spa")], Self.basic("web app", Self.secret))?.error == "invalid_request")
    }

    @Test func aPublicClientNamesItselfAndSendsNoSecret() throws {
        let form = [
            ("grant_type", "authorization_code"), ("code", "c"), ("redirect_uri", "http://127.0.0.1:5000/cb"),
            ("client_id", "spa"), ("code_verifier", String(repeating: "v", count: 43)),
        ]
        #expect(try parse(form).client.clientID == "spa")
        #expect(
            refusal(form + [("client_secret", "anything at all, even thirty-two bytes")])?.error == "invalid_client")
    }

    @Test func theGrantIsReadStrictly() {
        let auth = Self.basic("web app", Self.secret)
        #expect(refusal(Self.form.filter { $0.0 != "grant_type" }, auth)?.error == "invalid_request")
        #expect(
            refusal(Self.form.filter { $0.0 != "grant_type" } + [("grant_type", "password")], auth)?.error
                == "unsupported_grant_type")
        #expect(refusal(Self.form.filter { $0.0 != "code" }, auth)?.error == "invalid_request")
        #expect(refusal(Self.form.filter { $0.0 != "redirect_uri" }, auth)?.error == "invalid_request")
        #expect(refusal(Self.form + [("code", "again")], auth)?.error == "invalid_request")
        #expect(refusal(Self.form + [("code_verifier", "too-short")], auth)?.error == "invalid_request")
        #expect(
            refusal(Self.form + [("code_verifier", String(repeating: "a", count: 42) + "!")], auth)?.error
                == "invalid_request")
        let body = JSONValue.parse(Array((refusal(Self.form, "Bearer x")?.body ?? "").utf8))
        #expect(body?["error"]?.string == "invalid_client" && body?["error_description"]?.string != nil)
    }
}

@Suite struct AuthorizationCodeTests {
    static let seal = FlowSeal(signingKey: try! OIDCSigningKey(pem: try! P256PrivateKey().pem, certificateName: "x"))
    /// RFC 7636, appendix B.
    static let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    static let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

    func request(
        _ client: String = "spa", redirect: String = "http://127.0.0.1:5000/cb", verifier: String?
    )
        -> TokenRequest
    {
        let settings = TokenRequestTests.settings
        var form = [("grant_type", "authorization_code"), ("code", "c"), ("redirect_uri", redirect)]
        if let verifier { form.append(("code_verifier", verifier)) }
        let auth = client == "spa" ? nil : TokenRequestTests.basic(client, TokenRequestTests.secret)
        if client == "spa" { form.append(("client_id", "spa")) }
        return try! TokenRequest.parse(
            form: form.map { (name: $0.0, value: $0.1) }, authorization: auth, settings: settings)
    }

    @Test func aCodeOpensToWhatWasSealedAndIsBoundToItsClientRedirectVerifierAndMinute() throws {
        let code = AuthorizationCode(
            clientID: "spa", redirectURI: "http://127.0.0.1:5000/cb", codeChallenge: Self.challenge,
            tenantID: "contoso",
            userID: "alice@contoso.com", subject: "alice@contoso.com", challengeID: "ch_1", nonce: "n",
            requested: RequestedClaims(acrValues: ["possessionorinherence"], amrValues: ["swk"]), authTime: 1_000)
        let opened = try #require(AuthorizationCode(code: code.sealed(by: Self.seal), seal: Self.seal))
        #expect(opened == code && opened.expiresAt == 1_060)
        #expect(AuthorizationCode(code: "garbage", seal: Self.seal) == nil)
        #expect(code.redeemable(by: request(verifier: Self.verifier), now: 1_059))
        #expect(!code.redeemable(by: request(verifier: Self.verifier), now: 1_060), "a minute at most")
        #expect(!code.redeemable(by: request(verifier: nil), now: 1_001), "the verifier is required")
        #expect(!code.redeemable(by: request(verifier: String(repeating: "x", count: 43)), now: 1_001))
        #expect(
            !code.redeemable(by: request(redirect: "http://127.0.0.1:5000/other", verifier: Self.verifier), now: 1_001))
        #expect(
            !code.redeemable(
                by: request("web app", redirect: "https://app.example.com/cb", verifier: Self.verifier), now: 1_001))
        var unbound = code
        unbound.codeChallenge = nil
        #expect(unbound.redeemable(by: request(verifier: nil), now: 1_001))
        #expect(!unbound.redeemable(by: request(verifier: Self.verifier), now: 1_001), "a verifier for no challenge")
    }
}

@Suite struct IDTokenTests {
    func claims(_ requested: RequestedClaims, nonce: String? = "n-1") throws -> JSONValue {
        try #require(
            JSONValue.parse(
                Array(
                    IDToken.claims(
                        issuer: "https://login.example.com", clientID: "webapp", subject: "hint-sub",
                        userID: "alice@contoso.com",
                        nonce: nonce, challengeID: "ch_1", authTime: 1_700_000_000, issuedAt: 1_700_000_005,
                        requested: requested
                    ).utf8)))
    }

    @Test func theClaimsAreTheContractsWithAcrAndAmrAsRequested() throws {
        let plain = try claims(RequestedClaims())
        #expect(plain["iss"]?.string == "https://login.example.com" && plain["aud"]?.string == "webapp")
        #expect(plain["sub"]?.string == "hint-sub" && plain["preferred_username"]?.string == "alice@contoso.com")
        #expect(plain["iat"]?.int == 1_700_000_005 && plain["exp"]?.int == 1_700_000_605)
        #expect(plain["auth_time"]?.int == 1_700_000_000 && plain["nonce"]?.string == "n-1")
        #expect(plain["approvald_challenge_id"]?.string == "ch_1")
        #expect(plain["acr"] == nil && plain["amr"] == .array([.string("hwk")]))
        let entra = try claims(
            RequestedClaims(acrValues: ["possessionorinherence", "x"], amrValues: ["face", "swk", "fido"]),
            nonce: nil)
        #expect(entra["acr"]?.string == "possessionorinherence" && entra["amr"] == .array([.string("swk")]))
        #expect(entra["nonce"] == nil)
        #expect(try claims(RequestedClaims(amrValues: ["swk", "hwk"]))["amr"] == .array([.string("hwk")]))
    }
}
