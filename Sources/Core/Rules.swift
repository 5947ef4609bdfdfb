// The rules of API.md as pure transitions over one user's state: each is told the state, the time (and, to create,
// the policy and a random source) and returns a Transition. No clock, no randomness and no I/O of its own.

public enum Rules {
    /// Ended challenges and fallback answers, with their `request_id`s, are remembered this long after they end.
    public static let rememberMillis: UnixMillis = 15 * 60 * 1000
    /// `last_seen_at` is stored when it moves by this much: a device that polls often costs no write per poll.
    public static let seenResolutionMillis: UnixMillis = 60 * 1000

    // MARK: Policies

    /// A tenant's policy, checked; it applies from the next challenge on.
    public static func setPolicy(_ policy: TenantPolicy, for tenantID: String) throws(CoreError) -> Change {
        try Validate.tenantID(tenantID)
        try policy.validate()
        return .policySaved(tenantID: tenantID, policy)
    }

    // MARK: Devices

    /// Registers or updates a device. A device serves exactly one account in one tenant.
    /// - Parameter registeredTo: the user the device is registered to now, if any (the store's device index).
    public static func register(
        _ deviceID: String, _ registration: DeviceRegistration, policy: TenantPolicy, registeredTo: UserKey?,
        user: UserState, now: UnixMillis
    ) throws(CoreError) -> Transition<RegistrationOutcome> {
        try Validate.tenantID(user.key.tenantID)
        try Validate.identifier(deviceID, field: "device_id")
        try Validate.userID(registration.userID)
        precondition(user.key.userID == registration.userID, "the registration's user is the state's")
        guard !registration.publicKey.isEmpty else { throw CoreError(.invalidField, "public_key is empty") }
        try Validate.displayName(registration.displayName)
        if let registeredTo, registeredTo != user.key {
            throw CoreError(.deviceTenantConflict, "the device is registered to another account")
        }
        let index = user.devices.firstIndex { $0.id == deviceID }
        try checkDeviceRules(
            mamRestricted: registration.mamRestricted, policy: policy, user: user, addingADevice: index == nil)
        let existing = index.map { user.devices[$0] }
        var device =
            existing
            ?? Device(
                id: deviceID, tenantID: user.key.tenantID, userID: registration.userID,
                publicKey: registration.publicKey, push: registration.push, displayName: registration.displayName,
                createdAt: now)
        device.publicKey = registration.publicKey
        device.push = registration.push
        device.displayName = registration.displayName
        var work = Work(user)
        if let existing, existing == device { return work.finish(.unchanged(device)) }
        if let index {
            work.state.devices.modify(at: index) { $0 = device }
        } else {
            work.state.devices.append(device)
        }
        work.changes.append(existing?.publicKey == device.publicKey ? .deviceUpdated(device) : .deviceSaved(device))
        return work.finish(existing == nil ? .created(device) : .updated(device))
    }

    /// The rules a device must pass to serve the user: checked when it is registered, and when an enrollment is made
    /// and completed.
    static func checkDeviceRules(
        mamRestricted: Bool, policy: TenantPolicy, user: UserState, addingADevice: Bool
    ) throws(CoreError) {
        guard !mamRestricted else { throw CoreError(.mamRestricted, "the user is under mobile-app management") }
        guard policy.targets(user.key.userID) else {
            throw CoreError(.policyExcluded, "the tenant's policy does not target the user")
        }
        if addingADevice {
            guard user.devices.count < policy.maxDevicesPerUser else {
                throw CoreError(.deviceLimit, "the user already has \(policy.maxDevicesPerUser) devices")
            }
        }
    }

    /// Removes a device; its pending entries leave its queue.
    public static func remove(_ deviceID: String, user: UserState) throws(CoreError) -> Transition<Void> {
        guard let index = user.devices.firstIndex(where: { $0.id == deviceID }) else {
            throw CoreError(.notFound, "no such device")
        }
        var work = Work(user)
        let removed = work.state.devices.remove(at: index)
        work.state.queue.removeAll { $0.deviceID == deviceID }
        work.changes.append(.deviceRemoved(removed))
        work.deliveries.append(.deviceRemoved(deviceID: deviceID))
        return work.finish(())
    }

    /// Replaces a device's push target (token rotation).
    public static func updatePush(
        _ push: PushTarget, for deviceID: String, user: UserState
    ) throws(CoreError) -> Transition<Void> {
        guard let index = user.devices.firstIndex(where: { $0.id == deviceID }) else {
            throw CoreError(.notFound, "no such device")
        }
        var work = Work(user)
        guard user.devices[index].push != push else { return work.finish(()) }
        work.state.devices.modify(at: index) { $0.push = push }
        work.changes.append(.deviceUpdated(work.state.devices[index]))
        return work.finish(())
    }

    /// Notes that an authenticated request came from the device; saves it when the stored time is a minute or more
    /// behind.
    public static func noteSeen(_ deviceID: String, user: UserState, now: UnixMillis) -> Transition<Void> {
        var work = Work(user)
        noteSeen(deviceID, now: now, &work)
        return work.finish(())
    }

    private static func noteSeen(_ deviceID: String, now: UnixMillis, _ work: inout Work) {
        guard let index = work.state.devices.firstIndex(where: { $0.id == deviceID }) else { return }
        if let seen = work.state.devices[index].lastSeenAt, now - seen < seenResolutionMillis { return }
        work.state.devices.modify(at: index) { $0.lastSeenAt = now }
        work.changes.append(.deviceUpdated(work.state.devices[index]))
    }

    // MARK: Challenges

    /// Creates a challenge, or answers with `password_fallback` before anything reaches a phone, or replays what an
    /// earlier request with the same `request_id` got.
    /// - Parameters:
    ///   - requestHeldBy: the user whose aggregate remembers `request_id` now, if any (the store's index, which is in
    ///     step with the aggregates).
    ///   - channel: where the result goes; a CIBA channel's fallback is called back too.
    ///   - notAfter: when the challenge must have expired at the latest, whatever its TTL (a CIBA token's end). Not
    ///     part of the request: a retry decided later is still the same request.
    public static func create<Random: RandomNumberGenerator>(
        _ request: ChallengeRequest, traceparent: String? = nil, channel: ResultChannel = .verifier,
        notAfter: UnixMillis? = nil, policy: TenantPolicy, requestHeldBy: UserKey?, user: UserState,
        now: UnixMillis, random: inout Random
    ) throws(CoreError) -> Transition<CreateOutcome> {
        try Validate.tenantID(user.key.tenantID)
        try request.validate()
        precondition(user.key.userID == request.userID, "the request's user is the state's")
        let tenantID = user.key.tenantID
        if let requestHeldBy, requestHeldBy != user.key {
            throw CoreError(.idempotencyConflict, "request_id was used for another request")
        }
        var work = Work(user)
        if let index = user.pending.firstIndex(where: { $0.request.requestID == request.requestID }) {
            guard user.pending[index].request == request else {
                throw CoreError(.idempotencyConflict, "request_id was used for another request")
            }
            let id = user.pending[index].id
            expireIfDue(at: index, now: now, &work)
            return work.finish(.replayedChallenge(work.state.challenge(id) ?? user.pending[index]))
        }
        // The index says whether any aggregate remembers the request_id: a new one needs no search of the ended.
        if requestHeldBy != nil,
            let ended = user.ended.first(where: { $0.challenge.request.requestID == request.requestID })
        {
            guard ended.challenge.request == request else {
                throw CoreError(.idempotencyConflict, "request_id was used for another request")
            }
            return work.finish(.replayedChallenge(ended.challenge))
        }
        if let fallback = user.fallbacks.first(where: { $0.request.requestID == request.requestID }) {
            guard fallback.request == request else {
                throw CoreError(.idempotencyConflict, "request_id was used for another request")
            }
            return work.finish(.replayedFallback(fallback))
        }
        if let reason = fallbackReason(policy: policy, now: now, &work) {
            let fallback = Fallback(tenantID: tenantID, request: request, reason: reason, decidedAt: now)
            work.state.fallbacks.append(fallback)
            work.changes.append(.fallbackSaved(fallback))
            if case .ciba(let token) = channel { work.changes.append(.fallbackResultDue(fallback, bearerToken: token)) }
            return work.finish(.fallback(fallback))
        }
        let devices = Array(user.devices)
        let ttl = UnixMillis(request.ttlSeconds ?? policy.challengeTTLSeconds) * 1000
        let challenge = Challenge(
            id: PartitionedID.make(.challenge, in: user.partition, using: &random), tenantID: tenantID,
            request: request,
            choices: makeChoices(correct: request.number, count: policy.choices, using: &random),
            devices: devices.map(\.id),
            createdAt: now, expiresAt: min(now + ttl, notAfter ?? .max), traceparent: traceparent, channel: channel)
        work.state.pending.append(challenge)
        work.state.recentCreations.append(now)
        work.changes.append(.challengeSaved(challenge))
        for device in devices {
            work.state.queue.append(QueueEntry(challengeID: challenge.id, deviceID: device.id))
            work.deliveries.append(.queued(challenge, device))
        }
        return work.finish(.created(challenge))
    }

    /// The checks of API.md's table, most definitive first: policy, lockout, devices, pending, rate.
    private static func fallbackReason(policy: TenantPolicy, now: UnixMillis, _ work: inout Work) -> FallbackReason? {
        guard policy.offersPasswordless(to: work.state.key.userID) else { return .policy }
        if let until = work.state.lockedUntil {
            if until > now { return .lockedOut }
            work.state.lockedUntil = nil
        }
        guard !work.state.devices.isEmpty else { return .noDevice }
        expireDue(now: now, &work)
        if work.state.pendingCount >= policy.maxPendingPerUser { return .pendingChallenge }
        let windowStart = now - UnixMillis(policy.windowSeconds) * 1000
        let lapsed = work.state.recentCreations.prefix { $0 <= windowStart }.count
        if lapsed > 0 { work.state.recentCreations.removeFirst(lapsed) }
        if work.state.recentCreations.count >= policy.maxChallengesPerWindow { return .rateLimited }
        return nil
    }

    /// "Use your password instead": a pending challenge becomes `cancelled`; an ended one is returned as it is.
    public static func cancel(
        _ challengeID: String, user: UserState, now: UnixMillis
    ) throws(CoreError) -> Transition<Challenge> {
        var work = Work(user)
        if let index = user.pending.firstIndex(where: { $0.id == challengeID }) {
            if !expireIfDue(at: index, now: now, &work) {
                resolve(at: index, Resolution(status: .cancelled, reason: .cancelled, at: now), &work)
            }
        }
        guard let challenge = work.state.challenge(challengeID) else { throw CoreError(.notFound, "no such challenge") }
        return work.finish(challenge)
    }

    /// An OpenID Connect authorization code for the challenge is redeemed: the first redemption, on any instance,
    /// commits; every later one is refused. Only an approved challenge of a browser's sign-in has a code, and only
    /// while the device that approved it is still the user's.
    public static func redeemCode(for challengeID: String, user: UserState) throws(CoreError) -> Transition<Challenge> {
        guard let ended = user.ended.firstIndex(where: { $0.challenge.id == challengeID }) else {
            throw CoreError(.notFound, "no such approved sign-in")
        }
        var challenge = user.ended[ended].challenge
        guard case .browser(let redeemed) = challenge.channel, let resolution = challenge.resolution,
            resolution.status == .approved, let device = resolution.device, user.device(device) != nil
        else { throw CoreError(.notFound, "no such approved sign-in") }
        guard !redeemed else { throw CoreError(.alreadyResolved, "the code was redeemed already") }
        challenge.channel = .browser(codeRedeemed: true)
        var work = Work(user)
        work.state.ended[ended] = EndedChallenge(challenge)
        work.changes.append(.challengeSaved(challenge))
        return work.finish(challenge)
    }

    // MARK: Device side

    /// A device's verified answer. The first valid answer from any of the user's devices wins.
    public static func answer(
        _ challengeID: String, from deviceID: String, _ decision: Decision, policy: TenantPolicy, user: UserState,
        now: UnixMillis
    ) throws(CoreError) -> Transition<AnswerOutcome> {
        guard user.device(deviceID) != nil, let found = user.challenge(challengeID), found.devices.contains(deviceID)
        else { throw CoreError(.notFound, "no such challenge for this device") }
        var work = Work(user)
        noteSeen(deviceID, now: now, &work)
        if let index = user.pending.firstIndex(where: { $0.id == challengeID }), expireIfDue(at: index, now: now, &work)
        {
            return work.finish(.expired(work.state.challenge(challengeID) ?? found))
        }
        if let ended = found.resolution {
            // A retry is the same answer from the same device, whatever its timestamp and (randomised) signature.
            if ended.device == deviceID && ended.decision?.kind == decision.kind {
                return work.finish(.replayed(found))
            }
            if ended.status == .expired { return work.finish(.expired(found)) }
            throw CoreError(.alreadyResolved, "the challenge has already ended")
        }
        guard let index = work.state.pending.firstIndex(where: { $0.id == challengeID }) else {
            throw CoreError(.notFound, "no such challenge for this device")
        }
        let resolution: Resolution
        switch decision.kind {
        case .approve(let selected) where selected == found.request.number:
            resolution = Resolution(status: .approved, device: deviceID, decision: decision, at: now)
        case .approve:
            resolution = Resolution(
                status: .denied, reason: .wrongNumber, device: deviceID, decision: decision, at: now)
        case .deny(let why):
            resolution = Resolution(
                status: .denied, reason: why == .notMe ? .notMe : .cancelled, device: deviceID, decision: decision,
                at: now)
            if why == .notMe {
                let until = now + UnixMillis(policy.lockoutSeconds) * 1000
                work.state.lockedUntil = until
                work.changes.append(.lockoutSaved(user.key, until: until))
            }
        }
        // Resolved before `finish` is called: an argument that changed `work` would not be seen by it.
        let resolved = resolve(at: index, resolution, &work)
        return work.finish(.resolved(resolved))
    }

    // MARK: Time

    /// Expires what is due and forgets what has been remembered long enough.
    public static func tick(user: UserState, now: UnixMillis) -> Transition<Void> {
        var work = Work(user)
        expireDue(now: now, &work)
        tickEnrollments(now: now, &work)
        let lapsed = { (ended: EndedChallenge) in (ended.challenge.resolution?.at ?? now) + rememberMillis <= now }
        for ended in work.state.ended where lapsed(ended) {
            let challenge = ended.challenge
            work.changes.append(
                .forgotten(
                    RequestKey(tenantID: challenge.tenantID, requestID: challenge.request.requestID),
                    challengeID: challenge.id))
        }
        if work.state.ended.contains(where: lapsed) { work.state.ended.removeAll(where: lapsed) }
        let forgotten = work.state.fallbacks.filter { $0.decidedAt + rememberMillis <= now }
        for fallback in forgotten {
            work.changes.append(
                .forgotten(
                    RequestKey(tenantID: fallback.tenantID, requestID: fallback.request.requestID), challengeID: nil))
        }
        if !forgotten.isEmpty { work.state.fallbacks.removeAll { $0.decidedAt + rememberMillis <= now } }
        if let until = work.state.lockedUntil, until <= now { work.state.lockedUntil = nil }
        return work.finish(())
    }

    // MARK: Internals

    /// Expires every pending challenge whose time is up.
    private static func expireDue(now: UnixMillis, _ work: inout Work) {
        var index = 0
        while index < work.state.pending.count {
            if !expireIfDue(at: index, now: now, &work) { index += 1 }
        }
    }

    /// Expires the pending challenge at `index` if its time is up (it then leaves `pending`).
    @discardableResult
    private static func expireIfDue(at index: Int, now: UnixMillis, _ work: inout Work) -> Bool {
        guard work.state.pending[index].expiresAt <= now else { return false }
        resolve(at: index, Resolution(status: .expired, at: now), &work)
        return true
    }

    /// Ends the pending challenge at `index`: out of every queue (the answering device learns the outcome, the others
    /// that it was answered elsewhere), stored, sent to the verifier, remembered for the window.
    @discardableResult
    private static func resolve(at index: Int, _ resolution: Resolution, _ work: inout Work) -> Challenge {
        var challenge = work.state.pending.remove(at: index)
        challenge.resolution = resolution
        work.state.ended.append(EndedChallenge(challenge))
        for entry in work.state.queue where entry.challengeID == challenge.id {
            work.deliveries.append(
                .unqueued(
                    challengeID: challenge.id, deviceID: entry.deviceID,
                    outcome: resolution.outcome(for: entry.deviceID)))
        }
        work.state.queue.removeAll { $0.challengeID == challenge.id }
        work.changes.append(.challengeSaved(challenge))
        if challenge.channel.isCallback { work.changes.append(.resultDue(challenge)) }
        work.deliveries.append(.ended(challenge))
        return challenge
    }

    /// The correct number and `count - 1` distinct decoys from 0–99, in random order.
    private static func makeChoices<Random: RandomNumberGenerator>(
        correct: Int, count: Int, using random: inout Random
    ) -> [Int] {
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
