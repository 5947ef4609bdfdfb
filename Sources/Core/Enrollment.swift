// A phone's enrollment (API.md, "Enrollment"): the IdP asks for one for a user, the user scans its activation code,
// and the phone completes it with a key of its own. It belongs to the user's state, like a challenge: created,
// completed, cancelled or expired by the rules, durable, and remembered for a while after it ends.

/// What the IdP asks for.
public struct EnrollmentRequest: Equatable, Sendable {
    public static let ttlSecondsRange = 60...3600
    public static let defaultTTLSeconds = 600

    public var userID: String
    public var displayName: String
    public var mamRestricted: Bool
    public var ttlSeconds: Int

    public init(
        userID: String, displayName: String = "", mamRestricted: Bool = false,
        ttlSeconds: Int = EnrollmentRequest.defaultTTLSeconds
    ) {
        self.userID = userID
        self.displayName = displayName
        self.mamRestricted = mamRestricted
        self.ttlSeconds = ttlSeconds
    }

    public func validate() throws(CoreError) {
        try Validate.userID(userID)
        try Validate.displayName(displayName)
        guard Self.ttlSecondsRange.contains(ttlSeconds) else {
            throw CoreError(.invalidField, "ttl_seconds must be within \(Self.ttlSecondsRange)")
        }
    }
}

public enum EnrollmentStatus: String, Sendable, CaseIterable {
    case pending, completed, expired, cancelled
}

/// How an enrollment ended.
public struct EnrollmentEnd: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// The phone registered itself as this device.
        case completed(deviceID: String)
        case expired
        case cancelled
    }

    public let kind: Kind
    public let at: UnixMillis

    public init(_ kind: Kind, at: UnixMillis) {
        self.kind = kind
        self.at = at
    }
}

public struct Enrollment: Equatable, Sendable {
    public let id: String
    public let tenantID: String
    public let request: EnrollmentRequest
    /// SHA-256 of the activation code: the code itself is never kept.
    public let codeHash: [UInt8]
    public let createdAt: UnixMillis
    public let expiresAt: UnixMillis
    public internal(set) var end: EnrollmentEnd?

    public init(
        id: String, tenantID: String, request: EnrollmentRequest, codeHash: [UInt8], createdAt: UnixMillis,
        expiresAt: UnixMillis, end: EnrollmentEnd? = nil
    ) {
        self.id = id
        self.tenantID = tenantID
        self.request = request
        self.codeHash = codeHash
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.end = end
    }

    public var user: UserKey { UserKey(tenantID: tenantID, userID: request.userID) }

    public var isPending: Bool { end == nil }

    public var status: EnrollmentStatus {
        switch end?.kind {
        case nil: .pending
        case .completed: .completed
        case .expired: .expired
        case .cancelled: .cancelled
        }
    }

    /// The device it registered, once completed.
    public var deviceID: String? {
        if case .completed(let deviceID) = end?.kind { deviceID } else { nil }
    }

    /// Its next deadline: its expiry while pending, then the end of the window it is remembered for.
    public var deadline: UnixMillis { end.map { $0.at + Rules.rememberMillis } ?? expiresAt }
}

/// What a phone sends to complete an enrollment, its key already checked against the proof by the Service.
public struct EnrollmentCompletion: Equatable, Sendable {
    public var codeHash: [UInt8]
    /// DER SubjectPublicKeyInfo of the phone's new P-256 key.
    public var publicKey: [UInt8]
    public var push: PushTarget
    /// nil: the enrollment's.
    public var displayName: String?

    public init(codeHash: [UInt8], publicKey: [UInt8], push: PushTarget = .none, displayName: String? = nil) {
        self.codeHash = codeHash
        self.publicKey = publicKey
        self.push = push
        self.displayName = displayName
    }
}

/// What a completion led to.
public enum CompletionOutcome: Equatable, Sendable {
    /// The phone is now this device (201).
    case completed(Enrollment, Device)
    /// The same code with the same key again, after a lost answer (200, the same body).
    case replayed(Enrollment, Device)
}
