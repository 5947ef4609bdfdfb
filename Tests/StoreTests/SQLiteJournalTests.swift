// The SQLite store: what Core persists comes back the same after reopening, group commit, and the error paths.
import Core
import Dispatch
import Foundation
import Locking
import Store
import Synchronization
import TestSupport
import Testing

let start: UnixMillis = 1_795_600_000_000

func temporaryDirectory() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("approvald-store-\(UUID().uuidString)").path
}

func openStore(_ directory: String) throws -> SQLiteJournal {
    try SQLiteJournal(directory: directory) { $0() }
}

/// Commits and waits (bounded) for durability.
func commitAndWait(_ store: SQLiteJournal, _ events: [Change]) throws {
    let done = DispatchSemaphore(value: 0)
    let outcome = Locked<Result<Void, StoreError>?>(nil)
    store.commit(events, outbox: []) { result in
        outcome.withLock { $0 = result }
        done.signal()
    }
    guard done.wait(timeout: .now() + 10) == .success else { throw StoreError("commit timed out") }
    try outcome.withLock { $0 }!.get()
}

@Suite struct SQLiteJournalTests {
    /// Drives a core through every kind of state, storing every event, then reads it all back.
    @Test func whatCorePersistsComesBackTheSame() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openStore(directory)
        let core = RulesDriver(random: SeededRandom(seed: 7))
        var policy = TenantPolicy()
        policy.target = .selected
        policy.users = ["alice@contoso.com", "bob, \"the\" builder", "ålice"]
        policy.maxPendingPerUser = 4
        policy.lockoutSeconds = 900
        _ = try core.setPolicy(policy, for: "contoso")
        let push = PushTarget(provider: .apns, token: "a1b2", topic: "com.example.authenticator")
        _ = try core.registerDevice(
            "phone-1", in: "contoso",
            DeviceRegistration(
                userID: "alice@contoso.com", publicKey: [0, 1, 2, 255], push: push, displayName: "Alice's ☎"),
            now: start
        ).1
        _ = try core.registerDevice(
            "tablet-1", in: "contoso", DeviceRegistration(userID: "alice@contoso.com", publicKey: [9]), now: start + 1
        ).1
        _ = try core.registerDevice(
            "phone-9", in: "contoso", DeviceRegistration(userID: "bob, \"the\" builder", publicKey: [8]), now: start + 2
        ).1
        func create(
            _ id: String, _ user: String = "alice@contoso.com", ttl: Int? = nil, channel: ResultChannel = .verifier
        ) throws -> Challenge {
            let request = ChallengeRequest(
                requestID: id, userID: user, number: 42, ttlSeconds: ttl,
                context: ["app": "Outlook", "location": "Stockholm, SE", "quote": "\"x\"\n"])
            // One pending and one ended challenge keep the create's traceparent.
            let traceparent =
                ["pending", "approved"].contains(id) ? "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" : nil
            let (outcome, _) = try core.createChallenge(
                request, in: "contoso", traceparent: traceparent, channel: channel, now: start + 10)
            guard case .created(let challenge) = outcome else { throw StoreError("not created") }
            return challenge
        }
        let pending = try create("pending", ttl: 600)
        let approved = try create("approved")
        _ = try core.answer(
            approved.id, from: "phone-1",
            Decision(kind: .approve(selectedNumber: 42), signedAtUnix: 1_795_600_001, signature: "c2ln"),
            now: start + 20
        ).1
        let wrong = try create("wrong")
        _ = try core.answer(
            wrong.id, from: "tablet-1",
            Decision(kind: .approve(selectedNumber: 7), signedAtUnix: 1_795_600_002, signature: "d3Jvbmc"),
            now: start + 20
        ).1
        // Keycloak's CIBA request, pending with its bearer token.
        let ciba = try create(
            "ciba-1", "bob, \"the\" builder", channel: .ciba(bearerToken: "eyJhbGciOi.eyJqdGki.c2lnbmF0"))
        let denied = try create("denied", "bob, \"the\" builder")
        _ = try core.answer(
            denied.id, from: "phone-9",
            Decision(kind: .deny(reason: .notMe), signedAtUnix: 1_795_600_003, signature: "bm90bWU"), now: start + 20
        ).1
        let cancelled = try create("cancelled")
        _ = try core.cancel(cancelled.id, in: "contoso", now: start + 30).1
        // A browser's sign-in, approved and its code redeemed.
        let browser = try create("browser", channel: .browser(codeRedeemed: false))
        _ = try core.answer(
            browser.id, from: "phone-1",
            Decision(kind: .approve(selectedNumber: 42), signedAtUnix: 1_795_600_004, signature: "YnJvd3Nlcg"),
            now: start + 31
        ).1
        _ = try core.redeemCode(for: browser.id, in: "contoso")
        _ = try core.createChallenge(
            ChallengeRequest(requestID: "fallback", userID: "carol@contoso.com", number: 5), in: "contoso",
            now: start + 40
        ).1
        _ = try core.updatePush(PushTarget(provider: .fcm, token: "rotated"), for: "tablet-1")

        let events = core.takeChanges()
        // In several batches, as the loop would commit them.
        for chunk in stride(from: 0, to: events.count, by: 3) {
            try commitAndWait(store, Array(events[chunk..<min(chunk + 3, events.count)]))
        }
        store.close()

        let reopened = try openStore(directory)
        let state = try reopened.load()
        #expect(
            state.policies.count == 1 && state.policies[0].tenantID == "contoso" && state.policies[0].policy == policy)
        // Rows come in storage order: tablet-1's was rewritten by the push-token rotation.
        #expect(state.devices.map(\.id) == ["phone-1", "phone-9", "tablet-1"])
        for device in state.devices { #expect(device == core.device(device.id)) }
        #expect(state.devices[2].push == PushTarget(provider: .fcm, token: "rotated"))
        // Restored, each user's devices are in registration order again.
        let restored = try EmbeddedStore.recover(reopened, executor: { $0() }).0
        let alice = restored.peek(.user(UserKey(tenantID: "contoso", userID: "alice@contoso.com"))).state
        #expect(alice?.devices.map(\.id) == ["phone-1", "tablet-1"])
        #expect(alice?.challenge(pending.id) == core.challenge(pending.id, in: "contoso"))
        #expect(alice?.challenges.count == 5 && alice?.lockedUntil == nil)
        #expect(
            restored.gauges.queueDepth == core.queueDepth
                && restored.gauges.pendingChallenges == core.pendingChallenges)
        let byID = Dictionary(uniqueKeysWithValues: state.challenges.map { ($0.id, $0) })
        for original in [pending, approved, wrong, denied, cancelled, browser, ciba] {
            #expect(byID[original.id] == core.challenge(original.id, in: "contoso"), "\(original.request.requestID)")
        }
        #expect(byID[denied.id]?.resolution?.decision?.kind == .deny(reason: .notMe))
        #expect(byID[wrong.id]?.resolution?.reason == .wrongNumber)
        #expect(byID[approved.id]?.traceparent != nil && byID[pending.id]?.traceparent != nil)
        #expect(byID[wrong.id]?.traceparent == nil)
        #expect(byID[browser.id]?.channel == .browser(codeRedeemed: true) && byID[pending.id]?.channel == .verifier)
        #expect(byID[ciba.id]?.channel == .ciba(bearerToken: "eyJhbGciOi.eyJqdGki.c2lnbmF0"))
        // carol is not among the policy's selected users: the policy answers before the missing device does.
        #expect(state.fallbacks.count == 1 && state.fallbacks[0].reason == .policy)
        #expect(state.lockouts.count == 1 && state.lockouts[0].userID == "bob, \"the\" builder")
        #expect(state.lockouts[0].until == start + 20 + 900_000)
    }

    @Test func forgettingAndRemovalDeleteRows() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openStore(directory)
        let core = RulesDriver(random: SeededRandom(seed: 7))
        _ = try core.registerDevice(
            "phone-1", in: "contoso", DeviceRegistration(userID: "alice", publicKey: [1]), now: start)
        let (outcome, _) = try core.createChallenge(
            ChallengeRequest(requestID: "r1", userID: "alice", number: 1), in: "contoso", now: start)
        guard case .created(let challenge) = outcome else { throw StoreError("not created") }
        _ = try core.cancel(challenge.id, in: "contoso", now: start)
        _ = try core.createChallenge(
            ChallengeRequest(requestID: "r2", userID: "bob", number: 1), in: "contoso", now: start)
        try commitAndWait(store, core.takeChanges())
        #expect(try store.load().challenges.count == 1)
        let forgotten = core.tick(now: start + Rules.rememberMillis)
        #expect(forgotten.count == 2)
        _ = try core.removeDevice("phone-1", in: "contoso")
        try commitAndWait(store, core.takeChanges())
        store.close()
        let state = try openStore(directory).load()
        #expect(state.challenges.isEmpty && state.fallbacks.isEmpty && state.devices.isEmpty)
    }

    @Test func batchesQueuedTogetherShareATransaction() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openStore(directory)
        let batches = 2000
        let done = DispatchSemaphore(value: 0)
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: batches) { index in
            let device = Device(
                id: "device-\(index)", tenantID: "contoso", userID: "user-\(index)", publicKey: [1], push: .none,
                displayName: "", createdAt: start + UnixMillis(index))
            store.commit([.deviceSaved(device)]) { result in
                if case .failure = result { failures.add(1, ordering: .relaxed) }
                done.signal()
            }
        }
        for _ in 0..<batches { #expect(done.wait(timeout: .now() + 30) == .success) }
        #expect(failures.load(ordering: .relaxed) == 0)
        #expect(store.transactionsCommitted < batches)
        #expect(store.transactionsCommitted >= 1)
        store.close()
        #expect(try openStore(directory).load().devices.count == batches)
    }

    @Test func aClosedStoreRefusesCommits() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openStore(directory)
        try commitAndWait(store, [])
        store.close()
        #expect(throws: StoreError("the store is closed")) { try commitAndWait(store, []) }
    }

    @Test func anUnusableDirectoryIsReported() {
        #expect {
            try openStore("/proc/approvald-cannot-be-here")
        } throws: { error in
            "\(error)".contains("/proc/approvald-cannot-be-here")
        }
    }

    @Test func aNewerSchemaIsRefused() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try openStore(directory)
        let raise = Process()
        raise.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        raise.arguments = ["sqlite3", directory + "/approvald.sqlite3", "PRAGMA user_version = 99;"]
        try raise.run()
        raise.waitUntilExit()
        #expect(raise.terminationStatus == 0)
        #expect {
            try openStore(directory)
        } throws: { error in
            "\(error)".contains("schema 99, newer than this approvald's \(SQLiteJournal.schemaVersion)")
        }
    }

    @Test func aDamagedRowIsReportedWithItsColumn() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openStore(directory)
        let device = Device(
            id: "phone-1", tenantID: "contoso", userID: "alice", publicKey: [1], push: .none, displayName: "",
            createdAt: start)
        try commitAndWait(store, [.deviceSaved(device)])
        store.close()
        let damage = Process()
        damage.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        damage.arguments = ["sqlite3", directory + "/approvald.sqlite3", "UPDATE devices SET push_provider = 'pager';"]
        try damage.run()
        damage.waitUntilExit()
        #expect {
            try openStore(directory).load()
        } throws: { error in
            "\(error)".contains("devices.push_provider holds pager")
        }
    }

    @Test(arguments: ["17,x,88", "17,,88", "17,42,", ",42", "1234567890"])
    func aDamagedListOfChoicesIsReported(_ damaged: String) throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openStore(directory)
        let driver = RulesDriver(random: SeededRandom(seed: 3))
        _ = try driver.registerDevice(
            "phone-1", in: "contoso", DeviceRegistration(userID: "alice", publicKey: [1]), now: start)
        _ = try driver.createChallenge(
            ChallengeRequest(requestID: "r-1", userID: "alice", number: 42), in: "contoso", now: start)
        try commitAndWait(store, driver.takeChanges())
        #expect(try store.load().challenges.first?.choices.contains(42) == true)
        store.close()
        let damage = Process()
        damage.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        damage.arguments = [
            "sqlite3", directory + "/approvald.sqlite3", "UPDATE challenges SET choices = '\(damaged)';",
        ]
        try damage.run()
        damage.waitUntilExit()
        #expect {
            try openStore(directory).load()
        } throws: { error in
            "\(error)".contains("challenges.choices holds \(damaged), which is not a list of numbers")
        }
    }
}

@Suite struct RecoveryThroughTheStoreTests {
    @Test func aRestartKeepsPendingChallengesAndTheirDeadlines() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = try openStore(directory)
        let before = RulesDriver(random: SeededRandom(seed: 7))
        _ = try before.registerDevice(
            "phone-1", in: "contoso", DeviceRegistration(userID: "alice", publicKey: [1]), now: start)
        var policy = TenantPolicy()
        policy.maxPendingPerUser = 2
        _ = try before.setPolicy(policy, for: "contoso")
        let (long, _) = try before.createChallenge(
            ChallengeRequest(requestID: "long", userID: "alice", number: 1, ttlSeconds: 300), in: "contoso", now: start)
        let (short, _) = try before.createChallenge(
            ChallengeRequest(requestID: "short", userID: "alice", number: 2, ttlSeconds: 10), in: "contoso",
            now: start + 1)
        try commitAndWait(journal, before.takeChanges())
        journal.close()
        guard case .created(let kept) = long, case .created(let lapsed) = short else { throw StoreError("not created") }

        let (after, recovered) = try EmbeddedStore.recover(try openStore(directory), executor: { $0() })
        defer { after.close() }
        #expect(recovered.devices == 1 && recovered.challenges == 2)
        #expect(after.policy(for: "contoso") == policy)
        let alice = UserKey(tenantID: "contoso", userID: "alice")
        #expect(
            after.peek(.device("phone-1")).state?.queue(of: "phone-1", now: start + 2).map(\.id) == [
                kept.id, lapsed.id,
            ])
        #expect(after.nextDeadline == lapsed.expiresAt)
        // The sweep finds alice due in her partition, and the expiry commits under her version.
        var due: [UserKey] = []
        let elsewhere = Partition((alice.partition.index + 1) % Partition.count)
        after.dueUsers(in: [elsewhere], now: start + 60_000) { due = (try? $0.get()) ?? [] }
        #expect(due.isEmpty)
        after.dueUsers(in: [elsewhere, alice.partition], now: start + 60_000) { due = (try? $0.get()) ?? [] }
        #expect(due == [alice])
        let ticked = Rules.tick(user: after.peek(.user(alice)).state!, now: start + 60_000)
        #expect(ticked.deliveries.contains(.ended(ticked.state.challenge(lapsed.id)!)))
        // The journal's writer thread says durable; the test waits for it (bounded).
        let durable = DispatchSemaphore(value: 0)
        let result = Locked<CommitResult?>(nil)
        after.commit(Commit(state: ticked.state, changes: ticked.changes)) { outcome in
            result.withLock { $0 = outcome }
            durable.signal()
        }
        #expect(after.peek(.challenge(kept.id)).state?.challenge(kept.id)?.expiresAt == start + 300_000)
        #expect(after.peek(.user(alice)).state?.queue(of: "phone-1", now: start + 60_000).map(\.id) == [kept.id])
        #expect(after.gauges.queueDepth == 1 && after.gauges.pendingChallenges == 1)
        #expect(durable.wait(timeout: .now() + 10) == .success)
        guard case .durable? = result.withLock({ $0 }) else { throw StoreError("the expiry was not durable") }
        // The same decision again is stale at once: alice's version moved on.
        var again: CommitResult?
        after.commit(Commit(state: ticked.state, changes: ticked.changes)) { again = $0 }
        guard case .stale? = again else { throw StoreError("a second commit on the same version was not stale") }
    }
}
