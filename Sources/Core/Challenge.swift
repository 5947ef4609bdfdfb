// A sign-in challenge: the number the browser shows, the choices a phone shows, and how it ended.
import JSONText

/// What the IdP asks for; compared field by field to tell an IdP retry from a conflicting reuse of `request_id`.
public struct ChallengeRequest: Equatable, Sendable {
    /// How long a challenge may live, whether a request or a tenant's policy sets it.
    public static let ttlSecondsRange = 10...600

    public var requestID: String
    public var userID: String
    /// The two-digit number the browser shows, 0–99.
    public var number: Int
    /// nil: the policy's TTL.
    public var ttlSeconds: Int?
    public var context: ChallengeContext

    public init(
        requestID: String, userID: String, number: Int, ttlSeconds: Int? = nil, context: ChallengeContext = [:]
    ) {
        self.requestID = requestID
        self.userID = userID
        self.number = number
        self.ttlSeconds = ttlSeconds
        self.context = context
    }

    public func validate() throws(CoreError) {
        try Validate.identifier(requestID, field: "request_id")
        try Validate.userID(userID)
        guard (0...99).contains(number) else { throw CoreError(.invalidField, "number must be within 0...99") }
        if let ttlSeconds, !Self.ttlSecondsRange.contains(ttlSeconds) {
            throw CoreError(.invalidField, "ttl_seconds must be within \(Self.ttlSecondsRange)")
        }
    }
}

/// What the IdP tells the phone about a sign-in (app, IP address, location, …): at most 16 string fields.
///
/// Kept as its canonical JSON text, keys sorted: that is how it is shown, stored and compared (so field order
/// does not matter), and one string takes far less memory than a dictionary when a million challenges are pending.
public struct ChallengeContext: Equatable, Sendable, ExpressibleByDictionaryLiteral {
    public let json: String

    /// How long a value may be, in UTF-8 bytes.
    public static let maximumValueBytes = 256

    /// Checks API.md's limits: at most 16 keys of 1–64 printable bytes, values of at most 256 bytes.
    public init(validating fields: [String: String]) throws(CoreError) {
        guard fields.count <= 16 else { throw CoreError(.invalidField, "context has more than 16 keys") }
        for (key, value) in fields {
            guard (1...64).contains(key.utf8.count), key.unicodeScalars.allSatisfy(Validate.isPrintable) else {
                throw CoreError(.invalidField, "context keys must be 1-64 bytes of printable UTF-8")
            }
            guard value.utf8.count <= Self.maximumValueBytes else {
                throw CoreError(.invalidField, "context.\(key) is longer than \(Self.maximumValueBytes) bytes")
            }
        }
        self.init(canonicalizing: fields)
    }

    /// A context written in code, taken as it is.
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(canonicalizing: Dictionary(elements) { _, last in last })
    }

    /// Text this type wrote, read back from the store as it is.
    public init(canonicalJSON: String) { json = canonicalJSON }

    private init(canonicalizing fields: [String: String]) {
        json =
            "{"
            + fields.sorted { $0.key < $1.key }.map { jsonString($0.key) + ":" + jsonString($0.value) }
            .joined(separator: ",") + "}"
    }
}

public enum ChallengeStatus: String, Sendable, CaseIterable {
    case pending, approved, denied, expired, cancelled
}

public enum ResolutionReason: String, Sendable, CaseIterable {
    case wrongNumber = "wrong_number"
    case notMe = "not_me"
    case cancelled
}

/// Why a device denied.
public enum DenyReason: String, Sendable, CaseIterable {
    case notMe = "not_me"
    case cancelled
}

/// A device's signed answer, already verified by the Service.
public struct Decision: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case approve(selectedNumber: Int)
        case deny(reason: DenyReason)
    }

    public var kind: Kind
    public var signedAtUnix: Int64
    /// base64url DER signature, kept for the verifier.
    public var signature: String

    public init(kind: Kind, signedAtUnix: Int64, signature: String) {
        self.kind = kind
        self.signedAtUnix = signedAtUnix
        self.signature = signature
    }
}

/// How a challenge ended: one value, present exactly when the challenge is no longer pending.
public struct Resolution: Equatable, Sendable {
    /// Never `.pending`.
    public let status: ChallengeStatus
    public let reason: ResolutionReason?
    /// The device whose answer ended it; nil for an expiry or a cancellation.
    public let device: String?
    /// That device's signed answer, kept for the verifier.
    public let decision: Decision?
    public let at: UnixMillis

    public init(
        status: ChallengeStatus, reason: ResolutionReason? = nil, device: String? = nil, decision: Decision? = nil,
        at: UnixMillis
    ) {
        precondition(status != .pending, "a resolution ends a challenge")
        self.status = status
        self.reason = reason
        self.device = device
        self.decision = decision
        self.at = at
    }

    /// What the device `deviceID` learns on its stream.
    func outcome(for deviceID: String) -> DeviceOutcome {
        if let device, device != deviceID { return .answeredElsewhere }
        return DeviceOutcome(rawValue: status.rawValue) ?? .cancelled
    }
}

/// Where a challenge's result goes.
public enum ResultChannel: Equatable, Sendable {
    /// To the IdP's verifier, through the outbox (API.md, "Callbacks to the verifier").
    case verifier
    /// To the browser of an OpenID Connect sign-in, which follows the challenge and returns to its client with an
    /// authorization code; that code is redeemed once, which `codeRedeemed` records.
    case browser(codeRedeemed: Bool)
    /// To Keycloak's CIBA callback endpoint, through the outbox, with the bearer token Keycloak issued for the
    /// request (API.md, "Keycloak CIBA authentication channel").
    case ciba(bearerToken: String)

    /// Whether the result goes out through the outbox (a callback), rather than to a browser that follows it.
    public var isCallback: Bool {
        switch self {
        case .verifier, .ciba: true
        case .browser: false
        }
    }
}

public struct Challenge: Equatable, Sendable {
    /// `ch_` and 22 base64url characters (see `PartitionedID`).
    public let id: String
    public let tenantID: String
    public let request: ChallengeRequest
    /// The correct number and its decoys, shuffled. Never shown with the correct one marked.
    public let choices: [Int]
    /// The devices it was queued to.
    public let devices: [String]
    public let createdAt: UnixMillis
    public let expiresAt: UnixMillis
    /// nil while pending.
    public internal(set) var resolution: Resolution?
    /// The create's W3C `traceparent` (`TraceContext`), sent again with the result. Not part of the request: a
    /// retry of the create carries a span of its own, and is still the same request.
    public let traceparent: String?
    public internal(set) var channel: ResultChannel

    public init(
        id: String, tenantID: String, request: ChallengeRequest, choices: [Int], devices: [String],
        createdAt: UnixMillis, expiresAt: UnixMillis, resolution: Resolution? = nil, traceparent: String? = nil,
        channel: ResultChannel = .verifier
    ) {
        self.id = id
        self.tenantID = tenantID
        self.request = request
        self.choices = choices
        self.devices = devices
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.resolution = resolution
        self.traceparent = traceparent
        self.channel = channel
    }

    public var status: ChallengeStatus { resolution?.status ?? .pending }
    public var isPending: Bool { resolution == nil }
    public var user: UserKey { UserKey(tenantID: tenantID, userID: request.userID) }
}

public enum FallbackReason: String, Sendable, CaseIterable {
    case pendingChallenge = "pending_challenge"
    case noDevice = "no_device"
    case policy
    case rateLimited = "rate_limited"
    case lockedOut = "locked_out"
}

/// A `password_fallback` answer, remembered under its `request_id` like a challenge.
public struct Fallback: Equatable, Sendable {
    public var user: UserKey { UserKey(tenantID: tenantID, userID: request.userID) }

    public let tenantID: String
    public let request: ChallengeRequest
    public let reason: FallbackReason
    public let decidedAt: UnixMillis

    public init(tenantID: String, request: ChallengeRequest, reason: FallbackReason, decidedAt: UnixMillis) {
        self.tenantID = tenantID
        self.request = request
        self.reason = reason
        self.decidedAt = decidedAt
    }
}

public enum CreateOutcome: Equatable, Sendable {
    /// 201: queued to every device of the user.
    case created(Challenge)
    /// 200: the user goes down the password path.
    case fallback(Fallback)
    /// 200 with `Idempotent-Replay`: the same request again; the challenge as it is now.
    case replayedChallenge(Challenge)
    case replayedFallback(Fallback)
}

/// What a device learns on its stream when an entry leaves its queue.
public enum DeviceOutcome: String, CaseIterable, Sendable {
    case approved, denied, expired, cancelled
    case answeredElsewhere = "answered_elsewhere"
}

public enum AnswerOutcome: Equatable, Sendable {
    /// This answer ended the challenge.
    case resolved(Challenge)
    /// The same answer again from the same device: the same outcome.
    case replayed(Challenge)
    /// Too late: the challenge expired (perhaps just now, on this answer's arrival).
    case expired(Challenge)
}
