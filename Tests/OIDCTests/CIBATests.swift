// Keycloak's side of its CIBA authentication channel, as approvald reads it: the bearer token (signed by a realm key
// named by kid, from the realm, not expired, with a jti) and the authentication request's body (the binding message
// is the number to match: one or two digits).
import Crypto
import Foundation
import OIDC
import Testing

@Suite struct CIBATests {
    static let issuer = "https://sso.example.com/realms/acme"
    static let now: Int64 = 1_796_000_000
    /// The realm keys of IDTokenHintTests: one RSA (rsa-1), one P-256 (ec-1).
    static let keys = IDTokenHintTests.keys

    /// A token shaped as HttpAuthenticationChannelProvider makes one.
    static func token(
        kid: String = "rsa-1", alg: String = "RS256", issuer: String = issuer, expiresAt: Int64 = now + 115,
        jti: String? = "b2f1c0a4-6c1e-4a53-9d0e-1f3a2b4c5d6e"
    ) throws -> String {
        let header = #"{"alg":"\#(alg)","typ":"JWT","kid":"\#(kid)"}"#
        var claims = #"{"exp":\#(expiresAt),"#
        if let jti { claims += #""jti":"\#(jti)","# }
        claims += #""iss":"\#(issuer)","aud":"\#(Self.issuer)","sub":"f1e2","typ":"Bearer","azp":"shop"}"#
        return alg == "ES256"
            ? try JWT.signES256(headerJSON: header, claimsJSON: claims, key: IDTokenHintTests.p256)
            : try JWT.signRS256(headerJSON: header, claimsJSON: claims, key: IDTokenHintTests.rsa)
    }

    func verify(_ token: String) throws(JWTRefusal) -> CIBAToken {
        try CIBAToken.verify(token, issuer: Self.issuer, keys: Self.keys, now: Self.now)
    }

    func refusal(_ token: String) -> JWTRefusal? { refusalOf { () throws(JWTRefusal) in try verify(token) } }

    @Test func aTokenFromTheRealmNamesItsRequestAndClient() throws {
        let raw = try Self.token()
        let token = try verify(raw)
        #expect(token.raw == raw && token.id == "b2f1c0a4-6c1e-4a53-9d0e-1f3a2b4c5d6e")
        #expect(token.clientID == "shop" && token.expiresAt == Self.now + 115)
        #expect(try verify(try Self.token(kid: "ec-1", alg: "ES256")).clientID == "shop")
    }

    @Test func everyOtherTokenIsRefusedAndSaysWhy() throws {
        #expect(
            refusal(try Self.token(issuer: "https://sso.example.com/realms/other"))
                == .invalid("the bearer token is from another issuer"))
        #expect(refusal(try Self.token(expiresAt: Self.now)) == .invalid("the bearer token has expired"))
        #expect(refusal(try Self.token(jti: nil)) == .invalid("the bearer token has no jti"))
        #expect(refusal(try Self.token(kid: "rsa-9")) == .unknownKey(token: "the bearer token"))
        #expect(
            refusal(try Self.token(kid: "ec-1"))
                == .invalid("the bearer token's alg does not match its key (RS256 or ES256)"))
        // One character in the middle of the signature changed (the last one may carry only padding bits).
        let token = try Self.token()
        let middle = token.index(token.endIndex, offsetBy: -100)
        let forged = token.replacingCharacters(in: middle...middle, with: token[middle] == "A" ? "B" : "A")
        #expect(refusal(forged) == .invalid("the bearer token's signature does not verify"))
        #expect(refusal("a.b") == .invalid("the bearer token is not a signed JWT"))
        #expect(
            refusal(String(repeating: "a", count: CIBAToken.maximumLength + 1))
                == .invalid("the bearer token is too long"))
    }

    func request(_ body: String) throws(CIBARequestError) -> CIBARequest { try CIBARequest(json: Array(body.utf8)) }

    @Test func theRequestsBindingMessageIsTheNumber() throws {
        let read = try request(
            #"{"scope":"openid profile","binding_message":"07","login_hint":"mia","is_consent_required":true,"acr_values":"phr","extra":[1]}"#
        )
        #expect(read.loginHint == "mia" && read.number == 7 && read.scope == "openid profile")
        #expect(read.acrValues == "phr" && read.consentRequired)
        let minimal = try request(#"{"binding_message":"5","login_hint":"mia","scope":null,"acr_values":null}"#)
        #expect(minimal.number == 5 && minimal.scope == nil && !minimal.consentRequired)
    }

    @Test func aRequestWithoutANumberOrUserIsRefused() {
        for (body, why) in [
            (
                #"{"binding_message":"123","login_hint":"mia"}"#,
                "binding_message must be the number to match: one or two digits"
            ),
            (
                #"{"binding_message":"4a","login_hint":"mia"}"#,
                "binding_message must be the number to match: one or two digits"
            ),
            (
                #"{"binding_message":"-1","login_hint":"mia"}"#,
                "binding_message must be the number to match: one or two digits"
            ),
            (
                #"{"binding_message":null,"login_hint":"mia"}"#,
                "binding_message must be the number to match: one or two digits"
            ),
            (#"{"binding_message":42,"login_hint":"mia"}"#, "binding_message must be a string"),
            (#"{"binding_message":"42"}"#, "login_hint is required"),
            (#"{"binding_message":"42","login_hint":""}"#, "login_hint is required"),
            (
                #"{"binding_message":"42","login_hint":"mia","is_consent_required":"yes"}"#,
                "is_consent_required must be a boolean"
            ),
            (#"["binding_message"]"#, "the body is not a JSON object"),
            ("", "the body is not a JSON object"),
        ] {
            do {
                _ = try request(body)
                Issue.record("accepted: \(body)")
            } catch {
                #expect(error.description == why, "\(body)")
            }
        }
    }
}
