// The embedded default store: SQLite in WAL mode, written by one thread that commits every batch queued since its
// last transaction in the next one (group commit), and reports each batch durable through the caller's executor.
import CSQLite
import Core
import Foundation
import Locking
import Synchronization

/// Everything needed to rebuild the domain at start.
/// One stored record, as `DurableStore.load` hands them over.
public enum StoredRecord: Sendable {
    /// How many of each follow, so that the reader can make room at once, and how many callbacks wait in the
    /// outbox (they are read as they fall due, not here).
    case sizes(devices: Int, challenges: Int, fallbacks: Int, callbacks: Int)
    case policy(tenantID: String, TenantPolicy)
    case device(Device)
    case challenge(Challenge)
    case fallback(Fallback)
    case lockout(tenantID: String, userID: String, until: UnixMillis)
}

/// Everything a store holds, gathered in memory.
public struct StoredState: Sendable {
    public var policies: [(tenantID: String, policy: TenantPolicy)] = []
    public var devices: [Device] = []
    /// In the order they were created.
    public var challenges: [Challenge] = []
    public var fallbacks: [Fallback] = []
    public var lockouts: [(tenantID: String, userID: String, until: UnixMillis)] = []

    public init() {}

    mutating func add(_ record: StoredRecord) {
        switch record {
        case .sizes: break
        case .policy(let tenantID, let policy): policies.append((tenantID, policy))
        case .device(let device): devices.append(device)
        case .challenge(let challenge): challenges.append(challenge)
        case .fallback(let fallback): fallbacks.append(fallback)
        case .lockout(let tenantID, let userID, let until): lockouts.append((tenantID, userID, until))
        }
    }
}

/// Durable state behind one protocol, so a networked store can stand in for the embedded one.
public protocol DurableStore: AnyObject, Sendable {
    /// Hands over every stored record, one at a time so that a million need not sit in memory twice: first their
    /// `sizes`, then policies, devices, challenges in the order they were created, fallbacks and lockouts. Called
    /// once at start, before the first commit.
    func load(_ each: (StoredRecord) -> Void) throws(StoreError)
    /// Makes the state changes among `events` and the outbox changes durable together. `completion` runs through
    /// the store's executor once they are committed, or with the error that prevented it.
    func commit(
        _ events: [CoreEvent], outbox: [OutboxChange],
        completion: @escaping @Sendable (Result<Void, StoreError>) -> Void)
    /// Up to `limit` callbacks due at `now`, in (due time, challenge id) order, after `cursor` if given (where the
    /// previous page ended), reflecting everything committed before the call.
    func dueCallbacks(
        now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping @Sendable (Result<DueCallbacks, StoreError>) -> Void)
    /// A tenant's dead letters, newest first, at most `limit`.
    func deadLetters(
        tenantID: String, limit: Int, completion: @escaping @Sendable (Result<[DeadLetter], StoreError>) -> Void)
    /// Commits what is queued, then stops the writer.
    func close()
}

public final class SQLiteStore: DurableStore, @unchecked Sendable {
    /// `@unchecked Sendable`: the writing connection and its statements are used by the writer thread only (and by
    /// the opening thread before it starts); `load()` reads through its own connection; the queue between callers
    /// and the writer is behind a mutex.
    private let database: SQLiteDatabase
    private let statements: Statements
    private let executor: @Sendable (@escaping @Sendable () -> Void) -> Void
    private let pending = Locked(Pending())
    private let wake = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)
    private let writerStarted = Locked(false)
    private let transactions = Atomic<Int>(0)
    public static let schemaVersion = 2

    /// Transactions committed since opening: fewer than batches when group commit folds them together.
    public var transactionsCommitted: Int { transactions.load(ordering: .relaxed) }

    private struct Batch {
        let events: [CoreEvent]
        let outbox: [OutboxChange]
        let completion: @Sendable (Result<Void, StoreError>) -> Void
    }

    private struct Pending {
        var batches: [Batch] = []
        /// Reads to run on the writer's connection after the batches queued before them.
        var reads: [@Sendable (Statements) -> Void] = []
        var closing = false
    }

    /// Opens (creating if needed) `approvald.sqlite3` in `directory`.
    /// - Parameter executor: runs each commit's completion; the Service passes its event loop's `execute`.
    public init(
        directory: String, executor: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void
    )
        throws(StoreError)
    {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError("cannot create the data directory \(directory): \(error.localizedDescription)")
        }
        database = try SQLiteDatabase(path: (directory as NSString).appendingPathComponent("approvald.sqlite3"))
        try database.execute("PRAGMA journal_mode = WAL")
        // FULL: a commit is on disk before its batch is reported durable (kill -9 and power loss lose nothing).
        try database.execute("PRAGMA synchronous = FULL")
        try database.execute("PRAGMA busy_timeout = 5000")
        // The writer's page cache: indexes of a million challenges are tens of MiB, and a miss costs a read call.
        try database.execute("PRAGMA cache_size = -65536")
        try Self.migrate(database)
        statements = try Statements(database)
        self.executor = executor
    }

    deinit { close() }

    private static func migrate(_ database: SQLiteDatabase) throws(StoreError) {
        var version: Int64 = 0
        try database.prepare("PRAGMA user_version").query { row in version = row.integer(0) }
        guard version <= schemaVersion else {
            throw StoreError("\(database.path) has schema \(version), newer than this approvald's \(schemaVersion)")
        }
        guard version < schemaVersion else { return }
        try database.execute("BEGIN")
        do throws(StoreError) {
            for (index, step) in migrations.enumerated() where index >= version { try database.execute(step) }
            try database.execute("PRAGMA user_version = \(schemaVersion)")
            try database.execute("COMMIT")
        } catch {
            try? database.execute("ROLLBACK")
            throw error
        }
    }

    /// Step N takes schema N to N + 1.
    private static let migrations = [
        """
        CREATE TABLE policies (
            tenant_id TEXT PRIMARY KEY, passwordless INTEGER NOT NULL, target TEXT NOT NULL, users TEXT NOT NULL,
            max_devices_per_user INTEGER NOT NULL, challenge_ttl_seconds INTEGER NOT NULL, choices INTEGER NOT NULL,
            max_pending_per_user INTEGER NOT NULL, max_challenges_per_window INTEGER NOT NULL,
            window_seconds INTEGER NOT NULL, lockout_seconds INTEGER NOT NULL);
        CREATE TABLE devices (
            device_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, public_key BLOB NOT NULL,
            push_provider TEXT NOT NULL, push_token TEXT NOT NULL, push_topic TEXT NOT NULL,
            display_name TEXT NOT NULL, created_at INTEGER NOT NULL, last_seen_at INTEGER);
        CREATE TABLE challenges (
            challenge_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, request_id TEXT NOT NULL, user_id TEXT NOT NULL,
            number INTEGER NOT NULL, ttl_seconds INTEGER, context TEXT NOT NULL, choices TEXT NOT NULL,
            devices TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, status TEXT NOT NULL,
            reason TEXT, answered_by TEXT, decision TEXT, selected_number INTEGER, deny_reason TEXT,
            signed_at_unix INTEGER, signature TEXT, resolved_at INTEGER,
            UNIQUE (tenant_id, request_id));
        CREATE TABLE fallbacks (
            tenant_id TEXT NOT NULL, request_id TEXT NOT NULL, user_id TEXT NOT NULL, number INTEGER NOT NULL,
            ttl_seconds INTEGER, context TEXT NOT NULL, reason TEXT NOT NULL, decided_at INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, request_id));
        CREATE TABLE lockouts (
            tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, until INTEGER NOT NULL, PRIMARY KEY (tenant_id, user_id));
        """,
        """
        CREATE TABLE outbox (
            challenge_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, body TEXT NOT NULL, ended_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL);
        CREATE INDEX outbox_due ON outbox (next_attempt_at, challenge_id);
        CREATE TABLE dead_letters (
            challenge_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, body TEXT NOT NULL, ended_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL, status INTEGER NOT NULL, detail TEXT NOT NULL, dead_at INTEGER NOT NULL);
        CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant_id, dead_at);
        """,
    ]

    // MARK: Loading

    /// Reads through a connection of its own (WAL lets it run beside the writer), in one read transaction.
    public func load(_ each: (StoredRecord) -> Void) throws(StoreError) {
        let reader = try SQLiteDatabase(path: database.path)
        try reader.execute("BEGIN")
        defer { try? reader.execute("COMMIT") }
        try reader.prepare(
            """
            SELECT (SELECT count(*) FROM devices), (SELECT count(*) FROM challenges), (SELECT count(*) FROM fallbacks),
                (SELECT count(*) FROM outbox)
            """
        ).query { row in
            each(
                .sizes(
                    devices: Int(row.integer(0)), challenges: Int(row.integer(1)), fallbacks: Int(row.integer(2)),
                    callbacks: Int(row.integer(3))))
        }
        try reader.prepare("SELECT * FROM policies").query { row throws(StoreError) in
            each(.policy(tenantID: row.text(0), try Codec.policy(row)))
        }
        // Devices in any order: the Core puts each user's in registration order.
        try reader.prepare("SELECT * FROM devices").query { row throws(StoreError) in
            each(.device(try Codec.device(row)))
        }
        // A challenge row is inserted when the challenge is created and updated in place when it ends: rowid order
        // is creation order.
        try reader.prepare("SELECT * FROM challenges ORDER BY rowid").query { row throws(StoreError) in
            each(.challenge(try Codec.challenge(row)))
        }
        try reader.prepare("SELECT * FROM fallbacks").query { row throws(StoreError) in
            each(.fallback(try Codec.fallback(row)))
        }
        try reader.prepare("SELECT * FROM lockouts").query { row in
            each(.lockout(tenantID: row.text(0), userID: row.text(1), until: row.integer(2)))
        }
    }

    // MARK: Writing

    public func commit(
        _ events: [CoreEvent], outbox: [OutboxChange],
        completion: @escaping @Sendable (Result<Void, StoreError>) -> Void
    ) {
        submit({ $0.batches.append(Batch(events: events, outbox: outbox, completion: completion)) }) {
            completion(.failure(StoreError("the store is closed")))
        }
    }

    public func dueCallbacks(
        now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping @Sendable (Result<DueCallbacks, StoreError>) -> Void
    ) {
        read(completion) { statements throws(StoreError) in
            var due = DueCallbacks(entries: [], nextDueAt: nil)
            let from = cursor ?? OutboxCursor(dueAt: .min, challengeID: "")
            try statements.dueCallbacks.query([
                .integer(from.dueAt), .text(from.challengeID), .integer(now), .integer(Int64(limit)),
            ]) { row in due.entries.append(Codec.outboxEntry(row)) }
            try statements.nextDue.query([.integer(now)]) { row in due.nextDueAt = row.optionalInteger(0) }
            return due
        }
    }

    public func deadLetters(
        tenantID: String, limit: Int, completion: @escaping @Sendable (Result<[DeadLetter], StoreError>) -> Void
    ) {
        read(completion) { statements throws(StoreError) in
            var letters: [DeadLetter] = []
            try statements.deadLetters.query([.text(tenantID), .integer(Int64(limit))]) { row in
                letters.append(Codec.deadLetter(row))
            }
            return letters
        }
    }

    /// Runs `work` on the writer's thread and connection, after the commits queued before it.
    private func read<Value: Sendable>(
        _ completion: @escaping @Sendable (Result<Value, StoreError>) -> Void,
        _ work: @escaping @Sendable (Statements) throws(StoreError) -> Value
    ) {
        let executor = self.executor
        let job: @Sendable (Statements) -> Void = { statements in
            let result: Result<Value, StoreError>
            do throws(StoreError) { result = .success(try work(statements)) } catch { result = .failure(error) }
            executor { completion(result) }
        }
        submit({ $0.reads.append(job) }) { completion(.failure(StoreError("the store is closed"))) }
    }

    /// Hands work to the writer thread; once the store is closing, `refused` runs through the executor instead.
    private func submit(_ add: (inout Pending) -> Void, refused: @escaping @Sendable () -> Void) {
        let accepted = pending.withLock { pending -> Bool in
            guard !pending.closing else { return false }
            add(&pending)
            return true
        }
        guard accepted else { return executor(refused) }
        startWriterOnce()
        wake.signal()
    }

    private func startWriterOnce() {
        let start = writerStarted.withLock { started -> Bool in
            defer { started = true }
            return !started
        }
        guard start else { return }
        let thread = Thread { [self] in writerLoop() }
        thread.name = "approvald-store"
        thread.start()
    }

    private func writerLoop() {
        while true {
            wake.wait()
            let (batches, reads, closing) = pending.withLock { pending in
                defer {
                    pending.batches.removeAll()
                    pending.reads.removeAll()
                }
                return (pending.batches, pending.reads, pending.closing)
            }
            if !batches.isEmpty { write(batches) }
            for read in reads { read(statements) }
            if closing && pending.withLock({ $0.batches.isEmpty && $0.reads.isEmpty }) {
                stopped.signal()
                return
            }
        }
    }

    /// One transaction for every batch queued since the last: one fsync however many requests it carries.
    private func write(_ batches: [Batch]) {
        var result: Result<Void, StoreError> = .success(())
        do throws(StoreError) {
            try statements.begin.run([])
            do throws(StoreError) {
                for batch in batches {
                    for event in batch.events { try apply(event) }
                    for change in batch.outbox { try apply(change) }
                }
                try statements.commit.run([])
                transactions.add(1, ordering: .relaxed)
            } catch {
                try? statements.rollback.run([])
                throw error
            }
        } catch {
            result = .failure(error)
        }
        let outcome = result
        for batch in batches {
            let completion = batch.completion
            executor { completion(outcome) }
        }
    }

    private func apply(_ event: CoreEvent) throws(StoreError) {
        switch event {
        case .policySaved(let tenantID, let policy): try statements.upsertPolicy.run(Codec.values(policy, tenantID))
        case .deviceSaved(let device): try statements.upsertDevice.run(Codec.values(device))
        case .deviceRemoved(_, let deviceID): try statements.deleteDevice.run([.text(deviceID)])
        case .challengeSaved(let challenge): try statements.upsertChallenge.run(Codec.values(challenge))
        case .fallbackSaved(let fallback): try statements.upsertFallback.run(Codec.values(fallback))
        case .lockoutSaved(let tenantID, let userID, let until):
            try statements.upsertLockout.run([.text(tenantID), .text(userID), .integer(until)])
        case .forgotten(let tenantID, let requestID, let challengeID):
            if let challengeID { try statements.deleteChallenge.run([.text(challengeID)]) }
            try statements.deleteFallback.run([.text(tenantID), .text(requestID)])
        case .queued, .unqueued, .ended:
            break  // deliveries, not state
        }
    }

    private func apply(_ change: OutboxChange) throws(StoreError) {
        switch change {
        case .enqueue(let entry): try statements.enqueueCallback.run(Codec.values(entry))
        case .delivered(let challengeID): try statements.deleteCallback.run([.text(challengeID)])
        case .retry(let challengeID, let attempts, let nextAttemptAt):
            try statements.retryCallback.run([.integer(Int64(attempts)), .integer(nextAttemptAt), .text(challengeID)])
        case .deadLetter(let letter):
            try statements.deleteCallback.run([.text(letter.entry.challengeID)])
            try statements.insertDeadLetter.run(Codec.values(letter))
        }
    }

    public func close() {
        let wasRunning = writerStarted.withLock { $0 }
        let first = pending.withLock { pending -> Bool in
            defer { pending.closing = true }
            return !pending.closing
        }
        guard first, wasRunning else { return }
        wake.signal()
        stopped.wait()
    }
}

/// Every statement, prepared once.
///
/// `@unchecked Sendable`: handed to read jobs, which run on the writer's thread only.
private struct Statements: @unchecked Sendable {
    let begin, commit, rollback: Statement
    let upsertPolicy, upsertDevice, deleteDevice, upsertChallenge, deleteChallenge: Statement
    let upsertFallback, deleteFallback, upsertLockout: Statement
    let enqueueCallback, deleteCallback, retryCallback, insertDeadLetter, dueCallbacks, nextDue, deadLetters: Statement

    init(_ database: SQLiteDatabase) throws(StoreError) {
        begin = try database.prepare("BEGIN IMMEDIATE")
        commit = try database.prepare("COMMIT")
        rollback = try database.prepare("ROLLBACK")
        upsertPolicy = try database.prepare("INSERT OR REPLACE INTO policies VALUES (?,?,?,?,?,?,?,?,?,?,?)")
        upsertDevice = try database.prepare("INSERT OR REPLACE INTO devices VALUES (?,?,?,?,?,?,?,?,?,?)")
        deleteDevice = try database.prepare("DELETE FROM devices WHERE device_id = ?")
        upsertChallenge = try database.prepare(
            // Ending a challenge updates its row in place: its index entries stay as they are (a replace would
            // delete and insert them again) and so does its rowid, which keeps creation order.
            """
            INSERT INTO challenges VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
            ON CONFLICT (challenge_id) DO UPDATE SET status = excluded.status, reason = excluded.reason,
                answered_by = excluded.answered_by, decision = excluded.decision,
                selected_number = excluded.selected_number, deny_reason = excluded.deny_reason,
                signed_at_unix = excluded.signed_at_unix, signature = excluded.signature,
                resolved_at = excluded.resolved_at
            """)
        deleteChallenge = try database.prepare("DELETE FROM challenges WHERE challenge_id = ?")
        upsertFallback = try database.prepare("INSERT OR REPLACE INTO fallbacks VALUES (?,?,?,?,?,?,?,?)")
        deleteFallback = try database.prepare("DELETE FROM fallbacks WHERE tenant_id = ? AND request_id = ?")
        upsertLockout = try database.prepare("INSERT OR REPLACE INTO lockouts VALUES (?,?,?)")
        enqueueCallback = try database.prepare("INSERT OR IGNORE INTO outbox VALUES (?,?,?,?,?,?)")
        deleteCallback = try database.prepare("DELETE FROM outbox WHERE challenge_id = ?")
        retryCallback = try database.prepare(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ? WHERE challenge_id = ?")
        insertDeadLetter = try database.prepare("INSERT OR REPLACE INTO dead_letters VALUES (?,?,?,?,?,?,?,?)")
        dueCallbacks = try database.prepare(
            """
            SELECT * FROM outbox WHERE (next_attempt_at, challenge_id) > (?, ?) AND next_attempt_at <= ?
            ORDER BY next_attempt_at, challenge_id LIMIT ?
            """)
        nextDue = try database.prepare("SELECT min(next_attempt_at) FROM outbox WHERE next_attempt_at > ?")
        deadLetters = try database.prepare(
            "SELECT * FROM dead_letters WHERE tenant_id = ? ORDER BY dead_at DESC, challenge_id LIMIT ?")
    }
}

extension DurableStore {
    /// Commits domain events with no outbox change.
    public func commit(_ events: [CoreEvent], completion: @escaping @Sendable (Result<Void, StoreError>) -> Void) {
        commit(events, outbox: [], completion: completion)
    }
}
