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

func commitAndWait(_ store: SQLiteStore, outbox: [OutboxChange]) throws {
    let _: Void = try waitFor { store.commit([], outbox: outbox, completion: $0) }
}

@Suite struct OutboxTests {
    func entry(_ id: String, endedAt: UnixMillis, tenant: String = "contoso") -> OutboxEntry {
        OutboxEntry(challengeID: id, tenantID: tenant, body: "{\"challenge_id\":\"\(id)\"}", endedAt: endedAt)
    }

    @Test func entriesComeDueInOrderAndLeaveWhenDeliveredOrDead() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var store = try openStore(directory)
        try commitAndWait(
            store, outbox: [.enqueue(entry("ch_b", endedAt: start + 2)), .enqueue(entry("ch_a", endedAt: start + 1))])
        // Enqueueing again (a replayed commit) changes nothing.
        try commitAndWait(store, outbox: [.enqueue(entry("ch_a", endedAt: start + 99))])
        var due = try waitFor { store.dueCallbacks(now: start + 10, after: nil, limit: 10, completion: $0) }
        #expect(due.entries.map(\.challengeID) == ["ch_a", "ch_b"])
        #expect(due.entries[0] == entry("ch_a", endedAt: start + 1) && due.nextDueAt == nil)
        #expect(
            try waitFor { store.dueCallbacks(now: start + 1, after: nil, limit: 10, completion: $0) }.entries.count == 1
        )
        let first = try waitFor { store.dueCallbacks(now: start + 10, after: nil, limit: 1, completion: $0) }
        #expect(first.entries.map(\.challengeID) == ["ch_a"])
        // The next page starts after where the last one ended.
        let second = try waitFor {
            store.dueCallbacks(now: start + 10, after: OutboxCursor(after: first.entries[0]), limit: 1, completion: $0)
        }
        #expect(second.entries.map(\.challengeID) == ["ch_b"])

        // A retry moves the entry out of the due set until its time; the store says when that is.
        try commitAndWait(store, outbox: [.retry(challengeID: "ch_a", attempts: 1, nextAttemptAt: start + 1_000)])
        due = try waitFor { store.dueCallbacks(now: start + 10, after: nil, limit: 10, completion: $0) }
        #expect(due.entries.map(\.challengeID) == ["ch_b"] && due.nextDueAt == start + 1_000)

        // Reopened, everything is where it was.
        store.close()
        store = try openStore(directory)
        var sizes: Int?
        try store.load { record in if case .sizes(_, _, _, let callbacks) = record { sizes = callbacks } }
        #expect(sizes == 2)
        due = try waitFor { store.dueCallbacks(now: start + 1_000, after: nil, limit: 10, completion: $0) }
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
        due = try waitFor { store.dueCallbacks(now: start + 10_000, after: nil, limit: 10, completion: $0) }
        #expect(due.entries.map(\.challengeID) == ["ch_d"])
        let letters = try waitFor { store.deadLetters(tenantID: "contoso", limit: 10, completion: $0) }
        #expect(letters.map(\.entry.challengeID) == ["ch_c", "ch_b"])
        #expect(letters[1].entry.body == letter.entry.body && letters[1].entry.endedAt == start + 2)
        #expect(letters[1].status == 400 && letters[1].detail == letter.detail && letters[1].deadAt == start + 2_000)
        #expect(try waitFor { store.deadLetters(tenantID: "fabrikam", limit: 10, completion: $0) }.isEmpty)
        store.close()
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
            try waitFor { store.dueCallbacks(now: start, after: nil, limit: 10, completion: $0) }.entries.count == 1)
    }
}
