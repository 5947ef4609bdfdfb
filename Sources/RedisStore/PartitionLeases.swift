// Which partitions' callbacks this instance forwards. Every instance says it is alive each tick and reads who else
// is (approvald_members: one write a tick, whatever the number of partitions); partition p belongs to the
// (p mod n)th of the n live instances by name. When the live set changes, an instance keeps the partitions it
// forwards that stay its own, and takes the rest of its share once no one else may still forward them: once every
// other live member of the previous set has said it is alive since the change (and so dropped what it no longer
// owns); failing that, once the new set has held for `holdDownMillis`, by when a member cut off from Redis has
// stopped trusting its last renewal. Members of the previous set that are gone have been silent longer than an
// instance counts as alive, so they stopped before.
import Core
import Redis
import Store

/// `@unchecked Sendable`: confined to the event loop of the client it renews on.
final class PartitionLeases: @unchecked Sendable {
    let instanceID: String
    /// An instance silent this long counts as gone (three ticks).
    let aliveMillis: UnixMillis
    /// How long a renewal's answer is trusted, from when it was asked (two ticks): less than `aliveMillis`, so an
    /// instance that can no longer renew stops before the others count it as gone.
    let trustMillis: UnixMillis
    /// How long a new live set must hold before a partition moves from a live instance to another (three ticks):
    /// longer than `trustMillis`, so its previous holder has stopped by then.
    let holdDownMillis: UnixMillis
    private var partitions: [Partition] = []
    private var partitionSet: Set<Partition> = []
    private var renewedAt: UnixMillis?

    init(instanceID: String, tickMillis: UnixMillis) {
        self.instanceID = instanceID
        aliveMillis = tickMillis * 3
        trustMillis = tickMillis * 2
        holdDownMillis = tickMillis * 3
    }

    /// The partitions held at `now`: none once the last renewal is too old to trust.
    func held(now: UnixMillis) -> [Partition] { isCurrent(now) ? partitions : [] }

    private func isCurrent(_ now: UnixMillis) -> Bool {
        guard let renewedAt else { return false }
        return now - renewedAt < trustMillis
    }

    /// Says this instance is alive, and the newest state format it reads (which instances of 0.17 and 0.18 still wait
    /// for before they write format 3), and takes its share as far as it may;
    /// `now` (this instance's clock, when asked) dates the renewal. `completion` gets the membership read.
    func renew(
        on client: RedisClient, now: UnixMillis, completion: @escaping (Result<Membership, StoreError>) -> Void
    ) {
        let reads = String(UserStateCodec.newest.rawValue)
        client.send(["FCALL", "approvald_members", "0", instanceID, String(aliveMillis), reads]) { [self] result in
            let read = RedisStates.read(result) { value throws(StoreError) -> Membership in
                guard case .array(let reply) = value, reply.count == 5, case .integer(let age) = reply[0],
                    let live = Self.names(reply[1]), let before = Self.names(reply[2]),
                    let seen = Self.names(reply[3]), case .integer = reply[4]
                else { throw StoreError("members: \(value)") }
                return Membership(age: UnixMillis(age), live: live, before: before, seenChange: Set(seen))
            }
            if case .success(let membership) = read { apply(membership, renewedAt: now) }
            completion(read)
        }
    }

    /// The live instances by name, how long that set has held, the live set before it, and the live instances that
    /// have renewed since it changed.
    struct Membership {
        var age: UnixMillis
        var live: [String]
        var before: [String]
        var seenChange: Set<String>
    }

    /// Takes the partitions of this instance's share under `membership` that it may forward now, and gives up the
    /// rest; `now`: when the renewal that read it was asked.
    func apply(_ membership: Membership, renewedAt now: UnixMillis) {
        partitions = share(of: membership, now: now)
        partitionSet = Set(partitions)
        renewedAt = now
    }

    private func share(of membership: Membership, now: UnixMillis) -> [Partition] {
        guard let position = membership.live.firstIndex(of: instanceID) else { return [] }
        let live = Set(membership.live)
        // Redis dates renewals to the millisecond: one in the very millisecond of the change may have come just
        // before it, so while the change is that young no other instance counts as having seen it.
        let seen = membership.age == 0 ? [instanceID] : membership.seenChange
        let othersMayHold = membership.before.contains {
            $0 != instanceID && live.contains($0) && !seen.contains($0)
        }
        let free = membership.age >= holdDownMillis || !othersMayHold
        let holding = isCurrent(now) ? partitionSet : []
        return Partition.all.filter { partition in
            partition.index % membership.live.count == position && (free || holding.contains(partition))
        }
    }

    private static func names(_ value: RedisValue) -> [String]? {
        guard case .array(let items) = value else { return nil }
        let names = items.compactMap(\.string)
        return names.count == items.count ? names : nil
    }
}
