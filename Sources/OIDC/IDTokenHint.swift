// An `id_token_hint` as Microsoft Entra ID's external authentication methods send it (API.md, "Microsoft Entra ID
// external authentication method"): a JWT from the client's configured issuer, signed by one of that issuer's keys
// (RS256 or ES256, by `kid`), for this client, issued at most ten minutes ago — its `exp` may have passed, as Entra
// issues it expired — whose `user_claim` names the approvald user and whose `sub` the ID token repeats.
import Crypto
import JSONText

/// An issuer's signing keys by `kid`, from its JWK Set: RSA keys of 2048 bits or more and P-256 keys; a key of
/// another kind, or for another use than signing, is left out.
public struct HintKeys: Sendable {
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

    func key(_ kid: String) -> Key? { keys[kid] }

    public var count: Int { keys.count }
}

/// Why a hint is refused: said to the client in `error_description`.
public enum HintRefusal: Error, Sendable, Equatable {
    /// Signed by a key its issuer's JWK Set does not have (yet): a key set fetched from a URL is fetched again.
    case unknownKey
    case invalid(String)

    public var description: String {
        switch self {
        case .unknownKey: "id_token_hint is signed by a key its issuer does not publish"
        case .invalid(let why): why
        }
    }
}

public enum IDTokenHint {
    /// How old a hint may be (by its `iat`), and how far in the future its `iat` may lie (clock skew).
    public static let maximumAgeSeconds: Int64 = 600
    static let clockSkewSeconds: Int64 = 300

    /// The user a hint names: the ID token's `sub` and the approvald user id.
    public struct User: Sendable, Equatable {
        public let subject: String
        public let userID: String

        public init(subject: String, userID: String) {
            self.subject = subject
            self.userID = userID
        }
    }

    /// Checks `token` for the client `clientID` whose hints `trust` describes, against `keys` at `now` (Unix seconds).
    public static func verify(
        _ token: String, trust: HintTrust, clientID: String, keys: HintKeys, now: Int64
    ) throws(HintRefusal) -> User {
        guard let jws = JWT.Unverified(token), let header = JSONValue.parse(Array(jws.headerJSON.utf8)),
            let claims = JSONValue.parse(Array(jws.claimsJSON.utf8))
        else { throw .invalid("id_token_hint is not a signed JWT") }
        guard let kid = header["kid"]?.string else { throw .invalid("id_token_hint names no key (kid)") }
        guard let key = keys.key(kid) else { throw .unknownKey }
        let signed: Bool
        switch (header["alg"]?.string, key) {
        case ("RS256", .rsa(let rsa)): signed = jws.isSignedRS256(by: rsa)
        case ("ES256", .p256(let p256)): signed = jws.isSignedES256(by: p256)
        default: throw .invalid("id_token_hint's alg does not match its key (RS256 or ES256)")
        }
        guard signed else { throw .invalid("id_token_hint's signature does not verify") }
        guard claims["iss"]?.string == trust.issuer else { throw .invalid("id_token_hint is from another issuer") }
        let audiences: [String]
        switch claims["aud"] {
        case .string(let one)?: audiences = [one]
        case .array(let many)?: audiences = many.compactMap(\.string)
        default: audiences = []
        }
        guard audiences.contains(clientID) else { throw .invalid("id_token_hint is for another audience") }
        guard let issuedAt = claims["iat"]?.int.map(Int64.init) else { throw .invalid("id_token_hint has no iat") }
        guard issuedAt <= now + clockSkewSeconds, now - issuedAt <= maximumAgeSeconds else {
            throw .invalid("id_token_hint was issued more than 10 minutes ago, or in the future")
        }
        guard let subject = claims["sub"]?.string, !subject.isEmpty else {
            throw .invalid("id_token_hint has no sub")
        }
        guard let userID = claims[trust.userClaim]?.string, !userID.isEmpty else {
            throw .invalid("id_token_hint has no \(trust.userClaim)")
        }
        return User(subject: subject, userID: userID)
    }
}
