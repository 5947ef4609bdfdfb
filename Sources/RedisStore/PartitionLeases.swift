// Which partitions' callbacks this instance forwards: every instance says it is alive and renews its share of the
// 1,024 partitions in one call (approvald_leases); a share whose lease another instance still holds is taken once
// that lease lapses, so a killed instance's callbacks are taken over within a lease's lifetime.
import Core
import Redis
import Store

/// `@unchecked Sendable`: confined to the event loop of the client it renews on.
final class PartitionLeases: @unchecked Sendable {
    let instanceID: String
    /// An instance silent this long counts as gone.
    let aliveMillis: UnixMillis
    let leaseMillis: UnixMillis
    private var partitions: [Partition] = []
    private var partitionSet: Set<Partition> = []
    private var renewedAt: UnixMillis?

    init(instanceID: String, aliveMillis: UnixMillis, leaseMillis: UnixMillis) {
        self.instanceID = instanceID
        self.aliveMillis = aliveMillis
        self.leaseMillis = leaseMillis
    }

    /// The partitions held at `now`: none once the last renewal is so old that another instance may hold them.
    func held(now: UnixMillis) -> [Partition] { isCurrent(now) ? partitions : [] }

    func holds(_ partition: Partition, now: UnixMillis) -> Bool {
        isCurrent(now) && partitionSet.contains(partition)
    }

    private func isCurrent(_ now: UnixMillis) -> Bool {
        guard let renewedAt else { return false }
        return now - renewedAt < leaseMillis * 4 / 5
    }

    /// Says this instance is alive and renews (or takes) its share; `now` (this instance's clock) dates the renewal.
    func renew(on client: RedisClient, now: UnixMillis, failed: @escaping (StoreError) -> Void) {
        client.send(["FCALL", "approvald_leases", "0", instanceID, String(aliveMillis), String(leaseMillis)]) {
            [self] result in
            let read = RedisStates.read(result) { value throws(StoreError) -> [Partition] in
                guard case .array(let tags) = value else { throw StoreError("leases: \(value)") }
                return try tags.map { tag throws(StoreError) in
                    guard let index = tag.string.flatMap({ Int($0) }), let partition = RedisOutbox.partition(index)
                    else { throw StoreError("a lease: \(tag)") }
                    return partition
                }
            }
            switch read {
            case .success(let held):
                partitions = held
                partitionSet = Set(held)
                renewedAt = now
            case .failure(let error): failed(error)
            }
        }
    }
}
