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

func openStore(_ directory: String) throws -> SQLiteStore {
    try SQLiteStore(directory: directory) { $0() }
}

/// Commits and waits (bounded) for durability.
func commitAndWait(_ store: SQLiteStore, _ events: [CoreEvent]) throws {
    let done = DispatchSemaphore(value: 0)
    let outcome = Locked<Result<Void, StoreError>?>(nil)
    store.commit(events) { result in
        outcome.withLock { $0 = result }
        done.signal()
    }
    guard done.wait(timeout: .now() + 10) == .success else { throw StoreError("commit timed out") }
    try outcome.withLock { $0 }!.get()
}

@Suite struct SQLiteStoreTests {
    /// Drives a core through every kind of state, storing every event, then reads it all back.
    @Test func whatCorePersistsComesBackTheSame() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openStore(directory)
        let core = ApprovalCore(random: SeededRandom(seed: 7))
        var events: [CoreEvent] = []
        var policy = TenantPolicy()
        policy.target = .selected
        policy.users = ["alice@contoso.com", "bob, \"the\" builder", "ålice"]
        policy.maxPendingPerUser = 4
        policy.lockoutSeconds = 900
        events += try core.setPolicy(policy, for: "contoso")
        let push = PushTarget(provider: .apns, token: "a1b2", topic: "com.example.authenticator")
        events += try core.registerDevice(
            "phone-1", in: "contoso",
            DeviceRegistration(
                userID: "alice@contoso.com", publicKey: [0, 1, 2, 255], push: push, displayName: "Alice's ☎"),
            now: start
        ).1
        events += try core.registerDevice(
            "tablet-1", in: "contoso", DeviceRegistration(userID: "alice@contoso.com", publicKey: [9]), now: start + 1
        ).1
        events += try core.registerDevice(
            "phone-9", in: "contoso", DeviceRegistration(userID: "bob, \"the\" builder", publicKey: [8]), now: start + 2
        ).1
        func create(_ id: String, _ user: String = "alice@contoso.com", ttl: Int? = nil) throws -> Challenge {
            let request = ChallengeRequest(
                requestID: id, userID: user, number: 42, ttlSeconds: ttl,
                context: ["app": "Outlook", "location": "Stockholm, SE", "quote": "\"x\"\n"])
            let (outcome, created) = try core.createChallenge(request, in: "contoso", now: start + 10)
            events += created
            guard case .created(let challenge) = outcome else { throw StoreError("not created") }
            return challenge
        }
        let pending = try create("pending", ttl: 600)
        let approved = try create("approved")
        events += try core.answer(
            approved.id, from: "phone-1",
            Decision(kind: .approve(selectedNumber: 42), signedAtUnix: 1_795_600_001, signature: "c2ln"),
            now: start + 20
        ).1
        let wrong = try create("wrong")
        events += try core.answer(
            wrong.id, from: "tablet-1",
            Decision(kind: .approve(selectedNumber: 7), signedAtUnix: 1_795_600_002, signature: "d3Jvbmc"),
            now: start + 20
        ).1
        let denied = try create("denied", "bob, \"the\" builder")
        events += try core.answer(
            denied.id, from: "phone-9",
            Decision(kind: .deny(reason: .notMe), signedAtUnix: 1_795_600_003, signature: "bm90bWU"), now: start + 20
        ).1
        let cancelled = try create("cancelled")
        events += try core.cancel(cancelled.id, in: "contoso", now: start + 30).1
        events += try core.createChallenge(
            ChallengeRequest(requestID: "fallback", userID: "carol@contoso.com", number: 5), in: "contoso",
            now: start + 40
        ).1
        events += try core.updatePush(PushTarget(provider: .fcm, token: "rotated"), for: "tablet-1")

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
        let restored = ApprovalCore(random: SeededRandom(seed: 3))
        try reopened.load { restored.restore($0) }
        #expect(restored.devices(of: "alice@contoso.com", in: "contoso").map(\.id) == ["phone-1", "tablet-1"])
        #expect(restored.challenge(pending.id, in: "contoso") == core.challenge(pending.id, in: "contoso"))
        #expect(restored.queueDepth == core.queueDepth && restored.pendingChallenges == core.pendingChallenges)
        let byID = Dictionary(uniqueKeysWithValues: state.challenges.map { ($0.id, $0) })
        for original in [pending, approved, wrong, denied, cancelled] {
            #expect(byID[original.id] == core.challenge(original.id, in: "contoso"), "\(original.request.requestID)")
        }
        #expect(byID[denied.id]?.decision?.kind == .deny(reason: .notMe))
        #expect(byID[wrong.id]?.reason == .wrongNumber)
        // carol is not among the policy's selected users: the policy answers before the missing device does.
        #expect(state.fallbacks.count == 1 && state.fallbacks[0].reason == .policy)
        #expect(state.lockouts.count == 1 && state.lockouts[0].userID == "bob, \"the\" builder")
        #expect(state.lockouts[0].until == start + 20 + 900_000)
    }

    @Test func forgettingAndRemovalDeleteRows() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openStore(directory)
        let core = ApprovalCore(random: SeededRandom(seed: 7))
        var events = try core.registerDevice(
            "phone-1", in: "contoso", DeviceRegistration(userID: "alice", publicKey: [1]), now: start
        ).1
        let (outcome, created) = try core.createChallenge(
            ChallengeRequest(requestID: "r1", userID: "alice", number: 1), in: "contoso", now: start)
        events += created
        guard case .created(let challenge) = outcome else { throw StoreError("not created") }
        events += try core.cancel(challenge.id, in: "contoso", now: start).1
        events += try core.createChallenge(
            ChallengeRequest(requestID: "r2", userID: "bob", number: 1), in: "contoso", now: start
        ).1
        try commitAndWait(store, events)
        #expect(try store.load().challenges.count == 1)
        let forgotten = core.tick(now: start + ApprovalCore<SeededRandom>.rememberMillis)
        #expect(forgotten.count == 2)
        try commitAndWait(store, forgotten + (try core.removeDevice("phone-1", in: "contoso")))
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
            "\(error)".contains("schema 99, newer than this approvald's \(SQLiteStore.schemaVersion)")
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
}

@Suite struct RecoveryThroughTheStoreTests {
    @Test func aRestartKeepsPendingChallengesAndTheirDeadlines() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openStore(directory)
        let before = ApprovalCore(random: SeededRandom(seed: 7))
        var events = try before.registerDevice(
            "phone-1", in: "contoso", DeviceRegistration(userID: "alice", publicKey: [1]), now: start
        ).1
        var policy = TenantPolicy()
        policy.maxPendingPerUser = 2
        events += try before.setPolicy(policy, for: "contoso")
        let (long, longEvents) = try before.createChallenge(
            ChallengeRequest(requestID: "long", userID: "alice", number: 1, ttlSeconds: 300), in: "contoso", now: start)
        let (short, shortEvents) = try before.createChallenge(
            ChallengeRequest(requestID: "short", userID: "alice", number: 2, ttlSeconds: 10), in: "contoso",
            now: start + 1)
        try commitAndWait(store, events + longEvents + shortEvents)
        store.close()
        guard case .created(let kept) = long, case .created(let lapsed) = short else { throw StoreError("not created") }

        let after = ApprovalCore(random: SeededRandom(seed: 99))
        after.restore(try openStore(directory).load())
        #expect(after.queue(of: "phone-1", now: start + 2).map(\.id) == [kept.id, lapsed.id])
        let recovered = after.tick(now: start + 60_000)
        #expect(recovered.contains { if case .ended(let challenge) = $0 { challenge.id == lapsed.id } else { false } })
        #expect(after.challenge(kept.id, in: "contoso")?.expiresAt == start + 300_000)
        #expect(after.queue(of: "phone-1", now: start + 60_000).map(\.id) == [kept.id])
        #expect(after.queueDepth == 1 && after.pendingChallenges == 1)
    }
}
