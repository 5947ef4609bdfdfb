// The embedded store: every user's aggregate in memory (a load never waits), each commit applied at once under its
// version check and journaled, one journal batch per loop turn; deadlines and gauges kept per partition.
import Core
import HeapModule

/// `@unchecked Sendable`: confined to the event loop that `executor` runs on (after recovery hands it over); journal
/// completions come back through it.
public final class EmbeddedStore: UserStore, @unchecked Sendable {
    /// One user's aggregate, held by reference: the indexes then cost a pointer a slot, not a copy of the state.
    final class Slot {
        var state: UserState
        /// False once the user was dropped: deadline entries that still point here are skipped.
        var isLive = true

        init(_ state: UserState) { self.state = state }
    }

    private struct Deadline: Comparable {
        let at: UnixMillis
        let slot: Slot

        static func < (lhs: Deadline, rhs: Deadline) -> Bool { lhs.at < rhs.at }
        static func == (lhs: Deadline, rhs: Deadline) -> Bool { lhs.at == rhs.at && lhs.slot === rhs.slot }
    }

    private struct PartitionFigures {
        var pendingChallenges = 0
        var queueDepth = 0
    }

    private let journal: Journal
    private let executor: @Sendable (@escaping @Sendable () -> Void) -> Void
    private let basePolicy: TenantPolicy
    private let configuredPolicies: [String: TenantPolicy]
    private var storedPolicies: [String: TenantPolicy] = [:]

    private var users: [UserKey: Slot] = [:]
    private var devices: [String: Slot] = [:]
    private var challenges: [String: Slot] = [:]
    private var requests: [RequestKey: Slot] = [:]
    private var enrollments: [String: Slot] = [:]
    private var activationCodes: [[UInt8]: Slot] = [:]
    /// A device's public key (by its hash) → the user it was last registered to; a device since removed or re-keyed
    /// leaves its entry, so a read checks the user still holds the key.
    private var deviceKeys: [Int: Slot] = [:]
    /// Per partition, min-heaps: a sweep costs what is due, not what is pending.
    private var deadlines = [Heap<Deadline>](repeating: Heap(), count: Partition.count)
    private var earliestDeadline: UnixMillis?
    private var figures = [PartitionFigures](repeating: PartitionFigures(), count: Partition.count)
    private var queueDepthByTenant: [String: Int] = [:]
    private var forwardQueueDepth = 0

    private var batch = JournalBatch()
    private var flushScheduled = false

    private struct JournalBatch {
        var changes: [Change] = []
        var outbox: [OutboxChange] = []
        var completions: [(CommitResult) -> Void] = []
    }

    /// - Parameters:
    ///   - executor: runs work on the loop that owns the store; the Broker passes its event loop's `execute`.
    ///   - basePolicy: for tenants with neither a configured nor a stored policy.
    ///   - configuredPolicies: from the configuration file; a stored policy (PUT) wins over them.
    public init(
        journal: Journal, executor: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void,
        basePolicy: TenantPolicy = TenantPolicy(), configuredPolicies: [String: TenantPolicy] = [:]
    ) {
        self.journal = journal
        self.executor = executor
        self.basePolicy = basePolicy
        self.configuredPolicies = configuredPolicies
    }

    // MARK: Reading

    public func load(_ lookup: Lookup, completion: @escaping (Result<Loaded, StoreError>) -> Void) {
        completion(.success(peek(lookup)))
    }

    /// What `load` finds, without a completion.
    public func peek(_ lookup: Lookup) -> Loaded {
        switch lookup {
        case .user(let key): Loaded(state: state(of: key))
        case .device(let deviceID), .answer(let deviceID, _): Loaded(state: devices[deviceID]?.state)
        case .challenge(let challengeID): Loaded(state: challenges[challengeID]?.state)
        case .creation(let key, let request): Loaded(state: state(of: key), heldBy: requests[request]?.state.key)
        case .registration(let key, let deviceID): Loaded(state: state(of: key), heldBy: devices[deviceID]?.state.key)
        case .enrollment(let enrollmentID): Loaded(state: enrollments[enrollmentID]?.state)
        case .activation(let codeHash, let publicKey):
            Loaded(state: activationCodes[codeHash]?.state, heldBy: holder(of: publicKey))
        }
    }

    /// The user one of whose devices has `publicKey`.
    private func holder(of publicKey: [UInt8]) -> UserKey? {
        guard let slot = deviceKeys[publicKey.hashValue], slot.isLive,
            slot.state.devices.contains(where: { $0.publicKey == publicKey })
        else { return nil }
        return slot.state.key
    }

    private func state(of key: UserKey) -> UserState { users[key]?.state ?? UserState(key: key) }

    public func policy(for tenantID: String) -> TenantPolicy {
        storedPolicies[tenantID] ?? configuredPolicies[tenantID] ?? basePolicy
    }

    public var gauges: Gauges {
        var gauges = Gauges()
        for partition in figures {
            gauges.pendingChallenges += partition.pendingChallenges
            gauges.queueDepth += partition.queueDepth
        }
        gauges.queueDepthByTenant = queueDepthByTenant
        gauges.forwardQueueDepth = forwardQueueDepth
        return gauges
    }

    public var nextDeadline: UnixMillis? { earliestDeadline }

    public func dueUsers(
        in partitions: [Partition], now: UnixMillis, completion: @escaping (Result<[UserKey], StoreError>) -> Void
    ) {
        guard let earliest = earliestDeadline, earliest <= now else { return completion(.success([])) }
        var due: [UserKey] = []
        for partition in partitions {
            while let next = deadlines[partition.index].min, next.at <= now {
                deadlines[partition.index].removeMin()
                // An entry is left behind whenever a commit moves the user's deadline; only a current one counts.
                guard next.slot.isLive, let deadline = next.slot.state.nextDeadline, deadline <= now else { continue }
                if due.last != next.slot.state.key { due.append(next.slot.state.key) }
            }
        }
        earliestDeadline = computeEarliestDeadline()
        completion(.success(due))
    }

    private func computeEarliestDeadline() -> UnixMillis? {
        deadlines.lazy.compactMap { $0.min?.at }.min()
    }

    public func dueCallbacks(
        in partitions: [Partition], now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping (Result<DueCallbacks, StoreError>) -> Void
    ) {
        let callback = Unchecked(completion)
        journal.dueCallbacks(in: partitions, now: now, after: cursor, limit: limit) { callback.value($0) }
    }

    public func deadLetters(
        tenantID: String, limit: Int, completion: @escaping (Result<[DeadLetter], StoreError>) -> Void
    ) {
        let callback = Unchecked(completion)
        journal.deadLetters(tenantID: tenantID, limit: limit) { callback.value($0) }
    }

    public func redrive(
        tenantID: String, challengeID: String?, now: UnixMillis, completion: @escaping (Result<Int, StoreError>) -> Void
    ) {
        let store = Unchecked(self)
        let callback = Unchecked(completion)
        journal.redrive(tenantID: tenantID, challengeID: challengeID, now: now) { result in
            if case .success(let requeued) = result { store.value.forwardQueueDepth += requeued }
            callback.value(result)
        }
    }

    // MARK: Writing

    public weak var sink: DeliverySink?

    public func commit(_ commit: Commit, completion: @escaping (CommitResult) -> Void) {
        if let state = commit.state {
            guard apply(state, commit.changes) else { return completion(.stale) }
        }
        for change in commit.changes {
            if case .policySaved(let tenantID, let policy) = change { storedPolicies[tenantID] = policy }
        }
        for change in commit.outbox {
            switch change {
            case .enqueue: forwardQueueDepth += 1
            case .delivered, .deadLetter: forwardQueueDepth -= 1
            case .retry: break
            }
        }
        batch.changes += commit.changes
        batch.outbox += commit.outbox
        let deliveries = commit.deliveries
        batch.completions.append(
            deliveries.isEmpty
                ? completion
                : { [weak self] outcome in
                    if outcome == .durable, let sink = self?.sink {
                        for delivery in deliveries { sink.deliver(delivery, committedHere: true) }
                    }
                    completion(outcome)
                })
        guard !flushScheduled else { return }
        flushScheduled = true
        let store = Unchecked(self)
        executor { store.value.flush() }
    }

    /// Applies a user's new state if it was decided on the current version; false when it is stale.
    private func apply(_ decided: UserState, _ changes: [Change]) -> Bool {
        let key = decided.key
        let slot = users[key]
        let current = slot?.state ?? UserState(key: key)
        guard current.version == decided.version else { return false }
        var state = decided
        state.version = current.version + 1
        let partition = key.partition.index
        figures[partition].pendingChallenges += state.pendingCount - current.pendingCount
        let depthChange = state.queue.count - current.queue.count
        figures[partition].queueDepth += depthChange
        if depthChange != 0 {
            let depth = queueDepthByTenant[key.tenantID, default: 0] + depthChange
            queueDepthByTenant[key.tenantID] = depth == 0 ? nil : depth
        }
        if state.isEmpty {
            if let slot {
                slot.isLive = false
                users[key] = nil
            }
            index(changes, in: nil)
            return true
        }
        let held = slot ?? Slot(state)
        held.state = state
        if slot == nil { users[key] = held }
        index(changes, in: held)
        if let deadline = state.nextDeadline, deadline != current.nextDeadline || slot == nil {
            deadlines[partition].insert(Deadline(at: deadline, slot: held))
            earliestDeadline = min(earliestDeadline ?? deadline, deadline)
        }
        return true
    }

    /// Keeps the lookups that name no user (device, challenge, `request_id` → user) in step with the changes.
    private func index(_ changes: [Change], in slot: Slot?) {
        for change in changes {
            switch change {
            case .deviceSaved(let device):
                devices[device.id] = slot
                deviceKeys[device.publicKey.hashValue] = slot
            case .deviceRemoved(let device):
                devices[device.id] = nil
                deviceKeys[device.publicKey.hashValue] = nil
            case .challengeSaved(let challenge):
                challenges[challenge.id] = slot
                requests[RequestKey(tenantID: challenge.tenantID, requestID: challenge.request.requestID)] = slot
            case .fallbackSaved(let fallback):
                requests[RequestKey(tenantID: fallback.tenantID, requestID: fallback.request.requestID)] = slot
            case .forgotten(let request, let challengeID):
                requests[request] = nil
                if let challengeID { challenges[challengeID] = nil }
            case .enrollmentSaved(let enrollment):
                enrollments[enrollment.id] = slot
                activationCodes[enrollment.codeHash] = slot
            case .enrollmentForgotten(let enrollment):
                enrollments[enrollment.id] = nil
                activationCodes[enrollment.codeHash] = nil
            case .deviceUpdated, .policySaved, .lockoutSaved, .resultDue, .fallbackResultDue: break
            }
        }
    }

    /// One journal commit for everything committed in this loop turn.
    private func flush() {
        flushScheduled = false
        let taken = batch
        batch = JournalBatch()
        let completions = Unchecked(taken.completions)
        journal.commit(taken.changes, outbox: taken.outbox) { result in
            let outcome: CommitResult
            switch result {
            case .success: outcome = .durable
            case .failure(let error): outcome = .failed(error)
            }
            for completion in completions.value { completion(outcome) }
        }
    }

    public func close() { journal.close() }

    // MARK: Alone on its journal: every delivery and every callback is this instance's.

    public var isReachable: Bool { true }
    public var commandsSent: Int { 0 }
    public var forwardingPartitions: [Partition] { Partition.all }
    public var committerHoldMillis: UnixMillis { 0 }
    public func streamOpened(deviceID: String, routed: @escaping () -> Void) {}
    public func streamClosed(deviceID: String) {}
    public func watch(endOf id: String, seconds: Double, watching: @escaping () -> Void) {}

    // MARK: Recovery

    /// Builds the store from what the journal holds, on the calling thread (before the loop owns the store). Stored
    /// lockouts, challenges and fallbacks come back into their users' aggregates; what lapsed meanwhile is left for
    /// the first sweep.
    /// - Returns: the store and what was recovered.
    public static func recover(
        _ journal: Journal, executor: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void,
        basePolicy: TenantPolicy = TenantPolicy(), configuredPolicies: [String: TenantPolicy] = [:],
        expectedUsers: Int = 0
    ) throws(StoreError) -> (EmbeddedStore, Recovered) {
        let store = EmbeddedStore(
            journal: journal, executor: executor, basePolicy: basePolicy, configuredPolicies: configuredPolicies)
        var recovered = Recovered()
        store.reserve(users: expectedUsers, challenges: expectedUsers, fallbacks: 0)
        try journal.load { record in
            recovered.count(record)
            store.restore(record)
        }
        store.finishRecovery()
        return (store, recovered)
    }

    /// Counts of what recovery read.
    public struct Recovered: Sendable {
        public var devices = 0
        public var challenges = 0
        public var callbacks = 0

        mutating func count(_ record: StoredRecord) {
            switch record {
            case .sizes(_, _, _, let queued): callbacks = queued
            case .device: devices += 1
            case .challenge: challenges += 1
            default: break
            }
        }
    }

    private func reserve(users userCount: Int, challenges challengeCount: Int, fallbacks: Int) {
        users.reserveCapacity(userCount)
        devices.reserveCapacity(userCount)
        challenges.reserveCapacity(challengeCount)
        requests.reserveCapacity(challengeCount + fallbacks)
    }

    private func restore(_ record: StoredRecord) {
        switch record {
        case .sizes(let deviceCount, let challengeCount, let fallbackCount, let callbacks):
            reserve(users: deviceCount, challenges: challengeCount, fallbacks: fallbackCount)
            forwardQueueDepth = callbacks
        case .policy(let tenantID, let policy): storedPolicies[tenantID] = policy
        case .device(let device):
            let slot = restoringSlot(UserKey(tenantID: device.tenantID, userID: device.userID))
            slot.state.restore(device: device)
            devices[device.id] = slot
            deviceKeys[device.publicKey.hashValue] = slot
        case .challenge(let challenge):
            let slot = restoringSlot(challenge.user)
            slot.state.restore(challenge: challenge)
            challenges[challenge.id] = slot
            requests[RequestKey(tenantID: challenge.tenantID, requestID: challenge.request.requestID)] = slot
        case .fallback(let fallback):
            let slot = restoringSlot(fallback.user)
            slot.state.restore(fallback: fallback)
            requests[RequestKey(tenantID: fallback.tenantID, requestID: fallback.request.requestID)] = slot
        case .lockout(let tenantID, let userID, let until):
            restoringSlot(UserKey(tenantID: tenantID, userID: userID)).state.restore(lockedUntil: until)
        case .enrollment(let enrollment):
            let slot = restoringSlot(enrollment.user)
            slot.state.restore(enrollment: enrollment)
            enrollments[enrollment.id] = slot
            activationCodes[enrollment.codeHash] = slot
        }
    }

    private func restoringSlot(_ key: UserKey) -> Slot {
        if let slot = users[key] { return slot }
        let slot = Slot(UserState(key: key))
        users[key] = slot
        return slot
    }

    /// Deadlines and figures of every restored user, each partition's heap built at once.
    private func finishRecovery() {
        var pending = [[Deadline]](repeating: [], count: Partition.count)
        for (key, slot) in users {
            let partition = key.partition.index
            let state = slot.state
            figures[partition].pendingChallenges += state.pendingCount
            figures[partition].queueDepth += state.queue.count
            if !state.queue.isEmpty { queueDepthByTenant[key.tenantID, default: 0] += state.queue.count }
            if let deadline = state.nextDeadline { pending[partition].append(Deadline(at: deadline, slot: slot)) }
        }
        for partition in 0..<Partition.count where !pending[partition].isEmpty {
            deadlines[partition] = Heap(pending[partition])
        }
        earliestDeadline = computeEarliestDeadline()
    }
}

/// Carries loop-confined values through the journal's `@Sendable` completions, which run on the same loop.
struct Unchecked<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
