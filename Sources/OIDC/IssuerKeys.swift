// Tokens another issuer signed and approvald checks: Entra ID's `id_token_hint`s and Keycloak's CIBA bearer tokens.
// The issuer publishes its keys as a JWK Set (at a URL, or in a file an operator copies); a token names its key by
// `kid` and is signed with RS256 or ES256.
import Crypto
import JSONText

/// Where an issuer's JWK Set is.
public enum IssuerKeySource: Sendable, Equatable {
    /// Fetched over HTTPS and cached (fetched again on an unknown `kid`).
    case url(String)
    /// A JWK Set file, read at start.
    case file(String)
}

/// An issuer's signing keys by `kid`, from its JWK Set: RSA keys of 2048 bits or more and P-256 keys; a key of
/// another kind, or for another use than signing, is left out.
public struct IssuerKeys: Sendable {
    enum Key: Sendable {
        case rsa(RSAPublicKey)
        case p256(P256PublicKey)
    }

    private let keys: [String: Key]

    /// The keys of a JWK Set document; nil when it is not one (`{"keys": [...]}`) or holds no usable key.
    public init?(jwkSet text: String) {
        guard text.utf8.count <= 262_144, let json = JSONValue.parse(Array(text.utf8)),
            case .array(let entries)? = json["keys"]
        else { return nil }
        var keys: [String: Key] = [:]
        for entry in entries {
            guard let kid = entry["kid"]?.string, entry["use"]?.string ?? "sig" == "sig" else { continue }
            func bytes(_ name: String) -> [UInt8]? { entry[name]?.string.flatMap(Base64URL.decode) }
            switch entry["kty"]?.string {
            case "RSA":
                guard let n = bytes("n"), let e = bytes("e"), let key = try? RSAPublicKey(modulus: n, exponent: e)
                else { continue }
                keys[kid] = .rsa(key)
            case "EC":
                guard entry["crv"]?.string == "P-256", let x = bytes("x"), let y = bytes("y"),
                    let key = try? P256PublicKey(x: x, y: y)
                else { continue }
                keys[kid] = .p256(key)
            default: continue
            }
        }
        guard !keys.isEmpty else { return nil }
        self.keys = keys
    }

    public var count: Int { keys.count }

    /// The claims of `token`, a JWS that one of these keys signed (RS256 or ES256, the key named by the header's
    /// `kid`); `name` names the token in a refusal. Nothing of the claims is checked here.
    public func verifiedClaims(of token: String, named name: String) throws(JWTRefusal) -> JSONValue {
        guard let jws = JWT.Unverified(token), let header = JSONValue.parse(Array(jws.headerJSON.utf8)),
            let claims = JSONValue.parse(Array(jws.claimsJSON.utf8)), case .object = claims
        else { throw .invalid("\(name) is not a signed JWT") }
        guard let kid = header["kid"]?.string else { throw .invalid("\(name) names no key (kid)") }
        guard let key = keys[kid] else { throw .unknownKey(token: name) }
        let signed: Bool
        switch (header["alg"]?.string, key) {
        case ("RS256", .rsa(let rsa)): signed = jws.isSignedRS256(by: rsa)
        case ("ES256", .p256(let p256)): signed = jws.isSignedES256(by: p256)
        default: throw .invalid("\(name)'s alg does not match its key (RS256 or ES256)")
        }
        guard signed else { throw .invalid("\(name)'s signature does not verify") }
        return claims
    }
}

/// Why a token is refused: said to whoever sent it.
public enum JWTRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    /// Signed by a key its issuer's JWK Set does not have (yet): a key set fetched from a URL is fetched again.
    case unknownKey(token: String)
    case invalid(String)

    public var description: String {
        switch self {
        case .unknownKey(let token): "\(token) is signed by a key its issuer does not publish"
        case .invalid(let why): why
        }
    }
}
