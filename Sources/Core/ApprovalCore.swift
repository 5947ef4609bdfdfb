// The broker's state and rules: policies, devices, challenges, per-device queues, expiry, idempotency, password
// fallback, rate limits and lockouts. Every operation is told the time and returns the events it caused.
import HeapModule

/// The domain, owned by one thread (the Service's event loop); not thread-safe by design.
///
/// Randomness (challenge ids, decoy numbers, their order) comes from the injected generator: a CSPRNG in the
/// broker, a seeded one in tests.
public final class ApprovalCore<Random: RandomNumberGenerator> {
    /// Ended challenges and fallback answers, with their `request_id`s, are remembered this long after they end.
    public static var rememberMillis: UnixMillis { 15 * 60 * 1000 }

    private var random: Random
    private let basePolicy: TenantPolicy
    private let configuredPolicies: [String: TenantPolicy]
    private var storedPolicies: [String: TenantPolicy] = [:]

    // Each device, user and challenge is one record, held by reference: a dictionary's slots (a quarter to half of
    // them spare) then cost a key and a pointer each, not a whole record. That matters at a million pending.
    private var devices: [String: DeviceRecord] = [:]
    private var users: [UserKey: UserRecord] = [:]
    private var challenges: [String: ChallengeRecord] = [:]
    private var requests: [RequestKey: Remembered] = [:]
    /// Min-heaps: a tick costs what expires or is forgotten, not what is pending.
    private var expiries = Heap<Deadline>()
    private var forgettings = Heap<Forgetting>()

    /// Entries over all device queues.
    public private(set) var queueDepth = 0
    public private(set) var queueDepthByTenant: [String: Int] = [:]
    public private(set) var pendingChallenges = 0

    /// - Parameters:
    ///   - basePolicy: for tenants with neither a configured nor a stored policy.
    ///   - configuredPolicies: from the configuration file; a stored policy (PUT) wins over them.
    public init(
        random: Random, basePolicy: TenantPolicy = TenantPolicy(), configuredPolicies: [String: TenantPolicy] = [:]
    ) {
        self.random = random
        self.basePolicy = basePolicy
        self.configuredPolicies = configuredPolicies
    }

    // MARK: Policies

    public func policy(for tenantID: String) -> TenantPolicy {
        storedPolicies[tenantID] ?? configuredPolicies[tenantID] ?? basePolicy
    }

    /// Stores a tenant's policy; it applies from the next challenge on.
    public func setPolicy(_ policy: TenantPolicy, for tenantID: String) throws(CoreError) -> [CoreEvent] {
        try Validate.tenantID(tenantID)
        try policy.validate()
        storedPolicies[tenantID] = policy
        return [.policySaved(tenantID: tenantID, policy)]
    }

    // MARK: Devices

    /// Registers or updates a device. A device serves exactly one account in one tenant.
    public func registerDevice(
        _ deviceID: String, in tenantID: String, _ registration: DeviceRegistration, now: UnixMillis
    ) throws(CoreError) -> (RegistrationOutcome, [CoreEvent]) {
        try Validate.tenantID(tenantID)
        try Validate.identifier(deviceID, field: "device_id")
        try Validate.userID(registration.userID)
        guard !registration.publicKey.isEmpty else { throw CoreError(.invalidField, "public_key is empty") }
        guard registration.displayName.utf8.count <= 256 else {
            throw CoreError(.invalidField, "display_name is longer than 256 bytes")
        }
        let existing = devices[deviceID]?.device
        if let existing, existing.tenantID != tenantID || existing.userID != registration.userID {
            throw CoreError(.deviceTenantConflict, "the device is registered to another account")
        }
        guard !registration.mamRestricted else {
            throw CoreError(.mamRestricted, "the user is under mobile-app management")
        }
        let policy = policy(for: tenantID)
        guard policy.targets(registration.userID) else {
            throw CoreError(.policyExcluded, "the tenant's policy does not target the user")
        }
        let user = UserKey(tenantID: tenantID, userID: registration.userID)
        if existing == nil {
            guard (users[user]?.devices.count ?? 0) < policy.maxDevicesPerUser else {
                throw CoreError(.deviceLimit, "the user already has \(policy.maxDevicesPerUser) devices")
            }
        }
        var device =
            existing
            ?? Device(
                id: deviceID, tenantID: tenantID, userID: registration.userID, publicKey: registration.publicKey,
                push: registration.push, displayName: registration.displayName, createdAt: now)
        device.publicKey = registration.publicKey
        device.push = registration.push
        device.displayName = registration.displayName
        if let existing, existing == device { return (.unchanged(device), []) }
        if let record = devices[deviceID] {
            record.device = device
        } else {
            devices[deviceID] = DeviceRecord(device)
            userRecord(user).devices.append(deviceID)
        }
        return (existing == nil ? .created(device) : .updated(device), [.deviceSaved(device)])
    }

    /// Removes a device; its pending entries leave its queue.
    public func removeDevice(_ deviceID: String, in tenantID: String) throws(CoreError) -> [CoreEvent] {
        guard let record = devices[deviceID], record.device.tenantID == tenantID else {
            throw CoreError(.notFound, "no such device")
        }
        devices[deviceID] = nil
        let key = UserKey(tenantID: tenantID, userID: record.device.userID)
        if let user = users[key] {
            user.devices.removeAll { $0 == deviceID }
            releaseIfIdle(key, user)
        }
        adjustDepth(tenantID, by: -record.queue.count)
        return [.deviceRemoved(tenantID: tenantID, deviceID: deviceID)]
    }

    /// A device by id, whatever its tenant (device requests name only the device).
    public func device(_ deviceID: String) -> Device? { devices[deviceID]?.device }

    /// The user's devices, in registration order.
    public func devices(of userID: String, in tenantID: String) -> [Device] {
        (users[UserKey(tenantID: tenantID, userID: userID)]?.devices ?? CompactList()).compactMap {
            devices[$0]?.device
        }
    }

    /// Replaces a device's push target (token rotation).
    public func updatePush(_ push: PushTarget, for deviceID: String) throws(CoreError) -> [CoreEvent] {
        guard let record = devices[deviceID] else { throw CoreError(.notFound, "no such device") }
        guard record.device.push != push else { return [] }
        record.device.push = push
        return [.deviceSaved(record.device)]
    }

    // MARK: Challenges

    /// Creates a challenge, or answers with `password_fallback` before anything reaches a phone, or replays
    /// what an earlier request with the same `request_id` got.
    public func createChallenge(
        _ request: ChallengeRequest, in tenantID: String, now: UnixMillis
    ) throws(CoreError)
        -> (CreateOutcome, [CoreEvent])
    {
        try Validate.tenantID(tenantID)
        try request.validate()
        var events: [CoreEvent] = []
        let key = RequestKey(tenantID: tenantID, requestID: request.requestID)
        switch requests[key] {
        case .challenge(let id)?:
            guard let record = challenges[id], record.challenge.request == request else {
                throw CoreError(.idempotencyConflict, "request_id was used for another request")
            }
            expireIfDue(id, now: now, into: &events)
            return (.replayedChallenge(record.challenge), events)
        case .fallback(let fallback)?:
            guard fallback.request == request else {
                throw CoreError(.idempotencyConflict, "request_id was used for another request")
            }
            return (.replayedFallback(fallback), events)
        case nil:
            break
        }

        let userKey = UserKey(tenantID: tenantID, userID: request.userID)
        let policy = policy(for: tenantID)
        if let reason = fallbackReason(for: userKey, policy: policy, now: now, events: &events) {
            let fallback = Fallback(tenantID: tenantID, request: request, reason: reason, decidedAt: now)
            requests[key] = .fallback(fallback)
            forgettings.insert(Forgetting(at: now + Self.rememberMillis, key: key))
            events.append(.fallbackSaved(fallback))
            return (.fallback(fallback), events)
        }

        // No fallback: the user has a record with devices.
        let user = userRecord(userKey)
        let deviceIDs = Array(user.devices)
        let ttl = UnixMillis(request.ttlSeconds ?? policy.challengeTTLSeconds) * 1000
        let challenge = Challenge(
            id: newChallengeID(), tenantID: tenantID, request: request,
            choices: makeChoices(correct: request.number, count: policy.choices), devices: deviceIDs, createdAt: now,
            expiresAt: now + ttl)
        challenges[challenge.id] = ChallengeRecord(challenge)
        requests[key] = .challenge(challenge.id)
        user.pending.append(challenge.id)
        pendingChallenges += 1
        user.recentCreations.append(now)
        expiries.insert(Deadline(at: challenge.expiresAt, challengeID: challenge.id))
        events.append(.challengeSaved(challenge))
        for deviceID in deviceIDs {
            devices[deviceID]?.queue.append(challenge.id)
            events.append(.queued(challengeID: challenge.id, deviceID: deviceID))
        }
        adjustDepth(tenantID, by: deviceIDs.count)
        return (.created(challenge), events)
    }

    /// The checks of API.md's table, most definitive first: policy, lockout, devices, pending, rate.
    private func fallbackReason(
        for key: UserKey, policy: TenantPolicy, now: UnixMillis, events: inout [CoreEvent]
    ) -> FallbackReason? {
        guard policy.offersPasswordless(to: key.userID) else { return .policy }
        guard let user = users[key] else { return .noDevice }
        if let until = user.lockedUntil {
            if until > now { return .lockedOut }
            user.lockedUntil = nil
        }
        guard !user.devices.isEmpty else {
            releaseIfIdle(key, user)
            return .noDevice
        }
        // The user has devices, so expiring their pending challenges keeps the record.
        for id in user.pending { expireIfDue(id, now: now, into: &events) }
        if user.pending.count >= policy.maxPendingPerUser { return .pendingChallenge }
        let windowStart = now - UnixMillis(policy.windowSeconds) * 1000
        let lapsed = user.recentCreations.prefix { $0 <= windowStart }.count
        if lapsed > 0 { user.recentCreations.removeFirst(lapsed) }
        if user.recentCreations.count >= policy.maxChallengesPerWindow { return .rateLimited }
        return nil
    }

    /// A challenge of the tenant (nil for another tenant's: existence does not leak). Call `tick` first for
    /// statuses that are exact to the millisecond.
    public func challenge(_ challengeID: String, in tenantID: String) -> Challenge? {
        challenges[challengeID].flatMap { $0.challenge.tenantID == tenantID ? $0.challenge : nil }
    }

    /// A challenge as one of the devices it was queued to may see it (nil for any other device).
    public func challenge(_ challengeID: String, queuedTo deviceID: String) -> Challenge? {
        challenges[challengeID].flatMap { $0.challenge.devices.contains(deviceID) ? $0.challenge : nil }
    }

    /// "Use your password instead": a pending challenge becomes `cancelled`; an ended one is returned as it is.
    public func cancel(
        _ challengeID: String, in tenantID: String, now: UnixMillis
    ) throws(CoreError)
        -> (Challenge, [CoreEvent])
    {
        guard challenge(challengeID, in: tenantID) != nil else { throw CoreError(.notFound, "no such challenge") }
        var events: [CoreEvent] = []
        expireIfDue(challengeID, now: now, into: &events)
        if challenges[challengeID]?.challenge.isPending == true {
            resolve(
                challengeID, .cancelled, reason: .cancelled, answeredBy: nil, decision: nil, now: now, into: &events)
        }
        return (challenges[challengeID]!.challenge, events)
    }

    // MARK: Device side

    /// `last_seen_at` is stored when it moves by this much: a device that polls often costs no write per poll.
    public static var seenResolutionMillis: UnixMillis { 60 * 1000 }

    /// Notes that an authenticated request came from the device; returns the save when the stored time is a
    /// minute or more behind.
    public func noteSeen(_ deviceID: String, now: UnixMillis) -> [CoreEvent] {
        guard let record = devices[deviceID] else { return [] }
        if let seen = record.device.lastSeenAt, now - seen < Self.seenResolutionMillis { return [] }
        record.device.lastSeenAt = now
        return [.deviceSaved(record.device)]
    }

    /// The device's pending queue, oldest first, nothing expired.
    public func queue(of deviceID: String, now: UnixMillis) -> [Challenge] {
        (devices[deviceID]?.queue ?? CompactList()).compactMap { id in
            challenges[id].flatMap { $0.challenge.isPending && $0.challenge.expiresAt > now ? $0.challenge : nil }
        }
    }

    /// A device's verified answer. The first valid answer from any of the user's devices wins.
    public func answer(
        _ challengeID: String, from deviceID: String, _ decision: Decision, now: UnixMillis
    )
        throws(CoreError) -> (AnswerOutcome, [CoreEvent])
    {
        guard devices[deviceID] != nil, let record = challenges[challengeID],
            record.challenge.devices.contains(deviceID)
        else { throw CoreError(.notFound, "no such challenge for this device") }
        var events = noteSeen(deviceID, now: now)
        expireIfDue(challengeID, now: now, into: &events)
        let current = record.challenge
        guard current.isPending else {
            // A retry is the same answer from the same device, whatever its timestamp and (randomised) signature.
            if current.answeredBy == deviceID && current.decision?.kind == decision.kind {
                return (.replayed(current), events)
            }
            if current.status == .expired {
                throw CoreError(.expired, "the challenge expired")
            }
            throw CoreError(.alreadyResolved, "the challenge has already ended")
        }
        switch decision.kind {
        case .approve(let selected) where selected == current.request.number:
            resolve(
                challengeID, .approved, reason: nil, answeredBy: deviceID, decision: decision, now: now, into: &events)
        case .approve:
            resolve(
                challengeID, .denied, reason: .wrongNumber, answeredBy: deviceID, decision: decision, now: now,
                into: &events)
        case .deny(let why):
            let reason: ResolutionReason = why == .notMe ? .notMe : .cancelled
            resolve(
                challengeID, .denied, reason: reason, answeredBy: deviceID, decision: decision, now: now, into: &events)
            if why == .notMe {
                let until = now + UnixMillis(policy(for: current.tenantID).lockoutSeconds) * 1000
                userRecord(UserKey(tenantID: current.tenantID, userID: current.request.userID)).lockedUntil = until
                events.append(.lockoutSaved(tenantID: current.tenantID, userID: current.request.userID, until: until))
            }
        }
        return (.resolved(record.challenge), events)
    }

    // MARK: Time

    /// Expires what is due and forgets what has been remembered long enough.
    public func tick(now: UnixMillis) -> [CoreEvent] {
        var events: [CoreEvent] = []
        while let next = expiries.min, next.at <= now {
            expiries.removeMin()
            expireIfDue(next.challengeID, now: now, into: &events)
        }
        while let next = forgettings.min, next.at <= now {
            forgettings.removeMin()
            forget(next.key, into: &events)
        }
        return events
    }

    /// When `tick` next has something to do.
    public var nextDeadline: UnixMillis? {
        [expiries.min?.at, forgettings.min?.at].compactMap { $0 }.min()
    }

    // MARK: Recovery

    /// Puts back state read from the store, before the first operation. `tick(now:)` afterwards expires what
    /// lapsed while the broker was down.
    public func restore(policy: TenantPolicy, for tenantID: String) { storedPolicies[tenantID] = policy }

    /// Room for what the store holds, so that restoring does not grow (and rehash) the tables step by step.
    public func reserveCapacity(devices deviceCount: Int, challenges challengeCount: Int, fallbacks: Int) {
        devices.reserveCapacity(deviceCount)
        users.reserveCapacity(deviceCount)
        challenges.reserveCapacity(challengeCount)
        requests.reserveCapacity(challengeCount + fallbacks)
    }

    /// A user's devices end up in registration order whatever order they are restored in.
    public func restore(device: Device) {
        let user = userRecord(UserKey(tenantID: device.tenantID, userID: device.userID))
        let later = user.devices.firstIndex { id in
            devices[id].map { ($0.device.createdAt, $0.device.id) > (device.createdAt, device.id) } ?? false
        }
        user.devices.insert(device.id, at: later ?? user.devices.count)
        devices[device.id] = DeviceRecord(device)
    }

    /// Restore devices first: a pending challenge is queued again to those of its devices that still exist.
    /// Pending challenges are restored in the order they were created (queues are oldest first).
    public func restore(challenge: Challenge) {
        let user = userRecord(UserKey(tenantID: challenge.tenantID, userID: challenge.request.userID))
        challenges[challenge.id] = ChallengeRecord(challenge)
        requests[RequestKey(tenantID: challenge.tenantID, requestID: challenge.request.requestID)] = .challenge(
            challenge.id)
        let later = user.recentCreations.lastIndex { $0 <= challenge.createdAt }.map { $0 + 1 } ?? 0
        user.recentCreations.insert(challenge.createdAt, at: later)
        if challenge.isPending {
            user.pending.append(challenge.id)
            pendingChallenges += 1
            expiries.insert(Deadline(at: challenge.expiresAt, challengeID: challenge.id))
            var queued = 0
            for deviceID in challenge.devices {
                guard let device = devices[deviceID] else { continue }
                device.queue.append(challenge.id)
                queued += 1
            }
            adjustDepth(challenge.tenantID, by: queued)
        } else {
            let key = RequestKey(tenantID: challenge.tenantID, requestID: challenge.request.requestID)
            forgettings.insert(
                Forgetting(at: (challenge.resolvedAt ?? challenge.createdAt) + Self.rememberMillis, key: key))
        }
    }

    public func restore(fallback: Fallback) {
        let key = RequestKey(tenantID: fallback.tenantID, requestID: fallback.request.requestID)
        requests[key] = .fallback(fallback)
        forgettings.insert(Forgetting(at: fallback.decidedAt + Self.rememberMillis, key: key))
    }

    public func restore(lockoutOf userID: String, in tenantID: String, until: UnixMillis) {
        userRecord(UserKey(tenantID: tenantID, userID: userID)).lockedUntil = until
    }

    // MARK: Internals

    private func expireIfDue(_ challengeID: String, now: UnixMillis, into events: inout [CoreEvent]) {
        guard let record = challenges[challengeID], record.challenge.isPending, record.challenge.expiresAt <= now
        else { return }
        resolve(challengeID, .expired, reason: nil, answeredBy: nil, decision: nil, now: now, into: &events)
    }

    /// Ends a pending challenge: out of every queue (the answering device learns the outcome, the others that it
    /// was answered elsewhere), stored, sent to the verifier, remembered for the window.
    private func resolve(
        _ challengeID: String, _ status: ChallengeStatus, reason: ResolutionReason?, answeredBy: String?,
        decision: Decision?, now: UnixMillis, into events: inout [CoreEvent]
    ) {
        guard let record = challenges[challengeID], record.challenge.isPending else { return }
        record.challenge.status = status
        record.challenge.reason = reason
        record.challenge.answeredBy = answeredBy
        record.challenge.decision = decision
        record.challenge.resolvedAt = now
        let challenge = record.challenge
        let userKey = UserKey(tenantID: challenge.tenantID, userID: challenge.request.userID)
        if let user = users[userKey], let index = user.pending.firstIndex(of: challengeID) {
            user.pending.remove(at: index)
            releaseIfIdle(userKey, user)
        }
        pendingChallenges -= 1
        events.append(.challengeSaved(challenge))
        events.append(.ended(challenge))
        let ownOutcome = DeviceOutcome(rawValue: status.rawValue) ?? .cancelled
        for deviceID in challenge.devices {
            guard let device = devices[deviceID], let index = device.queue.firstIndex(of: challengeID) else { continue }
            device.queue.remove(at: index)
            adjustDepth(challenge.tenantID, by: -1)
            let outcome = answeredBy == nil || answeredBy == deviceID ? ownOutcome : .answeredElsewhere
            events.append(.unqueued(challengeID: challengeID, deviceID: deviceID, outcome: outcome))
        }
        let key = RequestKey(tenantID: challenge.tenantID, requestID: challenge.request.requestID)
        forgettings.insert(Forgetting(at: now + Self.rememberMillis, key: key))
    }

    private func forget(_ key: RequestKey, into events: inout [CoreEvent]) {
        switch requests[key] {
        case .challenge(let id)?:
            guard let record = challenges[id], !record.challenge.isPending else { return }
            challenges[id] = nil
            requests[key] = nil
            events.append(.forgotten(tenantID: key.tenantID, requestID: key.requestID, challengeID: id))
        case .fallback?:
            requests[key] = nil
            events.append(.forgotten(tenantID: key.tenantID, requestID: key.requestID, challengeID: nil))
        case nil:
            break
        }
    }

    /// The user's record, made on first need.
    private func userRecord(_ key: UserKey) -> UserRecord {
        if let user = users[key] { return user }
        let user = UserRecord()
        users[key] = user
        return user
    }

    /// Drops a record that holds nothing a later request needs. Creations in the rate window count only for a
    /// user with devices, so they do not keep a record alive.
    private func releaseIfIdle(_ key: UserKey, _ user: UserRecord) {
        if user.devices.isEmpty && user.pending.isEmpty && user.lockedUntil == nil { users[key] = nil }
    }

    private func adjustDepth(_ tenantID: String, by change: Int) {
        guard change != 0 else { return }
        queueDepth += change
        let depth = queueDepthByTenant[tenantID, default: 0] + change
        queueDepthByTenant[tenantID] = depth == 0 ? nil : depth
    }

    /// `ch_` and 22 base64url characters: 132 random bits, taken 60 at a time from three draws.
    private func newChallengeID() -> String {
        while true {
            let id = String(unsafeUninitializedCapacity: 25) { buffer in
                buffer[0] = UInt8(ascii: "c")
                buffer[1] = UInt8(ascii: "h")
                buffer[2] = UInt8(ascii: "_")
                var bits: UInt64 = 0
                for index in 0..<22 {
                    if index % 10 == 0 { bits = random.next() }
                    buffer[3 + index] = challengeIDAlphabet[Int(bits & 63)]
                    bits >>= 6
                }
                return 25
            }
            if challenges[id] == nil { return id }
        }
    }

    /// The correct number and `count - 1` distinct decoys from 0–99, in random order.
    private func makeChoices(correct: Int, count: Int) -> [Int] {
        var choices = [correct]
        var taken: Set<Int> = [correct]
        while choices.count < count {
            let decoy = Int.random(in: 0...99, using: &random)
            if taken.insert(decoy).inserted { choices.append(decoy) }
        }
        choices.shuffle(using: &random)
        return choices
    }
}

private let challengeIDAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

struct UserKey: Hashable {
    let tenantID: String
    let userID: String
}

struct RequestKey: Hashable, Comparable {
    let tenantID: String
    let requestID: String

    static func < (lhs: RequestKey, rhs: RequestKey) -> Bool {
        (lhs.tenantID, lhs.requestID) < (rhs.tenantID, rhs.requestID)
    }
}

/// What a `request_id` got. A fallback is boxed: most entries are challenge ids, and each slot is as large as the
/// largest case.
enum Remembered {
    case challenge(String)
    indirect case fallback(Fallback)
}

final class DeviceRecord {
    var device: Device
    /// Pending challenge ids, oldest first (at most the policy's `max_pending_per_user`).
    var queue = CompactList<String>()

    init(_ device: Device) { self.device = device }
}

final class UserRecord {
    /// In registration order.
    var devices = CompactList<String>()
    /// Pending challenge ids, oldest first.
    var pending = CompactList<String>()
    /// When the user's challenges were created, oldest first; trimmed to the rate window when the next one comes.
    var recentCreations = CompactList<UnixMillis>()
    /// A `not_me` denial's lockout.
    var lockedUntil: UnixMillis?
}

final class ChallengeRecord {
    var challenge: Challenge

    init(_ challenge: Challenge) { self.challenge = challenge }
}

struct Deadline: Comparable {
    let at: UnixMillis
    let challengeID: String

    static func < (lhs: Deadline, rhs: Deadline) -> Bool { (lhs.at, lhs.challengeID) < (rhs.at, rhs.challengeID) }
}

struct Forgetting: Comparable {
    let at: UnixMillis
    let key: RequestKey

    static func < (lhs: Forgetting, rhs: Forgetting) -> Bool { (lhs.at, lhs.key) < (rhs.at, rhs.key) }
}
