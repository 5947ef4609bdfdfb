// The outbox in Redis: callbacks join it with their challenge's commit, are read in due order per partition (pages
// after a cursor), retried, delivered, dead-lettered and redriven, with the shared forward-queue gauge in step.
import Core
import Foundation
import Redis
import Store
import TestSupport
import Testing

@testable import RedisStore

@Suite(.serialized) struct RedisOutboxTests {
    static let now = UnixMillis(Date().timeIntervalSince1970 * 1000)

    /// A user with a pending challenge whose callback joined the outbox in the same commit, due at `due`.
    func pendingWithCallback(
        _ user: UserKey, due: UnixMillis, traceparent: String? = nil, in setup: StatesUnderTest
    ) async throws -> OutboxEntry {
        var random = SeededRandom(seed: UInt64(user.userID.count))
        let registered = try Rules.register(
            "phone-\(user.userID)",
            DeviceRegistration(userID: user.userID, publicKey: [1], push: PushTarget(provider: .none, token: "")),
            policy: TenantPolicy(), registeredTo: nil, user: UserState(key: user), now: Self.now)
        #expect(try await setup.commit(registered) == .durable)
        let stored = try #require(try await setup.load(.user(user)).state)
        let created = try Rules.create(
            ChallengeRequest(requestID: "r-\(user.userID)", userID: user.userID, number: 7, ttlSeconds: 60),
            policy: TenantPolicy(), requestHeldBy: nil, user: stored, now: Self.now, random: &random)
        let challengeID = try #require(created.state.pending.first?.id)
        let entry = OutboxEntry(
            challengeID: challengeID, tenantID: user.tenantID, partition: user.partition,
            body: "{\"challenge_id\":\"\(challengeID)\",\"note\":\"a|b\"}", endedAt: Self.now, nextAttemptAt: due,
            traceparent: traceparent)
        #expect(try await setup.commit(created, enqueue: [entry]) == .durable)
        return entry
    }

    @Test func callbacksAreReadInDueOrderRetriedDeliveredDeadLetteredAndRedriven() async throws {
        let setup = try await StatesUnderTest()
        let outbox = UncheckedBox(RedisOutbox(client: setup.tested.client.value))
        func due(at now: UnixMillis, after cursor: OutboxCursor? = nil, limit: Int = 10) async throws -> DueCallbacks {
            let result: Result<DueCallbacks, StoreError> = try await setup.tested.thread.wait { done in
                outbox.value.dueCallbacks(in: Partition.all, now: now, after: cursor, limit: limit) { done($0) }
            }
            return try result.get()
        }
        func change(_ change: OutboxChange) async throws {
            let result: Result<Void, StoreError> = try await setup.tested.thread.wait { done in
                outbox.value.commit([change]) { done($0) }
            }
            try result.get()
        }
        func forwardQueue() async throws -> Int {
            let result: Result<Gauges, StoreError> = try await setup.tested.thread.wait {
                [states = setup.states] done in states.value.gauges { done($0) }
            }
            return try result.get().forwardQueueDepth
        }
        let alice = try await pendingWithCallback(
            UserKey(tenantID: "contoso", userID: "alice"), due: Self.now,
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", in: setup)
        let bob = try await pendingWithCallback(
            UserKey(tenantID: "contoso", userID: "bob"), due: Self.now + 5000, in: setup)
        try #require(alice.partition != bob.partition)
        #expect(try await forwardQueue() == 2)

        let first = try await due(at: Self.now)
        #expect(first.entries == [alice])
        #expect(first.nextDueAt == Self.now + 5000)
        // Pages: one at a time, the second after the first.
        let page = try await due(at: Self.now + 10_000, limit: 1)
        #expect(page.entries == [alice])
        #expect(try await due(at: Self.now + 10_000, after: OutboxCursor(after: alice), limit: 1).entries == [bob])

        // A retry moves the callback to its next attempt.
        try await change(.retry(challengeID: alice.challengeID, attempts: 1, nextAttemptAt: Self.now + 20_000))
        #expect(try await due(at: Self.now + 10_000).entries.map(\.challengeID) == [bob.challengeID])
        let both = try await due(at: Self.now + 20_000).entries
        #expect(both.map(\.challengeID) == [bob.challengeID, alice.challengeID])
        let retried = try #require(both.last)
        #expect(retried.attempts == 1 && retried.nextAttemptAt == Self.now + 20_000 && retried.body == alice.body)
        #expect(retried.traceparent == alice.traceparent)

        // Delivered: gone; told again (another instance finished it too), nothing changes.
        try await change(.delivered(challengeID: bob.challengeID))
        try await change(.delivered(challengeID: bob.challengeID))
        #expect(try await forwardQueue() == 1)

        // Dead: out of the outbox, into the tenant's list with what the verifier said. (As a CIBA callback's, its
        // bearer token goes with it, and comes back with the redrive.)
        let target = CallbackTarget.ciba(bearerToken: "eyJhbGciOi.eyJqdGki.c2lnbmF0")
        let letter = DeadLetter(
            entry: OutboxEntry(
                challengeID: retried.challengeID, tenantID: "contoso", partition: retried.partition, body: retried.body,
                endedAt: retried.endedAt, attempts: 2, traceparent: retried.traceparent, target: target), status: 500,
            detail: "the verifier answered 500 | twice\nagain",
            deadAt: Self.now + 21_000)
        try await change(.deadLetter(letter))
        let none = try await due(at: Self.now + 30_000)
        #expect(none.entries.isEmpty && none.nextDueAt == nil)
        #expect(try await forwardQueue() == 0)
        // Nothing is left of either partition's outbox.
        for partition in [alice.partition, bob.partition] {
            #expect(
                try await setup.server.cli([
                    "EXISTS", RedisOutbox.outboxKey(partition), RedisOutbox.dueKey(partition),
                ]) == "0")
        }
        let listed: Result<[DeadLetter], StoreError> = try await setup.tested.thread.wait { done in
            outbox.value.deadLetters(tenantID: "contoso", limit: 10) { done($0) }
        }
        #expect(try listed.get() == [letter])

        // Redriven: due now, no attempt made, the same body; unknown ids and other tenants' requeue nothing.
        func redrive(_ tenantID: String, _ challengeID: String?) async throws -> Int {
            let result: Result<Int, StoreError> = try await setup.tested.thread.wait { done in
                outbox.value.redrive(tenantID: tenantID, challengeID: challengeID, now: Self.now + 40_000) {
                    done($0)
                }
            }
            return try result.get()
        }
        #expect(try await redrive("fabrikam", alice.challengeID) == 0)
        #expect(try await redrive("contoso", "ch_unknown") == 0)
        #expect(try await redrive("contoso", nil) == 1)
        let again = try await due(at: Self.now + 40_000)
        #expect(
            again.entries == [
                OutboxEntry(
                    challengeID: alice.challengeID, tenantID: "contoso", partition: alice.partition, body: alice.body,
                    endedAt: alice.endedAt, attempts: 0, nextAttemptAt: Self.now + 40_000,
                    traceparent: alice.traceparent, target: target)
            ])
        #expect(try await forwardQueue() == 1)
        // Several outcomes in one call, across partitions.
        let carol = try await pendingWithCallback(
            UserKey(tenantID: "contoso", userID: "carol"), due: Self.now, in: setup)
        try await change(.delivered(challengeID: alice.challengeID))
        #expect(try await forwardQueue() == 1)
        let batched: Result<Void, StoreError> = try await setup.tested.thread.wait { done in
            outbox.value.commit([
                .delivered(challengeID: carol.challengeID),
                .retry(challengeID: alice.challengeID, attempts: 1, nextAttemptAt: Self.now),
            ]) { done($0) }
        }
        try batched.get()
        #expect(try await forwardQueue() == 0)
        #expect(try await due(at: Self.now + 50_000).entries.isEmpty)
        try await setup.stop()
    }

    /// A read looks only at the partitions it names (those the instance forwards), and its next due time is the
    /// earliest of theirs, whether or not anything is due now.
    @Test func aReadSeesOnlyThePartitionsItNamesAndTheirEarliestLaterCallback() async throws {
        let setup = try await StatesUnderTest()
        let outbox = UncheckedBox(RedisOutbox(client: setup.tested.client.value))
        func due(in partitions: [Partition], at now: UnixMillis) async throws -> DueCallbacks {
            let result: Result<DueCallbacks, StoreError> = try await setup.tested.thread.wait { done in
                outbox.value.dueCallbacks(in: partitions, now: now, after: nil, limit: 10) { done($0) }
            }
            return try result.get()
        }
        let alice = try await pendingWithCallback(
            UserKey(tenantID: "contoso", userID: "alice"), due: Self.now, in: setup)
        let bob = try await pendingWithCallback(
            UserKey(tenantID: "contoso", userID: "bob"), due: Self.now + 7_000, in: setup)
        let carol = try await pendingWithCallback(
            UserKey(tenantID: "contoso", userID: "carol"), due: Self.now + 3_000, in: setup)
        try #require(Set([alice.partition, bob.partition, carol.partition]).count == 3)

        let onlyBob = try await due(in: [bob.partition], at: Self.now)
        #expect(onlyBob.entries.isEmpty && onlyBob.nextDueAt == Self.now + 7_000)
        let notAlice = try await due(in: [bob.partition, carol.partition], at: Self.now)
        #expect(notAlice.entries.isEmpty && notAlice.nextDueAt == Self.now + 3_000)
        let all = try await due(in: Partition.all, at: Self.now)
        #expect(all.entries == [alice] && all.nextDueAt == Self.now + 3_000)
        #expect(try await due(in: [], at: Self.now + 10_000).entries.isEmpty)
        let later = try await due(in: Partition.all, at: Self.now + 10_000)
        #expect(later.entries.map(\.challengeID) == [alice, carol, bob].map(\.challengeID) && later.nextDueAt == nil)
        try await setup.stop()
    }
}

/// Callbacks and dead letters as the release before stored them in Redis (no traceparent) are still read.
@Suite struct RedisOutboxFormatTests {
    @Test func aCallbackOrDeadLetterWithoutATraceparentFieldIsRead() throws {
        let partition = Partition(65)
        let old = try RedisOutbox.entry(
            #"2|5000|4000|contoso|{"note":"a|b"}"#, challengeID: "ch_x", partition: partition)
        #expect(old.body == #"{"note":"a|b"}"# && old.traceparent == nil && old.attempts == 2 && old.endedAt == 4000)
        let traced = OutboxEntry(
            challengeID: "ch_x", tenantID: "contoso", partition: partition, body: #"{"note":"a|b"}"#, endedAt: 4000,
            attempts: 2, nextAttemptAt: 5000, traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        #expect(
            try RedisOutbox.entry(RedisOutbox.value(of: traced), challengeID: "ch_x", partition: partition) == traced)
        let untraced = OutboxEntry(
            challengeID: "ch_x", tenantID: "contoso", partition: partition, body: "{}", endedAt: 4000)
        #expect(
            try RedisOutbox.entry(RedisOutbox.value(of: untraced), challengeID: "ch_x", partition: partition)
                == untraced)
        // A CIBA callback's bearer token sits between the traceparent and the body, with or without a traceparent.
        for traceparent in [nil, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"] {
            let ciba = OutboxEntry(
                challengeID: "fb_x", tenantID: "contoso", partition: partition, body: #"{"status":"UNAUTHORIZED"}"#,
                endedAt: 4000, traceparent: traceparent, target: .ciba(bearerToken: "eyJhbGciOi.eyJqdGki.c2lnbmF0"))
            #expect(
                try RedisOutbox.entry(RedisOutbox.value(of: ciba), challengeID: "fb_x", partition: partition) == ciba)
        }

        let oldLetter = try RedisOutbox.deadLetter(
            #"400|9000|3|4000|0065|7|refused{"note":"a|b"}"#, challengeID: "ch_x", tenantID: "contoso")
        #expect(oldLetter.entry.body == #"{"note":"a|b"}"# && oldLetter.entry.traceparent == nil)
        #expect(oldLetter.detail == "refused" && oldLetter.status == 400 && oldLetter.entry.partition == partition)
        let letter = DeadLetter(entry: traced, status: 400, detail: "refused | twice", deadAt: 9000)
        let read = try RedisOutbox.deadLetter(RedisOutbox.value(of: letter), challengeID: "ch_x", tenantID: "contoso")
        #expect(read.entry.traceparent == traced.traceparent && read.entry.body == traced.body)
        #expect(read.detail == letter.detail)
    }
}
