// What the OpenID provider is configured with (`[oidc]`): its issuer, its signing keys' files, and the relying
// parties it signs users in for.
public struct OIDCSettings: Sendable, Equatable {
    /// The provider's public URL, without a trailing slash: discovery and tokens repeat it exactly.
    public var issuer: String
    /// PEM private key files; the first signs, all are published. Empty: a development key in the data directory.
    public var signingKeyFiles: [String]
    public var clients: [OIDCClient]

    public init(issuer: String, signingKeyFiles: [String], clients: [OIDCClient]) {
        self.issuer = issuer
        self.signingKeyFiles = signingKeyFiles
        self.clients = clients
    }

    public func client(_ clientID: String) -> OIDCClient? { clients.first { $0.clientID == clientID } }

    /// Where the keys of each client's `id_token_hint` issuer are, by client id (clients that take hints).
    public var hintKeySources: [String: IssuerKeySource] {
        clients.reduce(into: [:]) { sources, client in sources[client.clientID] = client.hintTrust?.keys }
    }
}

/// A relying party.
public struct OIDCClient: Sendable, Equatable {
    public var clientID: String
    /// Nil for a public client, which must use PKCE.
    public var clientSecret: [UInt8]?
    /// Matched exactly, byte for byte.
    public var redirectURIs: [String]
    /// Whose users, devices and policy apply.
    public var tenant: String
    /// How an `id_token_hint` it sends is checked; nil: it sends none.
    public var hintTrust: HintTrust?

    public init(
        clientID: String, clientSecret: [UInt8]?, redirectURIs: [String], tenant: String, hintTrust: HintTrust? = nil
    ) {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.redirectURIs = redirectURIs
        self.tenant = tenant
        self.hintTrust = hintTrust
    }
}

/// The issuer of a client's `id_token_hint`s, where its keys are, and which claim names the approvald user.
public struct HintTrust: Sendable, Equatable {
    public var issuer: String
    public var keys: IssuerKeySource
    public var userClaim: String

    public init(issuer: String, keys: IssuerKeySource, userClaim: String) {
        self.issuer = issuer
        self.keys = keys
        self.userClaim = userClaim
    }
}
