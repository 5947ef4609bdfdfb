// Which partitions an instance forwards: the rules over a live set (who holds what, when a partition may move),
// then the same on a real Redis — alone, every partition; a second one takes its half once the first has seen it
// join; a silent one's share taken over once it counts as gone; one that comes back waits for the others.
import Core
import Foundation
import Redis
import Store
import TestSupport
import Testing

@testable import RedisStore

@Suite struct PartitionShareTests {
    /// A tick of 1 s: gone after 3 s of silence, renewals trusted for 2 s, partitions moved after 3 s at the latest.
    static let tick: UnixMillis = 1_000
    static let start: UnixMillis = 1_796_000_000_000
    typealias Membership = PartitionLeases.Membership

    static func share(_ count: Int, _ position: Int) -> Set<Partition> {
        Set(Partition.all.filter { $0.index % count == position })
    }

    @Test func theFirstInstanceTakesEveryPartitionAtOnce() {
        let a = PartitionLeases(instanceID: "a", tickMillis: Self.tick)
        a.apply(Membership(age: 0, live: ["a"], before: [], seenChange: ["a"]), renewedAt: Self.start)
        #expect(Set(a.held(now: Self.start)) == Set(Partition.all))
    }

    @Test func aJoinerWaitsUntilTheHolderHasSeenItJoin() {
        let a = PartitionLeases(instanceID: "a", tickMillis: Self.tick)
        let b = PartitionLeases(instanceID: "b", tickMillis: Self.tick)
        a.apply(Membership(age: 5_000, live: ["a"], before: [], seenChange: ["a"]), renewedAt: Self.start)
        // b joins: a has not renewed since, so it may still forward everything.
        b.apply(
            Membership(age: 0, live: ["a", "b"], before: ["a"], seenChange: ["b"]), renewedAt: Self.start + 100)
        #expect(b.held(now: Self.start + 100).isEmpty)
        // a renews: it keeps its half and gives up b's.
        a.apply(
            Membership(age: 500, live: ["a", "b"], before: ["a"], seenChange: ["a", "b"]),
            renewedAt: Self.start + 600)
        #expect(Set(a.held(now: Self.start + 600)) == Self.share(2, 0))
        // b's next renewal sees that a has seen the change: it takes its half.
        b.apply(
            Membership(age: 1_000, live: ["a", "b"], before: ["a"], seenChange: ["a", "b"]),
            renewedAt: Self.start + 1_100)
        #expect(Set(b.held(now: Self.start + 1_100)) == Self.share(2, 1))
    }

    @Test func aRenewalInTheMillisecondOfTheChangeDoesNotCountAsHavingSeenIt() {
        let a = PartitionLeases(instanceID: "a", tickMillis: Self.tick)
        // a rejoins, and b renewed in the same millisecond: perhaps just before, still holding every partition.
        a.apply(Membership(age: 0, live: ["a", "b"], before: ["b"], seenChange: ["a", "b"]), renewedAt: Self.start)
        #expect(a.held(now: Self.start).isEmpty)
        // b renews later: it has seen a, and a takes its half.
        a.apply(
            Membership(age: 1_000, live: ["a", "b"], before: ["b"], seenChange: ["a", "b"]),
            renewedAt: Self.start + 1_000)
        #expect(Set(a.held(now: Self.start + 1_000)) == Self.share(2, 0))
    }

    @Test func aMemberThatDoesNotRenewHoldsAMoveUpUntilTheHoldDown() {
        let c = PartitionLeases(instanceID: "c", tickMillis: Self.tick)
        // b, in the previous set and still counted alive, has not renewed since c joined.
        let waiting = Membership(age: 2_999, live: ["a", "b", "c"], before: ["a", "b"], seenChange: ["a", "c"])
        c.apply(waiting, renewedAt: Self.start)
        #expect(c.held(now: Self.start).isEmpty)
        var settled = waiting
        settled.age = 3_000
        c.apply(settled, renewedAt: Self.start + 1)
        #expect(Set(c.held(now: Self.start + 1)) == Self.share(3, 2))
        #expect(c.holdDownMillis > c.trustMillis)
    }

    @Test func whatAnInstanceHoldsStaysItsOwnThroughAChange() {
        let a = PartitionLeases(instanceID: "a", tickMillis: Self.tick)
        a.apply(
            Membership(age: 9_000, live: ["a", "b"], before: ["a"], seenChange: ["a", "b"]), renewedAt: Self.start)
        // c joins and b has not seen it: a keeps the partitions of its half that stay with it, takes none of b's.
        a.apply(
            Membership(age: 0, live: ["a", "b", "c"], before: ["a", "b"], seenChange: ["a", "c"]),
            renewedAt: Self.start + 1_000)
        #expect(Set(a.held(now: Self.start + 1_000)) == Self.share(2, 0).intersection(Self.share(3, 0)))
    }

    @Test func aGoneMembersShareIsTakenAtOnce() {
        let a = PartitionLeases(instanceID: "a", tickMillis: Self.tick)
        a.apply(
            Membership(age: 9_000, live: ["a", "b"], before: ["a"], seenChange: ["a", "b"]), renewedAt: Self.start)
        // b has been silent for three ticks: it is no longer live, and stopped trusting its last renewal before.
        a.apply(Membership(age: 0, live: ["a"], before: ["a", "b"], seenChange: ["a"]), renewedAt: Self.start + 1_000)
        #expect(Set(a.held(now: Self.start + 1_000)) == Set(Partition.all))
    }

    /// The renewal an instance last had answered is trusted for two ticks: past that it holds nothing, so that it
    /// stops before the others count it as gone (three ticks) and take its partitions.
    @Test func anInstanceThatCannotRenewStopsBeforeOthersTakeOver() {
        let a = PartitionLeases(instanceID: "a", tickMillis: Self.tick)
        a.apply(Membership(age: 0, live: ["a"], before: [], seenChange: ["a"]), renewedAt: Self.start)
        #expect(a.held(now: Self.start + 1_999).count == Partition.count)
        #expect(a.held(now: Self.start + 2_000).isEmpty)
        #expect(a.trustMillis < a.aliveMillis)
        // Nor does an untrusted holding carry over a change.
        a.apply(
            Membership(age: 0, live: ["a", "b"], before: ["a", "b"], seenChange: ["a"]), renewedAt: Self.start + 2_500)
        #expect(a.held(now: Self.start + 2_500).isEmpty)
    }

    @Test func anInstanceNotInTheLiveSetHoldsNothing() {
        let a = PartitionLeases(instanceID: "a", tickMillis: Self.tick)
        a.apply(Membership(age: 0, live: ["b"], before: [], seenChange: ["b"]), renewedAt: Self.start)
        #expect(a.held(now: Self.start).isEmpty)
    }
}

@Suite(.serialized) struct PartitionLeasesTests {
    @Test func partitionsAreSharedAmongLiveInstancesAndTakenOverFromASilentOne() async throws {
        let setup = try await StatesUnderTest()
        let first = UncheckedBox(PartitionLeases(instanceID: "a", tickMillis: PartitionShareTests.tick))
        let second = UncheckedBox(PartitionLeases(instanceID: "b", tickMillis: PartitionShareTests.tick))
        func renew(_ leases: UncheckedBox<PartitionLeases>) async throws -> Set<Partition> {
            // Redis dates renewals to the millisecond: a few apart, each step below comes after the one before for
            // Redis too (a renewal in the millisecond of a change is taken as perhaps before it).
            try await Task.sleep(nanoseconds: 3_000_000)
            let now = UnixMillis(Date().timeIntervalSince1970 * 1000)
            let failure: StoreError? = try await setup.tested.thread.wait { [client = setup.tested.client] done in
                leases.value.renew(on: client.value, now: now) { renewed in
                    if case .failure(let error) = renewed { done(error) }
                }
                // The renewal's reply comes before this one's: the client answers in order.
                client.value.send(["PING"]) { _ in done(nil) }
            }
            if let failure { throw failure }
            return try await setup.tested.thread.run { Set(leases.value.held(now: now)) }
        }
        let everyPartition = Set(Partition.all)
        #expect(try await renew(first) == everyPartition)
        // b joins: a has not seen it yet, so b waits; a keeps its half; then b takes the other.
        #expect(try await renew(second).isEmpty)
        // a's last renewal: b may take a's partitions no sooner than 3 s after it. Taken before the call, so that a
        // slow reply (under a sanitizer, say) cannot shorten the interval measured below.
        let silent = Date()
        let firstHalf = try await renew(first)
        let secondHalf = try await renew(second)
        #expect(firstHalf == PartitionShareTests.share(2, 0) && secondHalf == PartitionShareTests.share(2, 1))
        // a falls silent: b takes every partition once a counts as gone (3 s), renewing every 0.3 s meanwhile.
        var alone = secondHalf
        while alone != everyPartition, Date().timeIntervalSince(silent) < 10 {
            try await Task.sleep(nanoseconds: 300_000_000)
            alone = try await renew(second)
        }
        #expect(alone == everyPartition)
        #expect(Date().timeIntervalSince(silent) >= 2.9)
        // a, back, waits for b to see it; b keeps its half; then a takes the other.
        #expect(try await renew(first).isEmpty)
        #expect(try await renew(second) == secondHalf)
        #expect(try await renew(first) == firstHalf)
        try await setup.stop()
    }

    /// The functions record the format every live instance reads (`ap:membership`, field `format`), which instances
    /// of 0.17 and 0.18 wait for before they write format 3 (this release always does): not while an instance of a
    /// release before, which says nothing, is alive; and for good once they all have. Each renewal says format 3.
    @Test func theFormatEveryLiveInstanceReadsIsRaisedOnceAllDoAndNeverLowered() async throws {
        let setup = try await StatesUnderTest()
        let leases = UncheckedBox(PartitionLeases(instanceID: "new", tickMillis: 100))
        /// Renews, and returns the format recorded then ("" for none).
        func renew() async throws -> String {
            let now = UnixMillis(Date().timeIntervalSince1970 * 1000)
            let renewed: Result<PartitionLeases.Membership, StoreError> = try await setup.tested.thread.wait {
                [client = setup.tested.client] done in leases.value.renew(on: client.value, now: now) { done($0) }
            }
            _ = try renewed.get()
            return try await setup.server.cli(["HGET", "ap:membership", "format"])
        }
        /// What an instance of the release before sends: no format, and it reads four answers.
        func olderSaysItIsAlive() async throws {
            let answers: Int = try await setup.tested.thread.wait { [client = setup.tested.client] done in
                client.value.send(["FCALL", "approvald_members", "0", "older", "300"]) { result in
                    guard case .success(.array(let reply)) = result else { return done(-1) }
                    done(reply.count)
                }
            }
            #expect(answers == 4)
        }
        try await olderSaysItIsAlive()
        #expect(try await renew() == "")
        #expect(try await renew() == "")
        // The older instance stays silent until it counts as gone (300 ms).
        try await Task.sleep(nanoseconds: 400_000_000)
        #expect(try await renew() == "3")
        #expect(try await setup.server.cli(["EXISTS", "ap:formats"]) == "0")
        // An older instance back (one that was running: a new one refuses these functions) changes nothing.
        try await olderSaysItIsAlive()
        #expect(try await renew() == "3")
        try await setup.stop()
    }
}
