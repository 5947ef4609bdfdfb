// Where user state lives: one protocol for the embedded store (memory and a SQLite journal) and a networked one,
// so that the Service decides and commits the same way over both.
import Core

/// What to load: a user's aggregate, named by the user or by something only one user holds.
public enum Lookup: Sendable {
    case user(UserKey)
    /// The user the device is registered to.
    case device(String)
    /// The user whose challenge it is.
    case challenge(String)
    /// A device's answer: the user the device is registered to, holding the challenge it answers even when that has
    /// ended (a store that keeps ended challenges apart from the state reads it then).
    case answer(deviceID: String, challengeID: String)
    /// A create: the user's aggregate, and who holds the `request_id` now.
    case creation(UserKey, RequestKey)
    /// A registration: the user's aggregate, and who holds the device now.
    case registration(UserKey, deviceID: String)
    /// The user whose enrollment it is.
    case enrollment(String)
    /// A phone completing an enrollment: the user whose enrollment the activation code (by its SHA-256) belongs to,
    /// and the user one of whose devices has the phone's key now, if any.
    case activation(codeHash: [UInt8], publicKey: [UInt8])
}

/// What a lookup found.
public struct Loaded: Sendable {
    /// nil: no such user, device or challenge. A `.user`, `.creation` or `.registration` lookup of a user with no
    /// state yet finds `UserState(key:)` at version 0.
    public let state: UserState?
    /// For `.creation` and `.registration`: the user that holds the request or the device now, if any.
    public let heldBy: UserKey?

    public init(state: UserState?, heldBy: UserKey? = nil) {
        self.state = state
        self.heldBy = heldBy
    }
}

/// A decision to make durable.
public struct Commit: Sendable {
    /// The user's new state, decided on `state.version`; nil for a commit that changes no user (a policy, the
    /// outbox).
    public let state: UserState?
    public let changes: [Change]
    public let outbox: [OutboxChange]
    /// What the commit causes once durable, handed to the store's sink (here, or on a shared store wherever the
    /// device's stream or the challenge's long poll is).
    public let deliveries: [Delivery]

    public init(state: UserState?, changes: [Change], outbox: [OutboxChange] = [], deliveries: [Delivery] = []) {
        self.state = state
        self.changes = changes
        self.outbox = outbox
        self.deliveries = deliveries
    }
}

public enum CommitResult: Equatable, Sendable {
    case durable
    /// The user's state moved on since it was loaded: load again and decide again. Nothing was written.
    case stale
    case failed(StoreError)
}

/// Figures of shared state, the same on every instance over one store.
public struct Gauges: Equatable, Sendable {
    /// Entries over all device queues.
    public var queueDepth = 0
    /// Tenants with nothing queued are left out.
    public var queueDepthByTenant: [String: Int] = [:]
    public var pendingChallenges = 0
    /// Callbacks not yet acknowledged by a verifier nor dead.
    public var forwardQueueDepth = 0

    public init() {}
}

/// Where deliveries go once their commit is durable.
public protocol DeliverySink: AnyObject {
    /// `committedHere`: this instance made the commit; false for another instance's, routed here.
    func deliver(_ delivery: Delivery, committedHere: Bool)
    /// Deliveries routed here may have been missed (the store's connection came back): read again what every open
    /// stream should hold.
    func resync()
}

// A store plays six roles, each a small protocol: the Service's parts each take the roles they use (`StoreRoles`),
// and every store implements all of them (`UserStore`), saying for each what it does — nothing is assumed.
// `completion`s run on the caller's loop: at once where the answer is in memory, later where it is not.

/// Users' states: loaded, and decisions made durable.
public protocol UserStates: AnyObject {
    func load(_ lookup: Lookup, completion: @escaping (Result<Loaded, StoreError>) -> Void)
    /// Makes a decision durable if the user's state is still at the version it was decided on.
    func commit(_ commit: Commit, completion: @escaping (CommitResult) -> Void)
    /// The tenant's policy: stored (a PUT), else configured, else the default.
    func policy(for tenantID: String) -> TenantPolicy
}

/// Users' deadlines (expiries, the ends of remembering windows), by partition.
public protocol DeadlineIndex: AnyObject {
    /// Users of these partitions with a deadline due at `now`, each handed out once per deadline: the sweep decides
    /// and commits them, which sets their next.
    func dueUsers(
        in partitions: [Partition], now: UnixMillis, completion: @escaping (Result<[UserKey], StoreError>) -> Void)
    /// When to look for due users again: the earliest deadline of any partition as far as this store knows.
    var nextDeadline: UnixMillis? { get }
}

/// The callbacks commits enqueue, by partition, and the dead letters.
public protocol OutboxStore: AnyObject {
    /// Up to `limit` callbacks of these partitions due at `now`, in (due time, challenge id) order, after `cursor` if
    /// given; `nextDueAt` is when to look again: the next due time in these partitions after `now` as far as this
    /// store knows (a shared store, where other instances add callbacks, says a moment soon whatever it knows).
    func dueCallbacks(
        in partitions: [Partition], now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping (Result<DueCallbacks, StoreError>) -> Void)
    /// A tenant's dead letters, newest first, at most `limit`.
    func deadLetters(tenantID: String, limit: Int, completion: @escaping (Result<[DeadLetter], StoreError>) -> Void)
    /// Puts the tenant's dead letter of that id (every one of the tenant's when nil) back in the outbox, due at
    /// `now` with no attempt made; `completion` gets how many were requeued.
    func redrive(
        tenantID: String, challengeID: String?, now: UnixMillis, completion: @escaping (Result<Int, StoreError>) -> Void
    )
}

/// This instance among those that share the store: which partitions' callbacks are its to forward.
public protocol InstanceMembership: AnyObject {
    /// The partitions whose callbacks this instance forwards (every one where it is alone).
    var forwardingPartitions: [Partition] { get }
    /// A callback a commit enqueues is the committing instance's to send, as soon as the commit is durable, whichever
    /// instance forwards its partition: it is stored due this long after its ending, so that no read of due
    /// callbacks finds it before the committer's outcome replaces it (0 where one forwarder knows what it sends).
    var committerHoldMillis: UnixMillis { get }
}

/// Deliveries to where a device's streams and a challenge's long polls are, here or on another instance.
public protocol FanOut: AnyObject {
    /// Gets each durable commit's deliveries, before the commit's completion runs, and those other instances
    /// committed for streams and long polls here.
    var sink: DeliverySink? { get set }
    /// A device's stream opened here. On a shared store its deliveries come here from now on; `routed` runs once
    /// they do, when some committed meanwhile may have gone elsewhere: read the queue again then.
    func streamOpened(deviceID: String, routed: @escaping () -> Void)
    /// The device's last stream here closed.
    func streamClosed(deviceID: String)
    /// A long poll here waits up to `seconds` for the end of a challenge or an enrollment (`id`). On a shared store
    /// `watching` runs once the end would be delivered here, when it may have come meanwhile: read it again then.
    func watch(endOf id: String, seconds: Double, watching: @escaping () -> Void)
}

/// What operators see of the store, and its stop.
public protocol StoreOperations: AnyObject {
    var gauges: Gauges { get }
    /// Whether the store can be reached now (`/readyz`).
    var isReachable: Bool { get }
    /// Requests this instance sent to a networked store.
    var commandsSent: Int { get }
    /// Commits what is queued, then stops.
    func close()
}

/// A store: every role.
public typealias UserStore = UserStates & DeadlineIndex & OutboxStore & InstanceMembership & FanOut & StoreOperations

/// The roles of a store as the Service's parts take them: one store plays them all; a test double may stand in for
/// one role alone.
public struct StoreRoles {
    public var states: any UserStates
    public var deadlines: any DeadlineIndex
    public var outbox: any OutboxStore
    public var membership: any InstanceMembership
    public var fanOut: any FanOut
    public var operations: any StoreOperations

    public init(_ store: any UserStore) {
        states = store
        deadlines = store
        outbox = store
        membership = store
        fanOut = store
        operations = store
    }
}
