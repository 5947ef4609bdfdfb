// An id_token_hint as Entra ID sends it: accepted only when one of its issuer's keys signed it (RS256 or ES256, by
// kid), for this client, at most ten minutes ago; each other case is refused and says why, and a kid the keys lack
// is told apart so that a fetched key set can be fetched again.
import Crypto
import JSONText
import OIDC
import Testing

@Suite struct IDTokenHintTests {
    static let issuer = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
    static let trust = HintTrust(issuer: issuer, keys: .file("keys.json"), userClaim: "preferred_username")
    static let now: Int64 = 1_796_000_000
    static let rsa = try! RSAPrivateKey(generatingBits: 2048)
    static let p256 = try! P256PrivateKey()

    /// The JWK Set of both keys, as an issuer publishes it (with an encryption key it must leave out).
    static var keySet: String {
        let (n, e) = rsa.publicNumbers
        let point = Array(p256.publicKey.spkiDER.suffix(64))
        return """
            {"keys":[{"kty":"RSA","use":"sig","kid":"rsa-1","n":"\(Base64URL.encode(n))","e":"\(Base64URL.encode(e))"},
            {"kty":"EC","crv":"P-256","kid":"ec-1","x":"\(Base64URL.encode(Array(point.prefix(32))))","y":"\(Base64URL.encode(Array(point.suffix(32))))"},
            {"kty":"RSA","use":"enc","kid":"enc-1","n":"AQAB","e":"AQAB"},{"kty":"oct","kid":"k","k":"AAAA"}]}
            """
    }
    static let keys = IssuerKeys(jwkSet: keySet)!

    static func hint(
        kid: String = "rsa-1", alg: String = "RS256", issuer: String = issuer, audience: String = "\"entra-app\"",
        issuedAt: Int64 = now - 30, user: String? = "kai@contoso.com",
        sub: String? = "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ"
    ) throws -> String {
        let header = #"{"alg":"\#(alg)","kid":"\#(kid)","typ":"JWT"}"#
        var claims = #"{"iss":"\#(issuer)","aud":\#(audience),"iat":\#(issuedAt),"exp":\#(issuedAt - 1)"#
        if let sub { claims += #","sub":"\#(sub)""# }
        if let user { claims += #","preferred_username":"\#(user)""# }
        claims += #","tid":"9188040d-6c67-4c5b-b112-36a304b66dad"}"#
        return alg == "ES256"
            ? try JWT.signES256(headerJSON: header, claimsJSON: claims, key: p256)
            : try JWT.signRS256(headerJSON: header, claimsJSON: claims, key: rsa)
    }

    func verify(_ token: String) throws(JWTRefusal) -> IDTokenHint.User {
        try IDTokenHint.verify(token, trust: Self.trust, clientID: "entra-app", keys: Self.keys, now: Self.now)
    }

    func refusal(_ token: String) -> JWTRefusal? { refusalOf { () throws(JWTRefusal) in try verify(token) } }

    @Test func aHintSignedByItsIssuerNamesTheUserAndTheSubject() throws {
        #expect(Self.keys.count == 2, "the encryption key and the symmetric key are left out")
        let expected = IDTokenHint.User(
            subject: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", userID: "kai@contoso.com")
        #expect(try verify(try Self.hint()) == expected)
        #expect(try verify(try Self.hint(kid: "ec-1", alg: "ES256")) == expected)
        // Entra issues it expired; an audience list that holds the client is the client's.
        #expect(try verify(try Self.hint(audience: #"["other","entra-app"]"#)) == expected)
        #expect(try verify(try Self.hint(issuedAt: Self.now - 600)) == expected)
    }

    @Test func everyOtherHintIsRefusedSayingWhy() throws {
        #expect(refusal(try Self.hint(kid: "rsa-2")) == .unknownKey(token: "id_token_hint"))
        #expect(refusal(try Self.hint(kid: "ec-1", alg: "RS256"))?.description.contains("alg") == true)
        #expect(refusal(try Self.hint(issuer: "https://evil.example"))?.description.contains("another issuer") == true)
        #expect(refusal(try Self.hint(audience: "\"other-app\""))?.description.contains("another audience") == true)
        #expect(refusal(try Self.hint(issuedAt: Self.now - 601))?.description.contains("10 minutes") == true)
        #expect(refusal(try Self.hint(issuedAt: Self.now + 301))?.description.contains("10 minutes") == true)
        #expect(refusal(try Self.hint(sub: nil))?.description.contains("no sub") == true)
        #expect(refusal(try Self.hint(user: nil))?.description.contains("no preferred_username") == true)
        // A signature by another key, or over other claims.
        let valid = try Self.hint()
        let parts = valid.split(separator: ".")
        let other = try JWT.signRS256(
            headerJSON: #"{"alg":"RS256","kid":"rsa-1"}"#, claimsJSON: "{}",
            key: try RSAPrivateKey(generatingBits: 2048))
        let forged = parts[0] + "." + parts[1] + "." + other.split(separator: ".")[2]
        #expect(refusal(String(forged))?.description.contains("signature") == true)
        let unsigned = #"{"alg":"none","kid":"rsa-1"}"#
        #expect(refusal(Base64URL.encode(Array(unsigned.utf8)) + "." + parts[1] + ".")?.description != nil)
        for garbage in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            #expect(refusal(garbage) == .invalid("id_token_hint is not a signed JWT"))
        }
    }

    @Test func aKeySetWithNoUsableKeyIsNone() {
        #expect(IssuerKeys(jwkSet: #"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}"#) == nil, "512 bits")
        #expect(IssuerKeys(jwkSet: #"{"keys":[]}"#) == nil)
        #expect(IssuerKeys(jwkSet: "[]") == nil && IssuerKeys(jwkSet: "not json") == nil)
    }
}

/// Why `check` refused its token; nil when it accepted it.
func refusalOf<Value>(_ check: () throws(JWTRefusal) -> Value) -> JWTRefusal? {
    do {
        _ = try check()
        return nil
    } catch {
        return error
    }
}
