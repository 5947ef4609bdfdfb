// A registered device: one account in one tenant, its public key and how to wake it.

public struct PushTarget: Equatable, Sendable {
    public enum Provider: String, Sendable, CaseIterable {
        case apns, fcm
        /// Stream or poll only.
        case none
    }

    public var provider: Provider
    public var token: String
    public var topic: String

    public init(provider: Provider, token: String = "", topic: String = "") {
        self.provider = provider
        self.token = token
        self.topic = topic
    }

    public static let none = PushTarget(provider: .none)
}

/// What the IdP sends to register or update a device.
public struct DeviceRegistration: Equatable, Sendable {
    public var userID: String
    /// DER SubjectPublicKeyInfo of a P-256 key; the Service checks it before Core sees it.
    public var publicKey: [UInt8]
    public var push: PushTarget
    public var mamRestricted: Bool
    public var displayName: String

    public init(
        userID: String, publicKey: [UInt8], push: PushTarget = .none, mamRestricted: Bool = false,
        displayName: String = ""
    ) {
        self.userID = userID
        self.publicKey = publicKey
        self.push = push
        self.mamRestricted = mamRestricted
        self.displayName = displayName
    }
}

public struct Device: Equatable, Sendable {
    public let id: String
    public let tenantID: String
    public let userID: String
    public var publicKey: [UInt8]
    public var push: PushTarget
    public var displayName: String
    public let createdAt: UnixMillis
    public var lastSeenAt: UnixMillis?

    public init(
        id: String, tenantID: String, userID: String, publicKey: [UInt8], push: PushTarget, displayName: String,
        createdAt: UnixMillis, lastSeenAt: UnixMillis? = nil
    ) {
        self.id = id
        self.tenantID = tenantID
        self.userID = userID
        self.publicKey = publicKey
        self.push = push
        self.displayName = displayName
        self.createdAt = createdAt
        self.lastSeenAt = lastSeenAt
    }
}

public enum RegistrationOutcome: Equatable, Sendable {
    case created(Device)
    case updated(Device)
    /// The same registration again: nothing changed.
    case unchanged(Device)

    public var device: Device {
        switch self {
        case .created(let device), .updated(let device), .unchanged(let device): device
        }
    }
}
