// The user store on Redis, shared by every instance: states, deadlines and the outbox through RedisStates and
// RedisOutbox, each load and each commit one call. What the protocol reads synchronously is kept here and refreshed:
// policies (read at start and again whenever an instance announces a save, or the subscriber reconnects) and the
// shared gauges (every second). Deadlines committed by other instances are found by looking every second.
// Deliveries reach the instance that holds a device's stream or a challenge's long poll through its inbox channel
// (routes renewed while the streams stay open); after any reconnect the streams are read again, since messages
// published meanwhile are lost. Partitions' callbacks are forwarded by the instance that leases them
// (PartitionLeases).
import Core
import EventLoop
import Foundation
import HeapModule
import Logging
import Redis
import Store

/// `@unchecked Sendable`: confined to the event loop of its clients.
public final class RedisStore: UserStore, @unchecked Sendable {
    public struct Settings: Sendable {
        public var url: RedisURL
        public var instanceID: String
        /// > 0: each commit waits until that many replicas have it (`WAIT`) before it counts as durable.
        public var waitReplicas = 0
        public var commandTimeoutSeconds = 1.0
        public var allowUnsafePersistence = false
        /// How often deadlines and gauges that other instances may have changed are read again.
        public var refreshSeconds = 1.0
        /// How long a stream's route lasts unless renewed (it is renewed every third of it).
        public var routeSeconds = 60.0
        /// How often the instance says it is alive and reads who else is, which decides the partitions whose
        /// callbacks it forwards (PartitionLeases): an instance silent for three ticks counts as gone, and its
        /// partitions are taken three ticks later.
        public var leaseTickSeconds = 2.0
        /// Connections for users' loads and commits (RedisStates), beside the one for everything else and the
        /// subscriber's.
        public var stateConnections = 4
        /// How long the forwarder's outcomes (acknowledgements, retries, dead letters) are gathered before they go
        /// to Redis in one call. An outcome not yet stored when an instance dies is a callback sent again (at least
        /// once, as for a crash mid-send); a stop stores them first.
        public var outboxBatchSeconds = 0.05
        /// How long a callback a commit enqueues is left to the committing instance (UserStore.committerHoldMillis):
        /// longer than a callback's request timeout (10 s by default; the configuration raises this to 5 s more than
        /// a longer one), so that a slow verifier is not sent it twice; a stopped or killed instance's callbacks still
        /// in flight are sent by their partitions' forwarders after it.
        public var committerHoldSeconds = 15.0

        public init(url: RedisURL, instanceID: String) {
            self.url = url
            self.instanceID = instanceID
        }
    }

    /// The store's life: its first connection prepares Redis (persistence check, functions, policies) once. A stop
    /// goes through `closing` (the outcomes still gathered are stored; nothing new is taken) to `closed`.
    private enum Phase {
        case connecting
        case preparing
        case open
        case failed
        case closing
        case closed
    }

    private let settings: Settings
    private let loop: EventLoop
    /// Preparing Redis, routes, leases, the outbox, policies, deadlines and gauges.
    private let client: RedisClient
    private let stateClients: [RedisClient]
    private let subscriber: RedisClient
    private let states: RedisStates
    private let outbox: RedisOutbox
    private let configuredPolicies: [String: TenantPolicy]
    private let clock: () -> UnixMillis
    private let logger: Logger
    private var phase = Phase.connecting
    private var opened: ((Result<Void, StoreError>) -> Void)?
    private var storedPolicies: [String: TenantPolicy] = [:]
    private var cachedGauges = Gauges()
    /// Expiries this instance committed, until they pass: swept on time; other instances' deadlines, and ends of
    /// remembering, are found by looking every `refreshSeconds`.
    private var localDeadlines = Heap<UnixMillis>()
    /// No challenge lives longer: a committed deadline further away is an end of remembering, which can wait for
    /// the next look, and is not kept in `localDeadlines` for a quarter of an hour.
    private static let expiryHorizon = UnixMillis(ChallengeRequest.ttlSecondsRange.upperBound) * 1000
    private var nextLook: UnixMillis
    private lazy var refreshTimer = loop.makeTimer { [unowned self] in refresh() }
    /// Devices with a stream here, whose deliveries are routed here.
    private var streamed: Set<String> = []
    private lazy var routeTimer: LoopTimer = loop.makeTimer { [unowned self] in renewRoutes() }
    /// Routes a call renews: Redis runs nothing else during a call, and 1,000 took it 1–4 ms, which the sign-ins
    /// committing meanwhile waited for.
    private static let routeBatch = 100
    private let leases: PartitionLeases
    private struct OutboxBatch {
        var changes: [OutboxChange] = []
        var completions: [(Result<Void, StoreError>) -> Void] = []
    }
    private var outboxBatch = OutboxBatch()
    private lazy var outboxTimer = loop.makeTimer { [unowned self] in storeOutbox() }
    /// A batch this large goes at once: a call stays short (Redis runs nothing else meanwhile; 64 acknowledgements
    /// take it about 0.3 ms) and its arguments bounded (a dead letter carries its callback's body).
    private static let outboxBatchLimit = 64
    private lazy var leaseTimer = loop.makeTimer { [unowned self] in renewLeases() }
    public weak var sink: DeliverySink?

    public init(
        settings: Settings, loop: EventLoop, configuredPolicies: [String: TenantPolicy],
        clock: @escaping () -> UnixMillis, logger: Logger
    ) {
        self.settings = settings
        self.loop = loop
        self.configuredPolicies = configuredPolicies
        self.clock = clock
        self.logger = logger
        var options = RedisClient.Options()
        options.commandTimeoutSeconds = settings.commandTimeoutSeconds
        client = RedisClient(url: settings.url, loop: loop, options: options, logger: logger)
        subscriber = RedisClient(url: settings.url, loop: loop, options: options, logger: logger)
        stateClients = (0..<settings.stateConnections).map { _ in
            RedisClient(url: settings.url, loop: loop, options: options, logger: logger)
        }
        states = RedisStates(client: client, lanes: stateClients)
        outbox = RedisOutbox(client: client)
        nextLook = clock()
        leases = PartitionLeases(
            instanceID: settings.instanceID, tickMillis: UnixMillis(settings.leaseTickSeconds * 1000))
    }

    private var inboxChannel: String { "ap:inbox:\(settings.instanceID)" }

    /// Connects, checks that Redis persists every write before answering, installs the functions and reads the
    /// policies; `completion` runs once, when the store is open with every connection ready, or cannot be (unsafe
    /// persistence, newer functions). While Redis cannot be reached it keeps trying.
    public func open(completion: @escaping (Result<Void, StoreError>) -> Void) {
        opened = completion
        subscriber.subscribe(to: [RedisStates.policiesChannel, inboxChannel]) { [unowned self] channel, message in
            if channel == inboxChannel { received(message) } else { readPolicies() }
        }
        subscriber.onReady = { [unowned self] in
            guard phase == .open else { return }
            readPolicies()
            caughtUp()
        }
        client.onReady = { [unowned self] in
            switch phase {
            case .connecting: prepare()
            case .open: caughtUp()
            case .preparing, .failed, .closing, .closed: break
            }
        }
        client.onLost = { [unowned self, logger] error in
            logger.warning("lost Redis", metadata: ["redis": "\(settings.url)", "error": "\(error)"])
        }
        for stateClient in stateClients {
            stateClient.onReady = { [unowned self] in openedIfConnected() }
        }
        client.start()
        for stateClient in stateClients { stateClient.start() }
        subscriber.start()
    }

    /// Whether the store can be reached now.
    public var isReachable: Bool { phase == .open && client.isReady && stateClientsReady }

    private var stateClientsReady: Bool { stateClients.allSatisfy(\.isReady) }

    private func prepare() {
        phase = .preparing
        RedisPersistence.check(client) { [self] checked in
            switch checked {
            case .failure(let error): return retryPreparing(error)
            case .success(let unsafe?) where !settings.allowUnsafePersistence:
                return fail(StoreError("\(unsafe)"))
            case .success(let unsafe?):
                logger.warning("Redis may lose acknowledged requests in a crash", metadata: ["unsafe": "\(unsafe)"])
            case .success(nil): break
            }
            RedisStates.installFunctions(on: client) { [self] installed in
                switch installed {
                case .failure(let error) where client.isReady: return fail(error)
                case .failure(let error): return retryPreparing(error)
                case .success: break
                }
                states.loadPolicies { [self] loaded in
                    switch loaded {
                    case .failure(let error) where client.isReady: fail(error)
                    case .failure(let error): retryPreparing(error)
                    case .success(let policies):
                        storedPolicies = policies
                        // Open with the shared gauges already read: a restarted instance reports them at once.
                        states.gauges { [self] read in
                            switch read {
                            case .failure(let error) where client.isReady: fail(error)
                            case .failure(let error): retryPreparing(error)
                            case .success(let gauges):
                                guard phase == .preparing else { return }
                                cachedGauges = gauges
                                phase = .open
                                refreshTimer.schedule(after: settings.refreshSeconds)
                                routeTimer.schedule(after: settings.routeSeconds / 3)
                                renewLeases()
                                openedIfConnected()
                            }
                        }
                    }
                }
            }
        }
    }

    /// The connection went while preparing: prepare again on the next one.
    private func retryPreparing(_ error: any Error) {
        guard phase == .preparing else { return }
        logger.warning("cannot prepare Redis yet", metadata: ["error": "\(error)"])
        phase = .connecting
        if client.isReady { prepare() }
    }

    private func fail(_ error: StoreError) {
        guard phase == .preparing else { return }
        phase = .failed
        finishOpening(.failure(error))
    }

    /// Open once prepared and every state connection is ready (they reconnect on backoffs of their own).
    private func openedIfConnected() {
        guard phase == .open, stateClientsReady else { return }
        finishOpening(.success(()))
    }

    private func finishOpening(_ result: Result<Void, StoreError>) {
        let completion = opened
        opened = nil
        completion?(result)
    }

    /// A delivery committed by another instance for a stream or long poll here.
    private func received(_ message: [UInt8]) {
        let decoded: InboxMessage
        do throws(StoreError) {
            decoded = try DeliveryCodec.decode(message[...])
        } catch {
            return logger.error("an inbox message cannot be read: \(error)")
        }
        switch decoded {
        case .delivery(let delivery): sink?.deliver(delivery, committedHere: false)
        case .ended(let challengeID):
            // Should the read fail, the long polls answer at their timeout, with the challenge read then.
            states.load(.challenge(challengeID)) { [self] loaded in
                guard case .success(let found) = loaded, let challenge = found.state?.challenge(challengeID),
                    !challenge.isPending
                else { return }
                sink?.deliver(.ended(challenge), committedHere: false)
            }
        }
    }

    /// After a reconnect: messages published meanwhile are lost and routes may have lapsed; route the streams
    /// again, then have them read again.
    private func caughtUp() {
        route(Array(streamed)) { [self] in sink?.resync() }
    }

    private func renewRoutes() {
        route(Array(streamed)) {}
        routeTimer.schedule(after: settings.routeSeconds / 3)
    }

    /// Routes the devices' deliveries here, in calls of at most `routeBatch`; `done` runs when all have answered.
    private func route(_ deviceIDs: [String], done: @escaping () -> Void) {
        guard phase == .open, !deviceIDs.isEmpty else { return done() }
        let lifetime = String(Int(settings.routeSeconds * 1000))
        var remaining = 0
        for start in stride(from: 0, to: deviceIDs.count, by: Self.routeBatch) {
            remaining += 1
            let batch = deviceIDs[start..<min(start + Self.routeBatch, deviceIDs.count)]
            client.send(["FCALL", "approvald_route_streams", "0", settings.instanceID, lifetime] + batch) { _ in
                remaining -= 1
                if remaining == 0 { done() }
            }
        }
    }

    private func renewLeases() {
        guard phase == .open else { return }
        leaseTimer.schedule(after: settings.leaseTickSeconds)
        leases.renew(on: client, now: clock()) { [self] renewed in
            switch renewed {
            case .success(let membership):
                if membership.formatAllRead >= Int(UserStateCodec.Format.endedApart.rawValue), !states.writesEndedApart
                {
                    logger.info("every live instance reads ended challenges kept apart: writing them so")
                    states.writesEndedApart = true
                }
            case .failure(let error): logger.warning("cannot renew leases: \(error)")
            }
        }
    }

    private func readPolicies() {
        states.loadPolicies { [self] loaded in
            switch loaded {
            case .success(let policies): storedPolicies = policies
            case .failure(let error): logger.error("cannot read the policies: \(error)")
            }
        }
    }

    /// Reads the shared gauges again and looks for deadlines other instances committed.
    private func refresh() {
        guard phase == .open else { return }
        states.gauges { [self] result in
            if case .success(let gauges) = result { cachedGauges = gauges }
        }
        refreshTimer.schedule(after: settings.refreshSeconds)
    }

    // MARK: UserStore

    public func load(_ lookup: Lookup, completion: @escaping (Result<Loaded, StoreError>) -> Void) {
        guard phase == .open else { return completion(.failure(StoreError("the Redis store is not open"))) }
        states.load(lookup, completion: completion)
    }

    public func commit(_ commit: Commit, completion: @escaping (CommitResult) -> Void) {
        guard phase == .open else { return completion(.failed(StoreError("the Redis store is not open"))) }
        if let state = commit.state {
            let enqueued = commit.outbox.compactMap { change -> OutboxEntry? in
                if case .enqueue(let entry) = change { entry } else { nil }
            }
            states.commit(
                state, commit.changes, enqueue: enqueued, deliveries: commit.deliveries, by: settings.instanceID
            ) { [self] result, deliverHere in
                guard result == .durable else { return completion(result) }
                if let deadline = states.deadline(of: state), deadline <= clock() + Self.expiryHorizon {
                    localDeadlines.insert(deadline)
                }
                replicated(on: states.lane(state.key.partition)) { [self] replicated in
                    if replicated == .durable, let sink {
                        for delivery in deliverHere { sink.deliver(delivery, committedHere: true) }
                    }
                    completion(replicated)
                }
            }
            return
        }
        var steps: [(@escaping (Result<Void, StoreError>) -> Void) -> Void] = []
        for case .policySaved(let tenantID, let policy) in commit.changes {
            steps.append { [self] done in
                states.savePolicy(policy, for: tenantID) { [self] saved in
                    if case .success = saved { storedPolicies[tenantID] = policy }
                    done(saved)
                }
            }
        }
        if !commit.outbox.isEmpty {
            steps.append { [self] done in batchOutbox(commit.outbox, done) }
        }
        Self.all(steps[...]) { [self] result in
            switch result {
            case .success: replicated(on: client, completion)
            case .failure(let error): completion(.failed(error))
            }
        }
    }

    /// Outcomes of deliveries (the forwarder's acknowledgements, retries, dead letters) gathered for
    /// `outboxBatchSeconds` go to Redis in one call. Under light load each sign-in's acknowledgement would otherwise
    /// be a turn of Redis's loop and an fsync of its own, a third of the sign-in's; under heavy load they share turns
    /// with commits either way.
    private func batchOutbox(_ changes: [OutboxChange], _ done: @escaping (Result<Void, StoreError>) -> Void) {
        let first = outboxBatch.changes.isEmpty
        outboxBatch.changes += changes
        outboxBatch.completions.append(done)
        if outboxBatch.changes.count >= Self.outboxBatchLimit {
            storeOutbox()
        } else if first {
            outboxTimer.schedule(after: settings.outboxBatchSeconds)
        }
    }

    private func storeOutbox(then stored: @escaping () -> Void = {}) {
        outboxTimer.cancel()
        let batch = outboxBatch
        outboxBatch = OutboxBatch()
        guard !batch.changes.isEmpty else { return stored() }
        outbox.commit(batch.changes) { result in
            for completion in batch.completions { completion(result) }
            stored()
        }
    }

    /// Runs `steps` one after another, stopping at the first failure.
    private static func all(
        _ steps: ArraySlice<(@escaping (Result<Void, StoreError>) -> Void) -> Void>,
        completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        guard let step = steps.first else { return completion(.success(())) }
        step { result in
            guard case .success = result else { return completion(result) }
            all(steps.dropFirst(), completion: completion)
        }
    }

    /// Durable once `wait_replicas` replicas have what was written over `connection` (at once when it is 0).
    private func replicated(on connection: RedisClient, _ completion: @escaping (CommitResult) -> Void) {
        guard settings.waitReplicas > 0 else { return completion(.durable) }
        let timeout = Int(settings.commandTimeoutSeconds * 1000 / 2)
        connection.send(["WAIT", String(settings.waitReplicas), String(timeout)]) { [settings] result in
            switch result {
            case .success(.integer(let replicas)) where replicas >= settings.waitReplicas: completion(.durable)
            case .success(let other):
                completion(.failed(StoreError("\(settings.waitReplicas) replicas asked, WAIT answered \(other)")))
            case .failure(let error): completion(.failed(StoreError("\(error)")))
            }
        }
    }

    public func policy(for tenantID: String) -> TenantPolicy {
        storedPolicies[tenantID] ?? configuredPolicies[tenantID] ?? TenantPolicy()
    }

    public func dueUsers(
        in partitions: [Partition], now: UnixMillis, completion: @escaping (Result<[UserKey], StoreError>) -> Void
    ) {
        guard phase == .open else { return completion(.failure(StoreError("the Redis store is not open"))) }
        while let earliest = localDeadlines.min, earliest <= now { localDeadlines.removeMin() }
        nextLook = now + UnixMillis(settings.refreshSeconds * 1000)
        states.dueUsers(in: partitions, now: now, completion: completion)
    }

    public var nextDeadline: UnixMillis? { min(localDeadlines.min ?? nextLook, nextLook) }

    public var gauges: Gauges { cachedGauges }

    public func dueCallbacks(
        in partitions: [Partition], now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping (Result<DueCallbacks, StoreError>) -> Void
    ) {
        guard phase == .open else { return completion(.failure(StoreError("the Redis store is not open"))) }
        let look = now + UnixMillis(settings.refreshSeconds * 1000)
        outbox.dueCallbacks(in: partitions, now: now, after: cursor, limit: limit) { result in
            // Other instances add callbacks too: look again soon whatever this instance knows.
            completion(result.map { DueCallbacks(entries: $0.entries, nextDueAt: min($0.nextDueAt ?? look, look)) })
        }
    }

    public func deadLetters(
        tenantID: String, limit: Int, completion: @escaping (Result<[DeadLetter], StoreError>) -> Void
    ) {
        guard phase == .open else { return completion(.failure(StoreError("the Redis store is not open"))) }
        outbox.deadLetters(tenantID: tenantID, limit: limit, completion: completion)
    }

    public func redrive(
        tenantID: String, challengeID: String?, now: UnixMillis, completion: @escaping (Result<Int, StoreError>) -> Void
    ) {
        guard phase == .open else { return completion(.failure(StoreError("the Redis store is not open"))) }
        outbox.redrive(tenantID: tenantID, challengeID: challengeID, now: now, completion: completion)
    }

    public var commandsSent: Int { stateClients.reduce(client.commandsSent) { $0 + $1.commandsSent } }

    public var forwardingPartitions: [Partition] { leases.held(now: clock()) }
    public var committerHoldMillis: UnixMillis { UnixMillis(settings.committerHoldSeconds * 1000) }

    public func streamOpened(deviceID: String, routed: @escaping () -> Void) {
        streamed.insert(deviceID)
        route([deviceID], done: routed)
    }

    public func streamClosed(deviceID: String) {
        guard streamed.remove(deviceID) != nil, phase == .open else { return }
        client.send(["FCALL", "approvald_unroute_stream", "0", settings.instanceID, deviceID]) { _ in }
    }

    public func watch(challengeID: String, seconds: Double, watching: @escaping () -> Void) {
        guard phase == .open else { return }
        let lifetime = String(Int((seconds + 5) * 1000))
        client.send(["FCALL", "approvald_watch", "0", settings.instanceID, challengeID, lifetime]) { result in
            if case .success(.integer) = result { watching() }
        }
    }

    public func close() { close {} }

    /// Stores the outcomes still gathered (within the command timeout), then closes every connection; `closed`
    /// runs then. Loads and commits asked for meanwhile are refused. A second stop is told at once.
    public func close(then closed: @escaping () -> Void) {
        guard phase != .closing, phase != .closed else { return closed() }
        phase = .closing
        refreshTimer.cancel()
        routeTimer.cancel()
        leaseTimer.cancel()
        storeOutbox { [self] in
            phase = .closed
            client.close()
            for stateClient in stateClients { stateClient.close() }
            subscriber.close()
            closed()
        }
    }
}
