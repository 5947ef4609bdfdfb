// An `id_token_hint` as Microsoft Entra ID's external authentication methods send it (API.md, "Microsoft Entra ID
// external authentication method"): a JWT from the client's configured issuer, signed by one of that issuer's keys
// (RS256 or ES256, by `kid`), for this client, issued at most ten minutes ago — its `exp` may have passed, as Entra
// issues it expired — whose `user_claim` names the approvald user and whose `sub` the ID token repeats.
import JSONText

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
        _ token: String, trust: HintTrust, clientID: String, keys: IssuerKeys, now: Int64
    ) throws(JWTRefusal) -> User {
        let claims = try keys.verifiedClaims(of: token, named: "id_token_hint")
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
