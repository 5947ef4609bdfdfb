// The verifier outbox in SQLite: entries committed with the domain, read as they fall due, retried, delivered,
// dead-lettered, and kept across a reopen; a schema-1 store gains the outbox when opened.
import Core
import Dispatch
import Foundation
import Locking
import Testing

@testable import Store

/// Runs an asynchronous store read and waits (bounded) for its result.
func waitFor<Value: Sendable>(
    _ read: (@escaping @Sendable (Result<Value, StoreError>) -> Void) -> Void
) throws -> Value {
    let done = DispatchSemaphore(value: 0)
    let outcome = Locked<Result<Value, StoreError>?>(nil)
    read { result in
        outcome.withLock { $0 = result }
        done.signal()
    }
    guard done.wait(timeout: .now() + 10) == .success else { throw StoreError("read timed out") }
    return try outcome.withLock { $0 }!.get()
}

func commitAndWait(_ store: SQLiteJournal, outbox: [OutboxChange]) throws {
    let _: Void = try waitFor { store.commit([], outbox: outbox, completion: $0) }
}

@Suite struct OutboxTests {
    func entry(
        _ id: String, endedAt: UnixMillis, tenant: String = "contoso", partition: Partition = Partition(7)
    ) -> OutboxEntry {
        OutboxEntry(
            challengeID: id, tenantID: tenant, partition: partition, body: "{\"challenge_id\":\"\(id)\"}",
            endedAt: endedAt)
    }

    @Test func aReadOfSomePartitionsSeesTheirCallbacksOnly() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try openStore(directory)
        defer { store.close() }
        let (three, five, last) = (Partition(3), Partition(5), Partition(Partition.count - 1))
        try commitAndWait(
            store,
            outbox: [
                .enqueue(entry("ch_a", endedAt: start + 1, partition: three)),
                .enqueue(entry("ch_b", endedAt: start + 2, partition: five)),
                .enqueue(entry("ch_c", endedAt: start + 3, partition: three)),
                .enqueue(entry("ch_d", endedAt: start + 50, partition: five)),
                .enqueue(entry("ch_e", endedAt: start + 60, partition: last)),
            ])
        func due(_ partitions: [Partition]) throws -> DueCallbacks {
            try waitFor { store.dueCallbacks(in: partitions, now: start + 10, after: nil, limit: 10, completion: $0) }
        }
        #expect(try due([three]).entries.map(\.challengeID) == ["ch_a", "ch_c"])
        #expect(try due([three]).nextDueAt == nil)
        #expect(try due([five]).entries.map(\.challengeID) == ["ch_b"] && due([five]).nextDueAt == start + 50)
        #expect(try due([three, last]).entries.map(\.challengeID) == ["ch_a", "ch_c"])
        #expect(try due([three, last]).nextDueAt == start + 60)
        #expect(try due([Partition(4)]).entries.isEmpty && due([]).entries.isEmpty)
        #expect(try due(Partition.all).entries.map(\.challengeID) == ["ch_a", "ch_b", "ch_c"])
        #expect(try due(Partition.all).entries[1].partition == five && due(Partition.all).nextDueAt == start + 50)
    }

    @Test func entriesComeDueInOrderAndLeaveWhenDeliveredOrDead() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var store = try openStore(directory)
        try commitAndWait(
            store, outbox: [.enqueue(entry("ch_b", endedAt: start + 2)), .enqueue(entry("ch_a", endedAt: start + 1))])
        // Enqueueing again (a replayed commit) changes nothing.
        try commitAndWait(store, outbox: [.enqueue(entry("ch_a", endedAt: start + 99))])
        var due = try waitFor {
            store.dueCallbacks(in: Partition.all, now: start + 10, after: nil, limit: 10, completion: $0)
        }
        #expect(due.entries.map(\.challengeID) == ["ch_a", "ch_b"])
        #expect(due.entries[0] == entry("ch_a", endedAt: start + 1) && due.nextDueAt == nil)
        #expect(
            try waitFor { store.dueCallbacks(in: Partition.all, now: start + 1, after: nil, limit: 10, completion: $0) }
                .entries.count == 1
        )
        let first = try waitFor {
            store.dueCallbacks(in: Partition.all, now: start + 10, after: nil, limit: 1, completion: $0)
        }
        #expect(first.entries.map(\.challengeID) == ["ch_a"])
        // The next page starts after where the last one ended.
        let second = try waitFor {
            store.dueCallbacks(
                in: Partition.all, now: start + 10, after: OutboxCursor(after: first.entries[0]), limit: 1,
                completion: $0)
        }
        #expect(second.entries.map(\.challengeID) == ["ch_b"])

        // A retry moves the entry out of the due set until its time; the store says when that is.
        try commitAndWait(store, outbox: [.retry(challengeID: "ch_a", attempts: 1, nextAttemptAt: start + 1_000)])
        due = try waitFor {
            store.dueCallbacks(in: Partition.all, now: start + 10, after: nil, limit: 10, completion: $0)
        }
        #expect(due.entries.map(\.challengeID) == ["ch_b"] && due.nextDueAt == start + 1_000)

        // Reopened, everything is where it was.
        store.close()
        store = try openStore(directory)
        var sizes: Int?
        try store.load { record in if case .sizes(_, _, _, let callbacks) = record { sizes = callbacks } }
        #expect(sizes == 2)
        due = try waitFor {
            store.dueCallbacks(in: Partition.all, now: start + 1_000, after: nil, limit: 10, completion: $0)
        }
        #expect(due.entries.map(\.challengeID) == ["ch_b", "ch_a"] && due.entries[1].attempts == 1)

        // Delivered: gone. Dead: gone from the outbox, listed for its tenant only, newest first.
        let letter = DeadLetter(
            entry: due.entries[0], status: 400, detail: "the verifier answered 400", deadAt: start + 2_000)
        try commitAndWait(
            store,
            outbox: [
                .delivered(challengeID: "ch_a"), .deadLetter(letter), .enqueue(entry("ch_c", endedAt: start + 3)),
                .deadLetter(
                    DeadLetter(
                        entry: entry("ch_c", endedAt: start + 3), status: 0, detail: "gave up", deadAt: start + 3_000)),
                .enqueue(entry("ch_d", endedAt: start + 4, tenant: "fabrikam")),
            ])
        due = try waitFor {
            store.dueCallbacks(in: Partition.all, now: start + 10_000, after: nil, limit: 10, completion: $0)
        }
        #expect(due.entries.map(\.challengeID) == ["ch_d"])
        let letters = try waitFor { store.deadLetters(tenantID: "contoso", limit: 10, completion: $0) }
        #expect(letters.map(\.entry.challengeID) == ["ch_c", "ch_b"])
        #expect(letters[1].entry.body == letter.entry.body && letters[1].entry.endedAt == start + 2)
        #expect(letters[1].status == 400 && letters[1].detail == letter.detail && letters[1].deadAt == start + 2_000)
        #expect(try waitFor { store.deadLetters(tenantID: "fabrikam", limit: 10, completion: $0) }.isEmpty)
        store.close()
    }

    @Test func deadLettersAreRedrivenOneOrAllOfATenantsIntoTheOutbox() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var store = try openStore(directory)
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        // A CIBA callback keeps Keycloak's bearer token through its death and its redrive.
        let cibaTarget = CallbackTarget.ciba(bearerToken: "eyJhbGciOi.eyJqdGki.c2lnbmF0")
        func dead(_ id: String, tenant: String = "contoso") -> OutboxChange {
            .deadLetter(
                DeadLetter(
                    entry: OutboxEntry(
                        challengeID: id, tenantID: tenant, partition: Partition(9),
                        body: entry(id, endedAt: start).body, endedAt: start + 1, attempts: 3,
                        traceparent: id == "ch_a" ? traceparent : nil, target: id == "ch_b" ? cibaTarget : .verifier),
                    status: 400, detail: "refused", deadAt: start + 5))
        }
        try commitAndWait(
            store,
            outbox: [
                .enqueue(entry("ch_a", endedAt: start + 1)), dead("ch_a"), dead("ch_b"), dead("ch_c"),
                dead("ch_f", tenant: "fabrikam"),
            ])
        func redrive(_ tenant: String, _ id: String?) throws -> Int {
            try waitFor { store.redrive(tenantID: tenant, challengeID: id, now: start + 100, completion: $0) }
        }
        func due() throws -> [OutboxEntry] {
            try waitFor {
                store.dueCallbacks(in: Partition.all, now: start + 100, after: nil, limit: 10, completion: $0)
            }
            .entries
        }
        #expect(try due().isEmpty)
        // Another tenant's id, an unknown id: nothing moves.
        #expect(try redrive("fabrikam", "ch_a") == 0 && redrive("contoso", "ch_zz") == 0)
        #expect(try redrive("contoso", "ch_a") == 1)
        let requeued = try #require(try due().first)
        #expect(requeued.challengeID == "ch_a" && requeued.attempts == 0 && requeued.nextAttemptAt == start + 100)
        #expect(requeued.partition == Partition(9) && requeued.body == entry("ch_a", endedAt: start).body)
        #expect(requeued.endedAt == start + 1 && requeued.traceparent == traceparent)
        #expect(try redrive("contoso", "ch_a") == 0)
        // Every one of the tenant's, after a reopen; the other tenant's stays dead.
        store.close()
        store = try openStore(directory)
        #expect(try redrive("contoso", nil) == 2)
        #expect(try due().map(\.challengeID) == ["ch_a", "ch_b", "ch_c"])
        #expect(try due().map(\.traceparent) == [traceparent, nil, nil])
        #expect(try due().map(\.target) == [.verifier, cibaTarget, .verifier])
        #expect(try waitFor { store.deadLetters(tenantID: "contoso", limit: 10, completion: $0) }.isEmpty)
        #expect(try waitFor { store.deadLetters(tenantID: "fabrikam", limit: 10, completion: $0) }.count == 1)
        store.close()
    }

    @Test func theEmbeddedStoreCountsARedrivenCallbackInTheForwardQueue() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (store, _) = try EmbeddedStore.recover(try openStore(directory), executor: { $0() })
        defer { store.close() }
        let letter = DeadLetter(entry: entry("ch_a", endedAt: start), status: 400, detail: "refused", deadAt: start)
        let _: Void = try waitFor { done in
            store.commit(Commit(state: nil, changes: [], outbox: [.enqueue(letter.entry), .deadLetter(letter)])) {
                result in
                if case .durable = result { done(.success(())) } else { done(.failure(StoreError("\(result)"))) }
            }
        }
        #expect(store.gauges.forwardQueueDepth == 0)
        #expect(try waitFor { store.redrive(tenantID: "contoso", challengeID: nil, now: start, completion: $0) } == 1)
        #expect(store.gauges.forwardQueueDepth == 1)
    }

    @Test func aSchemaOneStoreGainsTheOutbox() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent("approvald.sqlite3")
        // The schema-1 tables, as the first release wrote them, with one device in them.
        do {
            let database = try SQLiteDatabase(path: path)
            try database.execute(
                """
                CREATE TABLE policies (tenant_id TEXT PRIMARY KEY, passwordless INTEGER NOT NULL, target TEXT NOT NULL,
                    users TEXT NOT NULL, max_devices_per_user INTEGER NOT NULL, challenge_ttl_seconds INTEGER NOT NULL,
                    choices INTEGER NOT NULL, max_pending_per_user INTEGER NOT NULL,
                    max_challenges_per_window INTEGER NOT NULL, window_seconds INTEGER NOT NULL,
                    lockout_seconds INTEGER NOT NULL);
                CREATE TABLE devices (device_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, user_id TEXT NOT NULL,
                    public_key BLOB NOT NULL, push_provider TEXT NOT NULL, push_token TEXT NOT NULL,
                    push_topic TEXT NOT NULL, display_name TEXT NOT NULL, created_at INTEGER NOT NULL,
                    last_seen_at INTEGER);
                CREATE TABLE challenges (challenge_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL,
                    request_id TEXT NOT NULL, user_id TEXT NOT NULL, number INTEGER NOT NULL, ttl_seconds INTEGER,
                    context TEXT NOT NULL, choices TEXT NOT NULL, devices TEXT NOT NULL, created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT, answered_by TEXT, decision TEXT,
                    selected_number INTEGER, deny_reason TEXT, signed_at_unix INTEGER, signature TEXT,
                    resolved_at INTEGER, UNIQUE (tenant_id, request_id));
                CREATE TABLE fallbacks (tenant_id TEXT NOT NULL, request_id TEXT NOT NULL, user_id TEXT NOT NULL,
                    number INTEGER NOT NULL, ttl_seconds INTEGER, context TEXT NOT NULL, reason TEXT NOT NULL,
                    decided_at INTEGER NOT NULL, PRIMARY KEY (tenant_id, request_id));
                CREATE TABLE lockouts (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, until INTEGER NOT NULL,
                    PRIMARY KEY (tenant_id, user_id));
                INSERT INTO devices VALUES ('phone-1', 'contoso', 'alice', X'01', 'none', '', '', '', 1, NULL);
                PRAGMA user_version = 1;
                """)
        }
        let store = try openStore(directory)
        defer { store.close() }
        #expect(try store.load().devices.map(\.id) == ["phone-1"])
        try commitAndWait(store, outbox: [.enqueue(entry("ch_a", endedAt: start))])
        #expect(
            try waitFor { store.dueCallbacks(in: Partition.all, now: start, after: nil, limit: 10, completion: $0) }
                .entries.count == 1)
    }
}
