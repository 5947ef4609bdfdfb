// The access token the token endpoint issues with an ID token: good for the userinfo endpoint only, for as long as
// the ID token, and sealed (FlowSeal) so that any instance reads it and no instance keeps it.
import JSONText

public struct AccessToken: Sendable, Equatable {
    public static let lifetimeSeconds = IDToken.lifetimeSeconds

    public var clientID: String
    /// The ID token's `sub`.
    public var subject: String
    /// The approvald user (`preferred_username`).
    public var userID: String
    /// Unix seconds.
    public var expiresAt: Int64

    public init(clientID: String, subject: String, userID: String, issuedAt: Int64) {
        self.clientID = clientID
        self.subject = subject
        self.userID = userID
        expiresAt = issuedAt + Self.lifetimeSeconds
    }

    public func sealed(by seal: FlowSeal) -> String {
        seal.seal(
            JSONWriter.object { token in
                token.string("client_id", clientID)
                token.string("sub", subject)
                token.string("user_id", userID)
                token.integer("exp", expiresAt)
            }, for: .accessToken)
    }

    /// The token's value while it is valid at `now`; nil for anything else.
    public init?(_ text: String, seal: FlowSeal, now: Int64) {
        guard let opened = seal.open(text, for: .accessToken), let json = JSONValue.parse(Array(opened.utf8)),
            let clientID = json["client_id"]?.string, let subject = json["sub"]?.string,
            let userID = json["user_id"]?.string, let expiresAt = json["exp"]?.int, now < expiresAt
        else { return nil }
        self.clientID = clientID
        self.subject = subject
        self.userID = userID
        self.expiresAt = Int64(expiresAt)
    }

    /// The userinfo response (OpenID Connect Core §5.3.2).
    public var userinfo: String {
        JSONWriter.object { info in
            info.string("sub", subject)
            info.string("preferred_username", userID)
        }
    }
}
