// The Service over a store double whose commits are refused as stale: a stale commit is decided again on fresh state
// (and then acknowledged once), and state that keeps moving ends in 503 `unavailable`, never in a wrong answer.
import Core
import Crypto
import Foundation
import Locking
import Store
import Testing

@testable import Service

/// The embedded store, except that the first `staleCommits` commits of a user's state are refused as stale (as if
/// another instance had committed first) without being applied.
final class StaleStore: DelegatingStates, @unchecked Sendable {
    let refusals = Locked(0)
    let decisions = Locked(0)
    private let staleCommits: Int

    init(_ inner: EmbeddedStore, staleCommits: Int) {
        self.staleCommits = staleCommits
        super.init(inner)
    }

    override func commit(_ commit: Commit, completion: @escaping (CommitResult) -> Void) {
        if commit.state != nil {
            decisions.withLock { $0 += 1 }
            let refuse = refusals.withLock { refused -> Bool in
                guard refused < staleCommits else { return false }
                refused += 1
                return true
            }
            if refuse { return completion(.stale) }
        }
        super.commit(commit, completion: completion)
    }
}

@Suite struct StaleStoreTests {
    /// The broker, its store, and the store's directory (for the test to remove).
    func broker(staleCommits: Int) async throws -> (InProcessBroker, Locked<StaleStore?>, directory: String) {
        let made = Locked<StaleStore?>(nil)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-\(UUID())").path
        let broker = try await InProcessBroker(
            wrap: { inner in
                let store = StaleStore(inner, staleCommits: staleCommits)
                made.withLock { $0 = store }
                return store.roles
            },
            store: { loop in try! SQLiteJournal(directory: directory) { work in loop.execute(work) } })
        return (broker, made, directory)
    }

    @Test func aStaleCommitIsDecidedAgainAndAcknowledgedOnce() async throws {
        let (broker, store, directory) = try await broker(staleCommits: 3)
        defer {
            broker.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }
        let key = try P256PrivateKey()
        let registered = try await broker.idp(
            "PUT", "/v1/tenants/contoso/devices/phone-1", InProcessBroker.registration("alice", key))
        #expect(registered.status == 201)
        let stale = try #require(store.withLock { $0 })
        // Three refusals, then the fourth decision on fresh state committed.
        #expect(stale.refusals.withLock { $0 } == 3 && stale.decisions.withLock { $0 } == 4)
        let listed = try await broker.idp("GET", "/v1/tenants/contoso/users/alice/devices")
        #expect(String(decoding: listed.body, as: UTF8.self).components(separatedBy: "\"device_id\"").count == 2)
    }

    @Test func stateThatKeepsMovingIsUnavailable() async throws {
        let (broker, _, directory) = try await broker(staleCommits: 1000)
        defer {
            broker.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }
        let key = try P256PrivateKey()
        let registered = try await broker.idp(
            "PUT", "/v1/tenants/contoso/devices/phone-1", InProcessBroker.registration("alice", key))
        #expect(registered.status == 503)
        #expect(String(decoding: registered.body, as: UTF8.self).contains("\"code\":\"unavailable\""))
        let listed = try await broker.idp("GET", "/v1/tenants/contoso/users/alice/devices")
        #expect(String(decoding: listed.body, as: UTF8.self) == "{\"devices\":[]}")
    }
}
