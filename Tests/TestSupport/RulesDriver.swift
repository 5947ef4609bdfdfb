// Core's rules driven over many users at once, as a store would keep them: for tests of Core and of the stores.
import Core

/// What a rule caused, in one list as the tests read it: its changes, then its deliveries.
public enum CoreEvent: Equatable {
    case policySaved(tenantID: String, TenantPolicy)
    case deviceSaved(Device)
    case deviceUpdated(Device)
    case deviceRemoved(tenantID: String, deviceID: String)
    case challengeSaved(Challenge)
    case fallbackSaved(Fallback)
    case lockoutSaved(tenantID: String, userID: String, until: UnixMillis)
    case forgotten(tenantID: String, requestID: String, challengeID: String?)
    case queued(challengeID: String, deviceID: String)
    case unqueued(challengeID: String, deviceID: String, outcome: DeviceOutcome)
    case ended(Challenge)
    case enrollmentSaved(Enrollment)
    case enrollmentForgotten(enrollmentID: String)
    case enrollmentEnded(Enrollment)
    /// A CIBA request's fallback, called back with its bearer token.
    case fallbackResultDue(Fallback, bearerToken: String)

    static func of<Outcome>(_ transition: Transition<Outcome>) -> [CoreEvent] {
        transition.changes.compactMap(CoreEvent.init(change:)) + transition.deliveries.compactMap(CoreEvent.init)
    }

    public init?(change: Change) {
        switch change {
        case .policySaved(let tenantID, let policy): self = .policySaved(tenantID: tenantID, policy)
        case .deviceSaved(let device): self = .deviceSaved(device)
        case .deviceUpdated(let device): self = .deviceUpdated(device)
        case .deviceRemoved(let device): self = .deviceRemoved(tenantID: device.tenantID, deviceID: device.id)
        case .challengeSaved(let challenge): self = .challengeSaved(challenge)
        case .fallbackSaved(let fallback): self = .fallbackSaved(fallback)
        case .lockoutSaved(let user, let until):
            self = .lockoutSaved(tenantID: user.tenantID, userID: user.userID, until: until)
        case .forgotten(let request, let challengeID):
            self = .forgotten(tenantID: request.tenantID, requestID: request.requestID, challengeID: challengeID)
        case .resultDue: return nil  // always beside `.ended`
        case .fallbackResultDue(let fallback, let token): self = .fallbackResultDue(fallback, bearerToken: token)
        case .enrollmentSaved(let enrollment): self = .enrollmentSaved(enrollment)
        case .enrollmentForgotten(let enrollment): self = .enrollmentForgotten(enrollmentID: enrollment.id)
        }
    }

    public init?(_ delivery: Delivery) {
        switch delivery {
        case .queued(let challenge, let device): self = .queued(challengeID: challenge.id, deviceID: device.id)
        case .unqueued(let challengeID, let deviceID, let outcome):
            self = .unqueued(challengeID: challengeID, deviceID: deviceID, outcome: outcome)
        case .ended(let challenge): self = .ended(challenge)
        case .deviceRemoved: return nil  // always beside the change
        case .enrollmentEnded(let enrollment): self = .enrollmentEnded(enrollment)
        }
    }
}

/// The rules over a map of user states, committed under their versions as a store would: tests drive many users
/// through one object, as the Service drives them through a store. Every committed change is also kept in `log`.
public final class RulesDriver {
    public static var rememberMillis: UnixMillis { Rules.rememberMillis }

    private var random: SeededRandom
    private let basePolicy: TenantPolicy
    private let configuredPolicies: [String: TenantPolicy]
    private var storedPolicies: [String: TenantPolicy] = [:]
    public private(set) var users: [UserKey: UserState] = [:]
    /// Every change committed, in order: what a journal would be given.
    public private(set) var log: [Change] = []
    fileprivate var taken = 0
    private var deviceOwners: [String: UserKey] = [:]
    private var challengeOwners: [String: UserKey] = [:]
    private var requestOwners: [RequestKey: UserKey] = [:]
    private var enrollmentOwners: [String: UserKey] = [:]
    private var codeOwners: [[UInt8]: UserKey] = [:]

    public init(
        random: SeededRandom, basePolicy: TenantPolicy = TenantPolicy(),
        configuredPolicies: [String: TenantPolicy] = [:]
    ) {
        self.random = random
        self.basePolicy = basePolicy
        self.configuredPolicies = configuredPolicies
    }

    public func policy(for tenantID: String) -> TenantPolicy {
        storedPolicies[tenantID] ?? configuredPolicies[tenantID] ?? basePolicy
    }

    public func state(_ key: UserKey) -> UserState { users[key] ?? UserState(key: key) }

    /// Commits a transition decided on its state's version; false (and nothing changed) when that is stale.
    @discardableResult
    public func commit<Outcome>(_ transition: Transition<Outcome>) -> Bool {
        var state = transition.state
        let current = self.state(state.key)
        guard current.version == state.version else { return false }
        guard !transition.changesNothing else { return true }
        state.version += 1
        users[state.key] = state.isEmpty ? nil : state
        log += transition.changes
        for change in transition.changes {
            switch change {
            case .deviceSaved(let device): deviceOwners[device.id] = state.key
            case .deviceRemoved(let device): deviceOwners[device.id] = nil
            case .challengeSaved(let challenge):
                challengeOwners[challenge.id] = state.key
                requestOwners[RequestKey(tenantID: challenge.tenantID, requestID: challenge.request.requestID)] =
                    state.key
            case .fallbackSaved(let fallback):
                requestOwners[RequestKey(tenantID: fallback.tenantID, requestID: fallback.request.requestID)] =
                    state.key
            case .forgotten(let request, let challengeID):
                requestOwners[request] = nil
                if let challengeID { challengeOwners[challengeID] = nil }
            case .enrollmentSaved(let enrollment):
                enrollmentOwners[enrollment.id] = state.key
                codeOwners[enrollment.codeHash] = state.key
            case .enrollmentForgotten(let enrollment):
                enrollmentOwners[enrollment.id] = nil
                codeOwners[enrollment.codeHash] = nil
            case .deviceUpdated, .policySaved, .lockoutSaved, .resultDue, .fallbackResultDue: break
            }
        }
        return true
    }

    private func applied<Outcome>(_ transition: Transition<Outcome>) -> (Outcome, [CoreEvent]) {
        precondition(commit(transition), "a transition of the current state is never stale")
        return (transition.outcome, CoreEvent.of(transition))
    }

    public func setPolicy(_ policy: TenantPolicy, for tenantID: String) throws(CoreError) -> [CoreEvent] {
        let change = try Rules.setPolicy(policy, for: tenantID)
        storedPolicies[tenantID] = policy
        log.append(change)
        return [CoreEvent(change: change)!]
    }

    public func registerDevice(
        _ deviceID: String, in tenantID: String, _ registration: DeviceRegistration, now: UnixMillis
    ) throws(CoreError) -> (RegistrationOutcome, [CoreEvent]) {
        let key = UserKey(tenantID: tenantID, userID: registration.userID)
        return applied(
            try Rules.register(
                deviceID, registration, policy: policy(for: tenantID), registeredTo: deviceOwners[deviceID],
                user: state(key), now: now))
    }

    public func removeDevice(_ deviceID: String, in tenantID: String) throws(CoreError) -> [CoreEvent] {
        guard let owner = deviceOwners[deviceID], owner.tenantID == tenantID else {
            throw CoreError(.notFound, "no such device")
        }
        return applied(try Rules.remove(deviceID, user: state(owner))).1
    }

    public func device(_ deviceID: String) -> Device? { deviceOwners[deviceID].flatMap { state($0).device(deviceID) } }

    public func devices(of userID: String, in tenantID: String) -> [Device] {
        Array(state(UserKey(tenantID: tenantID, userID: userID)).devices)
    }

    public func updatePush(_ push: PushTarget, for deviceID: String) throws(CoreError) -> [CoreEvent] {
        guard let owner = deviceOwners[deviceID] else { throw CoreError(.notFound, "no such device") }
        return applied(try Rules.updatePush(push, for: deviceID, user: state(owner))).1
    }

    public func noteSeen(_ deviceID: String, now: UnixMillis) -> [CoreEvent] {
        guard let owner = deviceOwners[deviceID] else { return [] }
        return applied(Rules.noteSeen(deviceID, user: state(owner), now: now)).1
    }

    public func createChallenge(
        _ request: ChallengeRequest, in tenantID: String, traceparent: String? = nil,
        channel: ResultChannel = .verifier, notAfter: UnixMillis? = nil, now: UnixMillis
    ) throws(CoreError) -> (CreateOutcome, [CoreEvent]) {
        let key = UserKey(tenantID: tenantID, userID: request.userID)
        return applied(
            try Rules.create(
                request, traceparent: traceparent, channel: channel, notAfter: notAfter, policy: policy(for: tenantID),
                requestHeldBy: requestOwners[RequestKey(tenantID: tenantID, requestID: request.requestID)],
                user: state(key), now: now, random: &random))
    }

    public func challenge(_ challengeID: String, in tenantID: String) -> Challenge? {
        guard let owner = challengeOwners[challengeID], owner.tenantID == tenantID else { return nil }
        return state(owner).challenge(challengeID)
    }

    public func cancel(
        _ challengeID: String, in tenantID: String, now: UnixMillis
    ) throws(CoreError) -> (Challenge, [CoreEvent]) {
        guard let owner = challengeOwners[challengeID], owner.tenantID == tenantID else {
            throw CoreError(.notFound, "no such challenge")
        }
        return applied(try Rules.cancel(challengeID, user: state(owner), now: now))
    }

    public func redeemCode(for challengeID: String, in tenantID: String) throws(CoreError) -> (Challenge, [CoreEvent]) {
        guard let owner = challengeOwners[challengeID], owner.tenantID == tenantID else {
            throw CoreError(.notFound, "no such challenge")
        }
        return applied(try Rules.redeemCode(for: challengeID, user: state(owner)))
    }

    /// A device's answer; an answer that finds the challenge expired commits the expiry and throws `expired`, as
    /// the Service answers 410 once the expiry is durable.
    public func answer(
        _ challengeID: String, from deviceID: String, _ decision: Decision, now: UnixMillis
    ) throws(CoreError) -> (AnswerOutcome, [CoreEvent]) {
        guard let owner = deviceOwners[deviceID] else {
            throw CoreError(.notFound, "no such challenge for this device")
        }
        let (outcome, events) = applied(
            try Rules.answer(
                challengeID, from: deviceID, decision, policy: policy(for: owner.tenantID), user: state(owner),
                now: now))
        if case .expired = outcome { throw CoreError(.expired, "the challenge expired") }
        return (outcome, events)
    }

    public func enroll(
        _ request: EnrollmentRequest, in tenantID: String, codeHash: [UInt8], now: UnixMillis
    ) throws(CoreError) -> (Enrollment, [CoreEvent]) {
        let key = UserKey(tenantID: tenantID, userID: request.userID)
        return applied(
            try Rules.enroll(
                request, codeHash: codeHash, policy: policy(for: tenantID), user: state(key), now: now,
                random: &random))
    }

    public func enrollment(_ enrollmentID: String) -> Enrollment? {
        enrollmentOwners[enrollmentID].flatMap { state($0).enrollment(enrollmentID) }
    }

    /// A phone completes an enrollment as `deviceID`; the key index is every device's key.
    public func complete(
        _ completion: EnrollmentCompletion, as deviceID: String, now: UnixMillis
    ) throws(CoreError) -> (CompletionOutcome, [CoreEvent]) {
        guard let owner = codeOwners[completion.codeHash] else { throw CoreError(.notFound, "no such activation code") }
        let keyHeldBy = users.values.first { $0.devices.contains { $0.publicKey == completion.publicKey } }?.key
        return applied(
            try Rules.complete(
                completion, as: deviceID, policy: policy(for: owner.tenantID), keyHeldBy: keyHeldBy,
                user: state(owner), now: now))
    }

    public func cancelEnrollment(
        _ enrollmentID: String, in tenantID: String, now: UnixMillis
    ) throws(CoreError) -> (Enrollment, [CoreEvent]) {
        guard let owner = enrollmentOwners[enrollmentID], owner.tenantID == tenantID else {
            throw CoreError(.notFound, "no such enrollment")
        }
        return applied(try Rules.cancelEnrollment(enrollmentID, user: state(owner), now: now))
    }

    public func queue(of deviceID: String, now: UnixMillis) -> [Challenge] {
        deviceOwners[deviceID].map { state($0).queue(of: deviceID, now: now) } ?? []
    }

    public func tick(now: UnixMillis) -> [CoreEvent] {
        var events: [CoreEvent] = []
        for key in users.keys.sorted(by: { $0.description < $1.description }) {
            guard let deadline = state(key).nextDeadline, deadline <= now else { continue }
            events += applied(Rules.tick(user: state(key), now: now)).1
        }
        return events
    }

    public var nextDeadline: UnixMillis? { users.values.compactMap(\.nextDeadline).min() }
    public var queueDepth: Int { users.values.reduce(0) { $0 + $1.queue.count } }
    public var pendingChallenges: Int { users.values.reduce(0) { $0 + $1.pendingCount } }
    public var queueDepthByTenant: [String: Int] {
        users.values.reduce(into: [:]) { depths, user in
            if !user.queue.isEmpty { depths[user.key.tenantID, default: 0] += user.queue.count }
        }
    }

    // Recovery, as the embedded store restores: devices first, then challenges in creation order.
    public func restore(policy: TenantPolicy, for tenantID: String) { storedPolicies[tenantID] = policy }

    public func restore(device: Device) {
        let key = UserKey(tenantID: device.tenantID, userID: device.userID)
        var user = state(key)
        user.restore(device: device)
        users[key] = user
        deviceOwners[device.id] = key
    }

    public func restore(challenge: Challenge) {
        var user = state(challenge.user)
        user.restore(challenge: challenge)
        users[challenge.user] = user
        challengeOwners[challenge.id] = challenge.user
        requestOwners[RequestKey(tenantID: challenge.tenantID, requestID: challenge.request.requestID)] = challenge.user
    }

    public func restore(fallback: Fallback) {
        var user = state(fallback.user)
        user.restore(fallback: fallback)
        users[fallback.user] = user
        requestOwners[RequestKey(tenantID: fallback.tenantID, requestID: fallback.request.requestID)] = fallback.user
    }

    public func restore(lockoutOf userID: String, in tenantID: String, until: UnixMillis) {
        let key = UserKey(tenantID: tenantID, userID: userID)
        var user = state(key)
        user.restore(lockedUntil: until)
        users[key] = user
    }
}

extension RulesDriver {
    /// The changes logged since the last call.
    public func takeChanges() -> [Change] {
        defer { taken = log.count }
        return Array(log[taken...])
    }
}
