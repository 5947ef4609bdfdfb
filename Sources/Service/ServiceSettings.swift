// What the Service is configured with: the IdP clients and the push providers' credentials.
import HTTP

/// An IdP client: who may call the webhook for which tenants, and where its results go (`[[idp_clients]]`).
public struct IdPClient: Sendable, Equatable {
    public var keyID: String
    public var secret: [UInt8]
    public var tenants: Set<String>
    public var verifierURL: String
    /// How results reach the verifier: over https, h2 or http/1.1 as it chooses by ALPN; over http, HTTP/1.1,
    /// or h2c with prior knowledge when `verifier_protocol = "h2c"`.
    public var verifierProtocol: ClientProtocol

    public init(
        keyID: String, secret: [UInt8], tenants: Set<String>, verifierURL: String,
        verifierProtocol: ClientProtocol? = nil
    ) {
        self.keyID = keyID
        self.secret = secret
        self.tenants = tenants
        self.verifierURL = verifierURL
        self.verifierProtocol = verifierProtocol ?? (verifierURL.hasPrefix("https://") ? .negotiated : .http1)
    }
}

/// APNs provider credentials (token-based): wake-ups to iOS devices.
public struct APNsSettings: Sendable {
    public var privateKeyPEM: String
    public var keyID: String
    public var teamID: String
    public var endpoint = "https://api.push.apple.com"
    public var caFile: String?
    /// Where the key was read from (shown by `serve --check-config`; the key itself never is).
    public var keyFile: String?

    public init(privateKeyPEM: String, keyID: String, teamID: String) {
        self.privateKeyPEM = privateKeyPEM
        self.keyID = keyID
        self.teamID = teamID
    }
}

/// FCM HTTP v1 credentials: a Google service account of the Firebase project.
public struct FCMSettings: Sendable {
    public var projectID: String
    public var clientEmail: String
    public var privateKeyID: String
    public var privateKeyPEM: String
    /// Where the service-account assertion is exchanged for an access token.
    public var tokenURL: String
    public var endpoint = "https://fcm.googleapis.com"
    public var caFile: String?
    /// Where the service account was read from (shown by `serve --check-config`).
    public var serviceAccountFile: String?

    public init(
        projectID: String, clientEmail: String, privateKeyID: String, privateKeyPEM: String, tokenURL: String
    ) {
        self.projectID = projectID
        self.clientEmail = clientEmail
        self.privateKeyID = privateKeyID
        self.privateKeyPEM = privateKeyPEM
        self.tokenURL = tokenURL
    }
}
