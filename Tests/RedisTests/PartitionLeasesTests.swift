// Partition leases on a real Redis: an instance alone holds every partition; a second one that joins gets half
// (the two shares disjoint and together all); when one stops renewing, the other takes its share once its leases
// lapse.
import Core
import Foundation
import Redis
import Store
import TestSupport
import Testing

@testable import RedisStore

@Suite(.serialized) struct PartitionLeasesTests {
    @Test func partitionsAreSharedAmongLiveInstancesAndTakenOverFromASilentOne() async throws {
        let setup = try await StatesUnderTest()
        // Shorter lives than the broker's (gone after 6 s of silence, leases of 10 s), but long enough that a
        // sanitizer's pace between two renewals cannot pass for silence: gone after 2 s, leases of 3 s.
        let first = UncheckedBox(PartitionLeases(instanceID: "a", aliveMillis: 2_000, leaseMillis: 3_000))
        let second = UncheckedBox(PartitionLeases(instanceID: "b", aliveMillis: 2_000, leaseMillis: 3_000))
        func renew(_ leases: UncheckedBox<PartitionLeases>) async throws -> Set<Partition> {
            let now = UnixMillis(Date().timeIntervalSince1970 * 1000)
            let failure: StoreError? = try await setup.tested.thread.wait { [client = setup.tested.client] done in
                leases.value.renew(on: client.value, now: now) { done($0) }
                // The renewal's reply comes before this one's: the client answers in order.
                client.value.send(["PING"]) { _ in done(nil) }
            }
            if let failure { throw failure }
            return try await setup.tested.thread.run { Set(leases.value.held(now: now)) }
        }
        #expect(try await renew(first).count == Partition.count)
        // b joins: it cannot take a's leases yet; a gives up what is b's share on its next renewal.
        #expect(try await renew(second).isEmpty)
        let firstShare = try await renew(first)
        let secondShare = try await renew(second)
        #expect(firstShare.count == Partition.count / 2 && secondShare.count == Partition.count / 2)
        #expect(firstShare.isDisjoint(with: secondShare))
        // a falls silent: once it counts as gone and its leases lapsed, b holds every partition.
        try await Task.sleep(nanoseconds: 3_500_000_000)
        #expect(try await renew(second).count == Partition.count)
        // And a, back, finds none of its leases: b holds them until the share moves again.
        #expect(try await renew(first).isEmpty)
        try await setup.stop()
    }
}
