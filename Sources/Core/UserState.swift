// One user's aggregate: every rule of API.md reads and changes the state of one user in one tenant, so this value
// (with its version) is the unit that stores keep, load and commit.

/// An entry of a device's queue: the challenge waits for that device's answer.
public struct QueueEntry: Equatable, Sendable {
    public let challengeID: String
    public let deviceID: String

    public init(challengeID: String, deviceID: String) {
        self.challengeID = challengeID
        self.deviceID = deviceID
    }
}

/// An ended challenge, remembered with its `request_id` until its window ends. Boxed: a user signing in often keeps
/// dozens, and a new state then copies a pointer each, not a whole challenge.
public final class EndedChallenge: Equatable, Sendable {
    public let challenge: Challenge

    init(_ challenge: Challenge) { self.challenge = challenge }

    public static func == (lhs: EndedChallenge, rhs: EndedChallenge) -> Bool { lhs.challenge == rhs.challenge }
}

/// A value with one reference inside: the store, the rules and the commit pipeline pass a user's state along
/// several hands per request, and each copy costs a retain, not the copy of every device and challenge held inline.
/// The first change to a shared state copies its parts once (copy on write).
public struct UserState: Equatable, Sendable {
    /// `@unchecked Sendable`: changed only through `uniqueParts`, that is while no other state shares it.
    private final class Parts: @unchecked Sendable {
        let key: UserKey
        var devices = CompactList<Device>()
        var pending = CompactList<Challenge>()
        var ended: [EndedChallenge] = []
        var fallbacks: [Fallback] = []
        var queue = CompactList<QueueEntry>()
        var recentCreations = CompactList<UnixMillis>()
        var lockedUntil: UnixMillis?
        var enrollments: [Enrollment] = []

        init(key: UserKey) { self.key = key }

        init(copying other: Parts) {
            key = other.key
            devices = other.devices
            pending = other.pending
            ended = other.ended
            fallbacks = other.fallbacks
            queue = other.queue
            recentCreations = other.recentCreations
            lockedUntil = other.lockedUntil
            enrollments = other.enrollments
        }
    }

    private var parts: Parts
    /// Set by the store on each commit; a commit names the version it was decided on.
    public var version: UInt64 = 0
    /// The deadline a store that indexes users by their next deadline holds for this state, set when it reads the
    /// state (nil: none, as for a new user): such a store rewrites its index only when a commit moves the deadline.
    /// Not part of the state's value (`==`).
    public var indexedDeadline: UnixMillis?

    public init(key: UserKey) { parts = Parts(key: key) }

    /// A state as a store that keeps whole states (rather than rows to rebuild them from) read it back: every part
    /// as it was, in the orders documented on the properties.
    public init(
        key: UserKey, version: UInt64, devices: [Device], pending: [Challenge], ended: [Challenge],
        fallbacks: [Fallback], queue: [QueueEntry], recentCreations: [UnixMillis], lockedUntil: UnixMillis?,
        enrollments: [Enrollment] = []
    ) {
        parts = Parts(key: key)
        self.version = version
        parts.devices = CompactList(devices)
        parts.pending = CompactList(pending)
        parts.ended = ended.map(EndedChallenge.init)
        parts.fallbacks = fallbacks
        parts.queue = CompactList(queue)
        parts.recentCreations = CompactList(recentCreations)
        parts.lockedUntil = lockedUntil
        parts.enrollments = enrollments
    }

    private var uniqueParts: Parts {
        mutating get {
            if !isKnownUniquelyReferenced(&parts) { parts = Parts(copying: parts) }
            return parts
        }
    }

    public var key: UserKey { parts.key }
    /// In registration order.
    public internal(set) var devices: CompactList<Device> {
        get { parts.devices }
        _modify { yield &uniqueParts.devices }
    }
    /// Pending challenges, oldest first.
    public internal(set) var pending: CompactList<Challenge> {
        get { parts.pending }
        _modify { yield &uniqueParts.pending }
    }
    /// Ended challenges still remembered, in the order they ended.
    public internal(set) var ended: [EndedChallenge] {
        get { parts.ended }
        _modify { yield &uniqueParts.ended }
    }
    /// `password_fallback` answers still remembered, oldest first.
    public internal(set) var fallbacks: [Fallback] {
        get { parts.fallbacks }
        _modify { yield &uniqueParts.fallbacks }
    }
    /// Every device queue's entries, oldest first.
    public internal(set) var queue: CompactList<QueueEntry> {
        get { parts.queue }
        _modify { yield &uniqueParts.queue }
    }
    /// When the user's challenges were created, oldest first; trimmed to the rate window when the next one comes.
    public internal(set) var recentCreations: CompactList<UnixMillis> {
        get { parts.recentCreations }
        _modify { yield &uniqueParts.recentCreations }
    }
    /// A `not_me` denial's lockout.
    public internal(set) var lockedUntil: UnixMillis? {
        get { parts.lockedUntil }
        _modify { yield &uniqueParts.lockedUntil }
    }

    /// Pending enrollments and those remembered after they ended, in the order they were created.
    public internal(set) var enrollments: [Enrollment] {
        get { parts.enrollments }
        _modify { yield &uniqueParts.enrollments }
    }

    public static func == (lhs: UserState, rhs: UserState) -> Bool {
        guard lhs.version == rhs.version else { return false }
        if lhs.parts === rhs.parts { return true }
        return lhs.key == rhs.key && lhs.devices == rhs.devices && lhs.pending == rhs.pending
            && lhs.ended == rhs.ended && lhs.fallbacks == rhs.fallbacks && lhs.queue == rhs.queue
            && lhs.recentCreations == rhs.recentCreations && lhs.lockedUntil == rhs.lockedUntil
            && lhs.enrollments == rhs.enrollments
    }

    public var partition: Partition { key.partition }

    public func device(_ deviceID: String) -> Device? { devices.first { $0.id == deviceID } }

    public func challenge(_ challengeID: String) -> Challenge? {
        pending.first { $0.id == challengeID } ?? ended.first { $0.challenge.id == challengeID }?.challenge
    }

    public func enrollment(_ enrollmentID: String) -> Enrollment? { enrollments.first { $0.id == enrollmentID } }

    /// The enrollment whose activation code has this SHA-256.
    public func enrollment(codeHash: [UInt8]) -> Enrollment? { enrollments.first { $0.codeHash == codeHash } }

    /// Every challenge the user has: pending ones first, then the remembered ones.
    public var challenges: [Challenge] { Array(pending) + ended.map(\.challenge) }

    /// A challenge as one of the devices it was queued to may see it (nil for any other device).
    public func challenge(_ challengeID: String, queuedTo deviceID: String) -> Challenge? {
        challenge(challengeID).flatMap { $0.devices.contains(deviceID) ? $0 : nil }
    }

    /// The device's pending queue, oldest first, nothing expired.
    public func queue(of deviceID: String, now: UnixMillis) -> [Challenge] {
        queue.compactMap { entry in
            guard entry.deviceID == deviceID, let challenge = pending.first(where: { $0.id == entry.challengeID }),
                challenge.expiresAt > now
            else { return nil }
            return challenge
        }
    }

    public var pendingCount: Int { pending.count }

    /// When `Rules.tick` next has something to do for this user: an expiry or the end of a remembering window.
    public var nextDeadline: UnixMillis? { nextDeadline(includingEnded: true) }

    /// `includingEnded` false leaves out the ends of ended challenges' windows: for a store that keeps each ended
    /// challenge apart from the state, under keys that expire by themselves when its window ends.
    public func nextDeadline(includingEnded: Bool) -> UnixMillis? {
        var next: UnixMillis?
        func consider(_ at: UnixMillis) { next = min(next ?? at, at) }
        for challenge in pending { consider(challenge.expiresAt) }
        // Both lists are in the order their windows end.
        if includingEnded, let first = ended.first?.challenge.resolution { consider(first.at + Rules.rememberMillis) }
        if let first = fallbacks.first { consider(first.decidedAt + Rules.rememberMillis) }
        for enrollment in enrollments { consider(enrollment.deadline) }
        return next
    }

    /// Holds nothing a later request needs: a store may drop it. Creations in the rate window count only for a user
    /// with devices, so they do not keep an aggregate alive.
    public var isEmpty: Bool { ended.isEmpty && isEmptyBesidesEnded }

    /// Holds nothing a later request needs but ended challenges (see `nextDeadline(includingEnded:)`).
    public var isEmptyBesidesEnded: Bool {
        devices.isEmpty && pending.isEmpty && fallbacks.isEmpty && lockedUntil == nil && enrollments.isEmpty
    }

    // MARK: Recovery

    /// Puts back a stored device; a user's devices end up in registration order whatever order they come in.
    public mutating func restore(device: Device) {
        let later = devices.firstIndex { ($0.createdAt, $0.id) > (device.createdAt, device.id) }
        devices.insert(device, at: later ?? devices.count)
    }

    /// Puts back a stored challenge. Restore devices first (a pending challenge is queued again to those of its
    /// devices that still exist) and challenges in the order they were created (queues are oldest first).
    public mutating func restore(challenge: Challenge) {
        let later = recentCreations.lastIndex { $0 <= challenge.createdAt }.map { $0 + 1 } ?? 0
        recentCreations.insert(challenge.createdAt, at: later)
        if challenge.resolution != nil { return remember(ended: challenge) }
        pending.append(challenge)
        for deviceID in challenge.devices where device(deviceID) != nil {
            queue.append(QueueEntry(challengeID: challenge.id, deviceID: deviceID))
        }
    }

    /// Puts back an ended challenge kept apart from the state, in the order challenges ended; one the state holds
    /// already is left as it is.
    public mutating func remember(ended challenge: Challenge) {
        guard let resolution = challenge.resolution, !ended.contains(where: { $0.challenge.id == challenge.id }) else {
            return
        }
        let after = ended.lastIndex { ($0.challenge.resolution?.at ?? 0) <= resolution.at }.map { $0 + 1 } ?? 0
        ended.insert(EndedChallenge(challenge), at: after)
    }

    public mutating func restore(fallback: Fallback) {
        let after = fallbacks.lastIndex { $0.decidedAt <= fallback.decidedAt }.map { $0 + 1 } ?? 0
        fallbacks.insert(fallback, at: after)
    }

    public mutating func restore(lockedUntil until: UnixMillis) { lockedUntil = until }

    /// Puts back a stored enrollment, in the order enrollments were created.
    public mutating func restore(enrollment: Enrollment) {
        let after = enrollments.lastIndex { $0.createdAt <= enrollment.createdAt }.map { $0 + 1 } ?? 0
        enrollments.insert(enrollment, at: after)
    }
}
