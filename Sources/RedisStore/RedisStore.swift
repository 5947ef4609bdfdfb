// The user store on Redis, shared by every instance: its connections and their lifecycle, and each role of the
// store handed to the part that plays it. States, deadlines and the outbox go through RedisStates and RedisOutbox,
// each load and each commit one call; policies and gauges are read ahead (SharedReadings); deadlines other instances
// committed are found by looking every refresh (DeadlineWatch). Deliveries reach the instance that holds a device's
// stream or a challenge's long poll through its inbox channel (StreamRoutes); after any reconnect the streams are
// read again, since messages published meanwhile are lost. The forwarder's outcomes are stored in batches
// (OutboxBatcher); partitions' callbacks are forwarded by the instance that leases them (PartitionLeases).
import Core
import EventLoop
import Foundation
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

    private let settings: Settings
    private let loop: EventLoop
    /// Preparing Redis, routes, leases, the outbox, policies, deadlines and gauges.
    private let client: RedisClient
    private let stateClients: [RedisClient]
    private let subscriber: RedisClient
    private let states: RedisStates
    private let clock: () -> UnixMillis
    private let logger: Logger
    private var lifecycle = RedisStoreLifecycle()
    private var opened: ((Result<Void, StoreError>) -> Void)?
    private let readings: SharedReadings
    private var deadlines: DeadlineWatch
    private let routes: StreamRoutes
    private let outbox: RedisOutbox
    private let outboxBatcher: OutboxBatcher
    private let leases: PartitionLeases
    private lazy var refreshTimer = loop.makeTimer { [unowned self] in refresh() }
    private lazy var leaseTimer = loop.makeTimer { [unowned self] in renewLeases() }
    public weak var sink: DeliverySink?

    public init(
        settings: Settings, loop: EventLoop, configuredPolicies: [String: TenantPolicy],
        clock: @escaping () -> UnixMillis, logger: Logger
    ) {
        self.settings = settings
        self.loop = loop
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
        readings = SharedReadings(states: states, configuredPolicies: configuredPolicies, logger: logger)
        deadlines = DeadlineWatch(refreshSeconds: settings.refreshSeconds, now: clock())
        outbox = RedisOutbox(client: client)
        outboxBatcher = OutboxBatcher(outbox: outbox, loop: loop, batchSeconds: settings.outboxBatchSeconds)
        leases = PartitionLeases(
            instanceID: settings.instanceID, tickMillis: UnixMillis(settings.leaseTickSeconds * 1000))
        routes = StreamRoutes(
            client: client, loop: loop, instanceID: settings.instanceID, routeSeconds: settings.routeSeconds)
    }

    private var inboxChannel: String { "ap:inbox:\(settings.instanceID)" }

    /// Connects, checks that Redis persists every write before answering, installs the functions and reads the
    /// policies; `completion` runs once, when the store is open with every connection ready, or cannot be (unsafe
    /// persistence, newer functions). While Redis cannot be reached it keeps trying.
    public func open(completion: @escaping (Result<Void, StoreError>) -> Void) {
        opened = completion
        subscriber.subscribe(to: [RedisStates.policiesChannel, inboxChannel]) { [unowned self] channel, message in
            if channel == inboxChannel { received(message) } else { readings.refreshPolicies() }
        }
        subscriber.onReady = { [unowned self] in
            guard lifecycle.isOpen else { return }
            readings.refreshPolicies()
            catchUp()
        }
        client.onReady = { [unowned self] in perform(lifecycle.connectionReady()) }
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
    public var isReachable: Bool { lifecycle.isOpen && client.isReady && stateClientsReady }

    private var stateClientsReady: Bool { stateClients.allSatisfy(\.isReady) }

    private func perform(_ action: RedisStoreLifecycle.Action, error: StoreError? = nil) {
        switch action {
        case .none, .alreadyClosed, .flush: break
        case .prepare: prepare()
        case .catchUp: catchUp()
        case .startServing:
            refreshTimer.schedule(after: settings.refreshSeconds)
            routes.start()
            renewLeases()
            openedIfConnected()
        case .failOpening: finishOpening(.failure(error ?? StoreError("Redis cannot be used")))
        }
    }

    private func prepare() {
        RedisPersistence.check(client) { [self] checked in
            switch checked {
            case .failure(let error): return retryPreparing(error)
            case .success(let unsafe?) where !settings.allowUnsafePersistence:
                return perform(lifecycle.refused(), error: StoreError("\(unsafe)"))
            case .success(let unsafe?):
                logger.warning("Redis may lose acknowledged requests in a crash", metadata: ["unsafe": "\(unsafe)"])
            case .success(nil): break
            }
            RedisStates.installFunctions(on: client) { [self] installed in
                guard preparedStep(installed) else { return }
                readings.readAll { [self] read in
                    guard preparedStep(read) else { return }
                    perform(lifecycle.prepared())
                }
            }
        }
    }

    /// Whether a step of preparing succeeded; a failure is Redis's refusal while it is connected, else a lost
    /// connection, which prepares again.
    private func preparedStep(_ result: Result<Void, StoreError>) -> Bool {
        switch result {
        case .success: return true
        case .failure(let error) where client.isReady: perform(lifecycle.refused(), error: error)
        case .failure(let error): retryPreparing(error)
        }
        return false
    }

    /// The connection went while preparing: prepare again on the next one.
    private func retryPreparing(_ error: any Error) {
        guard lifecycle.state == .preparing else { return }
        logger.warning("cannot prepare Redis yet", metadata: ["error": "\(error)"])
        perform(lifecycle.preparingInterrupted(connected: client.isReady))
    }

    /// Open once prepared and every state connection is ready (they reconnect on backoffs of their own).
    private func openedIfConnected() {
        guard lifecycle.isOpen, stateClientsReady else { return }
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
        case .enrollmentEnded(let enrollmentID):
            states.load(.enrollment(enrollmentID)) { [self] loaded in
                guard case .success(let found) = loaded, let enrollment = found.state?.enrollment(enrollmentID),
                    !enrollment.isPending
                else { return }
                sink?.deliver(.enrollmentEnded(enrollment), committedHere: false)
            }
        }
    }

    /// After a reconnect: messages published meanwhile are lost and routes may have lapsed; route the streams
    /// again, then have them read again.
    private func catchUp() {
        routes.routeAgain { [self] in sink?.resync() }
    }

    private func renewLeases() {
        guard lifecycle.isOpen else { return }
        leaseTimer.schedule(after: settings.leaseTickSeconds)
        leases.renew(on: client, now: clock()) { [logger] renewed in
            if case .failure(let error) = renewed { logger.warning("cannot renew leases: \(error)") }
        }
    }

    /// Reads the shared gauges again and looks for deadlines other instances committed.
    private func refresh() {
        guard lifecycle.isOpen else { return }
        readings.refreshGauges()
        refreshTimer.schedule(after: settings.refreshSeconds)
    }

    private static let notOpen = StoreError("the Redis store is not open")

    // MARK: UserStates

    public func load(_ lookup: Lookup, completion: @escaping (Result<Loaded, StoreError>) -> Void) {
        guard lifecycle.isOpen else { return completion(.failure(Self.notOpen)) }
        states.load(lookup, completion: completion)
    }

    public func commit(_ commit: Commit, completion: @escaping (CommitResult) -> Void) {
        guard lifecycle.isOpen else { return completion(.failed(Self.notOpen)) }
        if let state = commit.state {
            let enqueued = commit.outbox.compactMap { change -> OutboxEntry? in
                if case .enqueue(let entry) = change { entry } else { nil }
            }
            states.commit(
                state, commit.changes, enqueue: enqueued, deliveries: commit.deliveries, by: settings.instanceID
            ) { [self] result, deliverHere in
                guard result == .durable else { return completion(result) }
                deadlines.committed(deadline: states.deadline(of: state), now: clock())
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
                    if case .success = saved { readings.saved(policy, for: tenantID) }
                    done(saved)
                }
            }
        }
        if !commit.outbox.isEmpty {
            steps.append { [self] done in outboxBatcher.add(commit.outbox, done: done) }
        }
        Self.all(steps[...]) { [self] result in
            switch result {
            case .success: replicated(on: client, completion)
            case .failure(let error): completion(.failed(error))
            }
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

    public func policy(for tenantID: String) -> TenantPolicy { readings.policy(for: tenantID) }

    // MARK: DeadlineIndex

    public func dueUsers(
        in partitions: [Partition], now: UnixMillis, completion: @escaping (Result<[UserKey], StoreError>) -> Void
    ) {
        guard lifecycle.isOpen else { return completion(.failure(Self.notOpen)) }
        deadlines.looked(at: now)
        states.dueUsers(in: partitions, now: now, completion: completion)
    }

    public var nextDeadline: UnixMillis? { deadlines.next }

    // MARK: OutboxStore

    public func dueCallbacks(
        in partitions: [Partition], now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping (Result<DueCallbacks, StoreError>) -> Void
    ) {
        guard lifecycle.isOpen else { return completion(.failure(Self.notOpen)) }
        let look = now + UnixMillis(settings.refreshSeconds * 1000)
        outbox.dueCallbacks(in: partitions, now: now, after: cursor, limit: limit) { result in
            // Other instances add callbacks too: look again soon whatever this instance knows.
            completion(result.map { DueCallbacks(entries: $0.entries, nextDueAt: min($0.nextDueAt ?? look, look)) })
        }
    }

    public func deadLetters(
        tenantID: String, limit: Int, completion: @escaping (Result<[DeadLetter], StoreError>) -> Void
    ) {
        guard lifecycle.isOpen else { return completion(.failure(Self.notOpen)) }
        outbox.deadLetters(tenantID: tenantID, limit: limit, completion: completion)
    }

    public func redrive(
        tenantID: String, challengeID: String?, now: UnixMillis, completion: @escaping (Result<Int, StoreError>) -> Void
    ) {
        guard lifecycle.isOpen else { return completion(.failure(Self.notOpen)) }
        outbox.redrive(tenantID: tenantID, challengeID: challengeID, now: now, completion: completion)
    }

    // MARK: InstanceMembership

    public var forwardingPartitions: [Partition] { leases.held(now: clock()) }
    public var committerHoldMillis: UnixMillis { UnixMillis(settings.committerHoldSeconds * 1000) }

    // MARK: FanOut

    public func streamOpened(deviceID: String, routed: @escaping () -> Void) {
        routes.streamOpened(deviceID: deviceID, routed: routed)
    }

    public func streamClosed(deviceID: String) { routes.streamClosed(deviceID: deviceID) }

    public func watch(endOf id: String, seconds: Double, watching: @escaping () -> Void) {
        routes.watch(endOf: id, seconds: seconds, watching: watching)
    }

    // MARK: StoreOperations

    public var gauges: Gauges { readings.gauges }

    public var commandsSent: Int { stateClients.reduce(client.commandsSent) { $0 + $1.commandsSent } }

    public func close() { close {} }

    /// Stores the outcomes still gathered (within the command timeout), then closes every connection; `closed`
    /// runs then. Loads and commits asked for meanwhile are refused. A second stop is told at once.
    public func close(then closed: @escaping () -> Void) {
        guard lifecycle.closeRequested() == .flush else { return closed() }
        refreshTimer.cancel()
        routes.stop()
        leaseTimer.cancel()
        outboxBatcher.store { [self] in
            lifecycle.flushed()
            client.close()
            for stateClient in stateClients { stateClient.close() }
            subscriber.close()
            closed()
        }
    }
}
