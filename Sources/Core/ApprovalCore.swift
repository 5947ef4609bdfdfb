// The broker's state and rules: policies, devices, challenges, per-device queues, expiry, idempotency, password
// fallback, rate limits and lockouts. Every operation is told the time and returns the events it caused.
import DequeModule
import HeapModule
import OrderedCollections

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

    private var devices: [String: Device] = [:]
    private var devicesByUser: [UserKey: OrderedSet<String>] = [:]
    private var challenges: [String: Challenge] = [:]
    private var requests: [RequestKey: Remembered] = [:]
    private var pendingByUser: [UserKey: OrderedSet<String>] = [:]
    /// Each device's pending challenge ids, oldest first.
    private var queues: [String: OrderedSet<String>] = [:]
    private var recentCreations: [UserKey: Deque<UnixMillis>] = [:]
    private var lockouts: [UserKey: UnixMillis] = [:]
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
        let existing = devices[deviceID]
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
            guard (devicesByUser[user]?.count ?? 0) < policy.maxDevicesPerUser else {
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
        devices[deviceID] = device
        devicesByUser[user, default: []].append(deviceID)
        return (existing == nil ? .created(device) : .updated(device), [.deviceSaved(device)])
    }

    /// Removes a device; its pending entries leave its queue.
    public func removeDevice(_ deviceID: String, in tenantID: String) throws(CoreError) -> [CoreEvent] {
        guard let device = devices[deviceID], device.tenantID == tenantID else {
            throw CoreError(.notFound, "no such device")
        }
        devices[deviceID] = nil
        let user = UserKey(tenantID: tenantID, userID: device.userID)
        devicesByUser[user]?.remove(deviceID)
        if devicesByUser[user]?.isEmpty == true { devicesByUser[user] = nil }
        if let queue = queues.removeValue(forKey: deviceID) { adjustDepth(tenantID, by: -queue.count) }
        return [.deviceRemoved(tenantID: tenantID, deviceID: deviceID)]
    }

    /// A device by id, whatever its tenant (device requests name only the device).
    public func device(_ deviceID: String) -> Device? { devices[deviceID] }

    /// The user's devices, in registration order.
    public func devices(of userID: String, in tenantID: String) -> [Device] {
        (devicesByUser[UserKey(tenantID: tenantID, userID: userID)] ?? []).compactMap { devices[$0] }
    }

    /// Replaces a device's push target (token rotation).
    public func updatePush(_ push: PushTarget, for deviceID: String) throws(CoreError) -> [CoreEvent] {
        guard var device = devices[deviceID] else { throw CoreError(.notFound, "no such device") }
        guard device.push != push else { return [] }
        device.push = push
        devices[deviceID] = device
        return [.deviceSaved(device)]
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
            guard let challenge = challenges[id], challenge.request == request else {
                throw CoreError(.idempotencyConflict, "request_id was used for another request")
            }
            expireIfDue(id, now: now, into: &events)
            return (.replayedChallenge(challenges[id] ?? challenge), events)
        case .fallback(let fallback)?:
            guard fallback.request == request else {
                throw CoreError(.idempotencyConflict, "request_id was used for another request")
            }
            return (.replayedFallback(fallback), events)
        case nil:
            break
        }

        let user = UserKey(tenantID: tenantID, userID: request.userID)
        let policy = policy(for: tenantID)
        if let reason = fallbackReason(for: user, policy: policy, now: now, events: &events) {
            let fallback = Fallback(tenantID: tenantID, request: request, reason: reason, decidedAt: now)
            requests[key] = .fallback(fallback)
            forgettings.insert(Forgetting(at: now + Self.rememberMillis, key: key))
            events.append(.fallbackSaved(fallback))
            return (.fallback(fallback), events)
        }

        let deviceIDs = Array(devicesByUser[user] ?? [])
        let ttl = UnixMillis(request.ttlSeconds ?? policy.challengeTTLSeconds) * 1000
        let challenge = Challenge(
            id: newChallengeID(), tenantID: tenantID, request: request,
            choices: makeChoices(correct: request.number, count: policy.choices), devices: deviceIDs, createdAt: now,
            expiresAt: now + ttl)
        challenges[challenge.id] = challenge
        requests[key] = .challenge(challenge.id)
        pendingByUser[user, default: []].append(challenge.id)
        pendingChallenges += 1
        recentCreations[user, default: []].append(now)
        expiries.insert(Deadline(at: challenge.expiresAt, challengeID: challenge.id))
        events.append(.challengeSaved(challenge))
        for deviceID in deviceIDs {
            queues[deviceID, default: []].append(challenge.id)
            events.append(.queued(challengeID: challenge.id, deviceID: deviceID))
        }
        adjustDepth(tenantID, by: deviceIDs.count)
        return (.created(challenge), events)
    }

    /// The checks of API.md's table, most definitive first: policy, lockout, devices, pending, rate.
    private func fallbackReason(
        for user: UserKey, policy: TenantPolicy, now: UnixMillis, events: inout [CoreEvent]
    ) -> FallbackReason? {
        guard policy.offersPasswordless(to: user.userID) else { return .policy }
        if let until = lockouts[user] {
            if until > now { return .lockedOut }
            lockouts[user] = nil
        }
        guard devicesByUser[user]?.isEmpty == false else { return .noDevice }
        for id in pendingByUser[user] ?? [] { expireIfDue(id, now: now, into: &events) }
        if (pendingByUser[user]?.count ?? 0) >= policy.maxPendingPerUser { return .pendingChallenge }
        let windowStart = now - UnixMillis(policy.windowSeconds) * 1000
        while let oldest = recentCreations[user]?.first, oldest <= windowStart { recentCreations[user]?.removeFirst() }
        if recentCreations[user]?.isEmpty == true { recentCreations[user] = nil }
        if (recentCreations[user]?.count ?? 0) >= policy.maxChallengesPerWindow { return .rateLimited }
        return nil
    }

    /// A challenge of the tenant (nil for another tenant's: existence does not leak). Call `tick` first for
    /// statuses that are exact to the millisecond.
    public func challenge(_ challengeID: String, in tenantID: String) -> Challenge? {
        challenges[challengeID].flatMap { $0.tenantID == tenantID ? $0 : nil }
    }

    /// A challenge as one of the devices it was queued to may see it (nil for any other device).
    public func challenge(_ challengeID: String, queuedTo deviceID: String) -> Challenge? {
        challenges[challengeID].flatMap { $0.devices.contains(deviceID) ? $0 : nil }
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
        if challenges[challengeID]?.isPending == true {
            resolve(
                challengeID, .cancelled, reason: .cancelled, answeredBy: nil, decision: nil, now: now, into: &events)
        }
        return (challenges[challengeID]!, events)
    }

    // MARK: Device side

    /// `last_seen_at` is stored when it moves by this much: a device that polls often costs no write per poll.
    public static var seenResolutionMillis: UnixMillis { 60 * 1000 }

    /// Notes that an authenticated request came from the device; returns the save when the stored time is a
    /// minute or more behind.
    public func noteSeen(_ deviceID: String, now: UnixMillis) -> [CoreEvent] {
        guard var device = devices[deviceID] else { return [] }
        if let seen = device.lastSeenAt, now - seen < Self.seenResolutionMillis { return [] }
        device.lastSeenAt = now
        devices[deviceID] = device
        return [.deviceSaved(device)]
    }

    /// The device's pending queue, oldest first, nothing expired.
    public func queue(of deviceID: String, now: UnixMillis) -> [Challenge] {
        (queues[deviceID] ?? []).compactMap { id in
            challenges[id].flatMap { $0.isPending && $0.expiresAt > now ? $0 : nil }
        }
    }

    /// A device's verified answer. The first valid answer from any of the user's devices wins.
    public func answer(
        _ challengeID: String, from deviceID: String, _ decision: Decision, now: UnixMillis
    )
        throws(CoreError) -> (AnswerOutcome, [CoreEvent])
    {
        guard devices[deviceID] != nil, let challenge = challenges[challengeID], challenge.devices.contains(deviceID)
        else { throw CoreError(.notFound, "no such challenge for this device") }
        var events = noteSeen(deviceID, now: now)
        expireIfDue(challengeID, now: now, into: &events)
        let current = challenges[challengeID]!
        guard current.isPending else {
            if current.answeredBy == deviceID && current.decision == decision { return (.replayed(current), events) }
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
                lockouts[UserKey(tenantID: current.tenantID, userID: current.request.userID)] = until
                events.append(.lockoutSaved(tenantID: current.tenantID, userID: current.request.userID, until: until))
            }
        }
        return (.resolved(challenges[challengeID]!), events)
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

    public func restore(device: Device) {
        devices[device.id] = device
        devicesByUser[UserKey(tenantID: device.tenantID, userID: device.userID), default: []].append(device.id)
    }

    /// Restore devices first: a pending challenge is queued again to those of its devices that still exist.
    public func restore(challenge: Challenge) {
        let user = UserKey(tenantID: challenge.tenantID, userID: challenge.request.userID)
        challenges[challenge.id] = challenge
        requests[RequestKey(tenantID: challenge.tenantID, requestID: challenge.request.requestID)] = .challenge(
            challenge.id)
        var creations = recentCreations[user, default: []]
        creations.insert(challenge.createdAt, at: creations.firstIndex { $0 > challenge.createdAt } ?? creations.count)
        recentCreations[user] = creations
        if challenge.isPending {
            pendingByUser[user, default: []].append(challenge.id)
            pendingChallenges += 1
            expiries.insert(Deadline(at: challenge.expiresAt, challengeID: challenge.id))
            let queued = challenge.devices.filter { devices[$0] != nil }
            for deviceID in queued { queues[deviceID, default: []].append(challenge.id) }
            adjustDepth(challenge.tenantID, by: queued.count)
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
        lockouts[UserKey(tenantID: tenantID, userID: userID)] = until
    }

    // MARK: Internals

    private func expireIfDue(_ challengeID: String, now: UnixMillis, into events: inout [CoreEvent]) {
        guard let challenge = challenges[challengeID], challenge.isPending, challenge.expiresAt <= now else { return }
        resolve(challengeID, .expired, reason: nil, answeredBy: nil, decision: nil, now: now, into: &events)
    }

    /// Ends a pending challenge: out of every queue (the answering device learns the outcome, the others that it
    /// was answered elsewhere), stored, sent to the verifier, remembered for the window.
    private func resolve(
        _ challengeID: String, _ status: ChallengeStatus, reason: ResolutionReason?, answeredBy: String?,
        decision: Decision?, now: UnixMillis, into events: inout [CoreEvent]
    ) {
        guard var challenge = challenges[challengeID], challenge.isPending else { return }
        challenge.status = status
        challenge.reason = reason
        challenge.answeredBy = answeredBy
        challenge.decision = decision
        challenge.resolvedAt = now
        challenges[challengeID] = challenge
        let user = UserKey(tenantID: challenge.tenantID, userID: challenge.request.userID)
        pendingByUser[user]?.remove(challengeID)
        if pendingByUser[user]?.isEmpty == true { pendingByUser[user] = nil }
        pendingChallenges -= 1
        events.append(.challengeSaved(challenge))
        events.append(.ended(challenge))
        let ownOutcome = DeviceOutcome(rawValue: status.rawValue) ?? .cancelled
        for deviceID in challenge.devices where queues[deviceID]?.remove(challengeID) != nil {
            if queues[deviceID]?.isEmpty == true { queues[deviceID] = nil }
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
            guard let challenge = challenges[id], !challenge.isPending else { return }
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

    private func adjustDepth(_ tenantID: String, by change: Int) {
        guard change != 0 else { return }
        queueDepth += change
        let depth = queueDepthByTenant[tenantID, default: 0] + change
        queueDepthByTenant[tenantID] = depth == 0 ? nil : depth
    }

    private static var idAlphabet: [Character] {
        Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    }

    /// `ch_` and 22 base64url characters: 132 random bits, taken 60 at a time from three draws.
    private func newChallengeID() -> String {
        let alphabet = Self.idAlphabet
        while true {
            var id = "ch_"
            var bits: UInt64 = 0
            for index in 0..<22 {
                if index % 10 == 0 { bits = random.next() }
                id.append(alphabet[Int(bits & 63)])
                bits >>= 6
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

/// What a `request_id` got.
enum Remembered {
    case challenge(String)
    case fallback(Fallback)
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
