// A data directory written by the previous release opens and recovers: the fixture is a store made by that
// release's `approvald serve` and `approvald simulate` (4 devices, 6 answered sign-ins, a lockout, two fallbacks,
// one pending challenge, 6 callbacks waiting for a verifier that never answered).
import Core
import Foundation
import Store
import Testing

@Suite struct MigrationTests {
    /// A data directory holding a copy of the previous release's store (the test may change it).
    func copyOfTheFixture() throws -> String {
        let directory = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let fixture = try #require(
            Bundle.module.url(forResource: "schema-2", withExtension: "sqlite3", subdirectory: "Fixtures"))
        try FileManager.default.copyItem(atPath: fixture.path, toPath: directory + "/approvald.sqlite3")
        return directory
    }

    @Test func aStoreOfThePreviousReleaseRecovers() throws {
        let directory = try copyOfTheFixture()
        defer { try? FileManager.default.removeItem(atPath: directory) }

        let (store, recovered) = try EmbeddedStore.recover(try openStore(directory), executor: { $0() })
        defer { store.close() }
        #expect(recovered.devices == 4 && recovered.challenges == 7 && recovered.callbacks == 6)
        #expect(store.gauges.pendingChallenges == 1 && store.gauges.queueDepth == 1)
        #expect(store.gauges.forwardQueueDepth == 6)
        let pending = "ch_0JUv1VzsiIjv0PjYo_BuGC"
        let owner = try #require(store.peek(.challenge(pending)).state)
        #expect(owner.key == UserKey(tenantID: "fixture", userID: "sim-1svw8nh-user1@example.com"))
        #expect(owner.challenge(pending)?.isPending == true && owner.queue.count == 1)
        // The user who denied: locked out, two fallbacks remembered, three ended challenges.
        let denier = try #require(
            store.peek(.user(UserKey(tenantID: "fixture", userID: "sim-1e3kb9o-user3@example.com"))).state)
        #expect(denier.lockedUntil == 1_796_154_204_660)
        #expect(denier.fallbacks.map(\.reason) == [.pendingChallenge, .lockedOut])
        #expect(denier.challenges.count == 2 && denier.challenges.allSatisfy { !$0.isPending })
        let held = store.peek(
            .creation(denier.key, RequestKey(tenantID: "fixture", requestID: "sim-1e3kb9o-6-next")))
        #expect(held.heldBy == denier.key)
        // The pending challenge expired while the broker was down: the first sweep ends it.
        let now: UnixMillis = 1_796_153_604_750
        #expect(store.nextDeadline == 1_796_153_604_750)
        var due: [UserKey] = []
        store.dueUsers(in: [owner.partition], now: now) { due = (try? $0.get()) ?? [] }
        #expect(due == [owner.key])
        let swept = Rules.tick(user: owner, now: now)
        #expect(swept.state.challenge(pending)?.status == .expired)
        #expect(swept.changes.contains(.resultDue(swept.state.challenge(pending)!)))
    }

    @Test func theCallbacksOfThePreviousReleaseKeepTheirUsersPartitions() throws {
        let directory = try copyOfTheFixture()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = try openStore(directory)
        defer { journal.close() }
        let due = try waitFor {
            journal.dueCallbacks(in: Partition.all, now: .max, after: nil, limit: 100, completion: $0)
        }
        #expect(due.entries.count == 6)
        for entry in due.entries {
            let body = try #require(try JSONSerialization.jsonObject(with: Data(entry.body.utf8)) as? [String: Any])
            let user = UserKey(
                tenantID: try #require(body["tenant_id"] as? String), userID: try #require(body["user_id"] as? String))
            #expect(entry.partition == user.partition, "\(entry.challengeID)")
            // Read per partition, each is where its user is.
            let mine = try waitFor {
                journal.dueCallbacks(in: [user.partition], now: .max, after: nil, limit: 100, completion: $0)
            }
            #expect(mine.entries.contains { $0.challengeID == entry.challengeID })
        }
        // The users of the fixture fall in more than one partition, so the check above can tell them apart.
        #expect(Set(due.entries.map(\.partition)).count > 1)
    }
}
