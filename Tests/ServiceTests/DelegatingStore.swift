// A store double's base: the embedded store behind it does everything; a subclass changes one behaviour.
import Core
import Store

class DelegatingStore: UserStore, @unchecked Sendable {
    let inner: EmbeddedStore

    init(_ inner: EmbeddedStore) { self.inner = inner }

    var sink: DeliverySink? {
        get { inner.sink }
        set { inner.sink = newValue }
    }

    func load(_ lookup: Lookup, completion: @escaping (Result<Loaded, StoreError>) -> Void) {
        inner.load(lookup, completion: completion)
    }

    func commit(_ commit: Commit, completion: @escaping (CommitResult) -> Void) {
        inner.commit(commit, completion: completion)
    }

    func policy(for tenantID: String) -> TenantPolicy { inner.policy(for: tenantID) }
    func dueUsers(
        in partitions: [Partition], now: UnixMillis, completion: @escaping (Result<[UserKey], StoreError>) -> Void
    ) { inner.dueUsers(in: partitions, now: now, completion: completion) }
    var nextDeadline: UnixMillis? { inner.nextDeadline }
    var gauges: Gauges { inner.gauges }
    var commandsSent: Int { inner.commandsSent }
    var forwardingPartitions: [Partition] { inner.forwardingPartitions }
    var committerHoldMillis: UnixMillis { inner.committerHoldMillis }
    func dueCallbacks(
        in partitions: [Partition], now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping (Result<DueCallbacks, StoreError>) -> Void
    ) { inner.dueCallbacks(in: partitions, now: now, after: cursor, limit: limit, completion: completion) }
    func deadLetters(
        tenantID: String, limit: Int, completion: @escaping (Result<[DeadLetter], StoreError>) -> Void
    ) { inner.deadLetters(tenantID: tenantID, limit: limit, completion: completion) }
    func redrive(
        tenantID: String, challengeID: String?, now: UnixMillis, completion: @escaping (Result<Int, StoreError>) -> Void
    ) { inner.redrive(tenantID: tenantID, challengeID: challengeID, now: now, completion: completion) }
    func close() { inner.close() }
}
