// The embedded store's journal: SQLite in WAL mode, written by one thread that commits every batch queued since its
// last transaction in the next one (group commit), and reports each batch durable through the caller's executor.
import CSQLite
import Core
import Foundation
import Locking
import Synchronization

/// One stored record, as `Journal.load` hands them over.
public enum StoredRecord: Sendable {
    /// How many of each follow, so that the reader can make room at once, and how many callbacks wait in the
    /// outbox (they are read as they fall due, not here).
    case sizes(devices: Int, challenges: Int, fallbacks: Int, callbacks: Int)
    case policy(tenantID: String, TenantPolicy)
    case device(Device)
    case challenge(Challenge)
    case fallback(Fallback)
    case lockout(tenantID: String, userID: String, until: UnixMillis)
    case enrollment(Enrollment)
}

/// Everything a store holds, gathered in memory.
public struct StoredState: Sendable {
    public var policies: [(tenantID: String, policy: TenantPolicy)] = []
    public var devices: [Device] = []
    /// In the order they were created.
    public var challenges: [Challenge] = []
    public var fallbacks: [Fallback] = []
    public var lockouts: [(tenantID: String, userID: String, until: UnixMillis)] = []
    /// In the order they were created.
    public var enrollments: [Enrollment] = []

    public init() {}

    mutating func add(_ record: StoredRecord) {
        switch record {
        case .sizes: break
        case .policy(let tenantID, let policy): policies.append((tenantID, policy))
        case .device(let device): devices.append(device)
        case .challenge(let challenge): challenges.append(challenge)
        case .fallback(let fallback): fallbacks.append(fallback)
        case .lockout(let tenantID, let userID, let until): lockouts.append((tenantID, userID, until))
        case .enrollment(let enrollment): enrollments.append(enrollment)
        }
    }
}

/// Where the embedded store makes its changes durable and reads them back at start.
public protocol Journal: AnyObject, Sendable {
    /// Hands over every stored record, one at a time so that a million need not sit in memory twice: first their
    /// `sizes`, then policies, devices, challenges in the order they were created, fallbacks, lockouts and enrollments
    /// in the order they were created. Called
    /// once at start, before the first commit.
    func load(_ each: (StoredRecord) -> Void) throws(StoreError)
    /// Makes the state changes and the outbox changes durable together. `completion` runs through
    /// the store's executor once they are committed, or with the error that prevented it.
    func commit(
        _ changes: [Change], outbox: [OutboxChange],
        completion: @escaping @Sendable (Result<Void, StoreError>) -> Void)
    /// Up to `limit` callbacks of these partitions due at `now`, in (due time, challenge id) order, after `cursor`
    /// if given (where the previous page ended), reflecting everything committed before the call.
    func dueCallbacks(
        in partitions: [Partition], now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping @Sendable (Result<DueCallbacks, StoreError>) -> Void)
    /// A tenant's dead letters, newest first, at most `limit`.
    func deadLetters(
        tenantID: String, limit: Int, completion: @escaping @Sendable (Result<[DeadLetter], StoreError>) -> Void)
    /// Puts dead letters of the tenant back in the outbox, due at `now` with no attempt made, in one transaction:
    /// the one named, or every one when `challengeID` is nil. `completion` gets how many were requeued (0: none
    /// of the tenant's by that id).
    func redrive(
        tenantID: String, challengeID: String?, now: UnixMillis,
        completion: @escaping @Sendable (Result<Int, StoreError>) -> Void)
    /// Commits what is queued, then stops the writer.
    func close()
}

public final class SQLiteJournal: Journal, @unchecked Sendable {
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
    public static let schemaVersion = 7

    /// Transactions committed since opening: fewer than batches when group commit folds them together.
    public var transactionsCommitted: Int { transactions.load(ordering: .relaxed) }

    private struct Batch {
        let changes: [Change]
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
            for step in Int(version)..<schemaVersion { try migrate(database, from: step) }
            try database.execute("PRAGMA user_version = \(schemaVersion)")
            try database.execute("COMMIT")
        } catch {
            try? database.execute("ROLLBACK")
            throw error
        }
    }

    /// Takes schema `step` to `step + 1`.
    private static func migrate(_ database: SQLiteDatabase, from step: Int) throws(StoreError) {
        if step < tableMigrations.count { return try database.execute(tableMigrations[step]) }
        if step == 6 {
            // 6 → 7: a CIBA challenge's bearer token, and its callback's (API.md, "Keycloak CIBA authentication
            // channel"); none for all before.
            return try database.execute(
                """
                ALTER TABLE challenges ADD COLUMN channel_token TEXT;
                ALTER TABLE outbox ADD COLUMN bearer_token TEXT;
                ALTER TABLE dead_letters ADD COLUMN bearer_token TEXT;
                """)
        }
        if step == 5 {
            // 5 → 6: where each challenge's result goes (ResultChannel.storedCode; 0, the verifier, for all before).
            return try database.execute("ALTER TABLE challenges ADD COLUMN channel INTEGER NOT NULL DEFAULT 0;")
        }
        if step == 4 {
            // 4 → 5: enrollments, with the SHA-256 of their activation codes (never the codes).
            return try database.execute(
                """
                CREATE TABLE enrollments (
                    enrollment_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, user_id TEXT NOT NULL,
                    display_name TEXT NOT NULL, mam_restricted INTEGER NOT NULL, ttl_seconds INTEGER NOT NULL,
                    code_hash BLOB NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
                    status TEXT NOT NULL, device_id TEXT, ended_at INTEGER);
                """)
        }
        if step == 3 {
            // 3 → 4: challenges and their callbacks keep the create's traceparent (none for those before).
            return try database.execute(
                """
                ALTER TABLE challenges ADD COLUMN traceparent TEXT;
                ALTER TABLE outbox ADD COLUMN traceparent TEXT;
                ALTER TABLE dead_letters ADD COLUMN traceparent TEXT;
                """)
        }
        // 2 → 3: each callback keeps its user's partition, read from the body it is sent with (every body names
        // its tenant and user).
        try database.execute(
            """
            ALTER TABLE outbox ADD COLUMN user_partition INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE dead_letters ADD COLUMN user_partition INTEGER NOT NULL DEFAULT 0;
            """)
        for table in ["outbox", "dead_letters"] {
            var partitions: [(challengeID: String, partition: Partition)] = []
            try database.prepare("SELECT challenge_id, body FROM \(table)").query { row throws(StoreError) in
                partitions.append((row.text(0), try Codec.partition(ofCallback: row.text(1), in: "\(table).body")))
            }
            let update = try database.prepare("UPDATE \(table) SET user_partition = ? WHERE challenge_id = ?")
            for (challengeID, partition) in partitions {
                try update.run([.integer(Int64(partition.index)), .text(challengeID)])
            }
        }
    }

    /// Steps that only add tables: step N takes schema N to N + 1.
    private static let tableMigrations = [
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
        // Inserted when created, updated in place when ended: rowid order is creation order.
        try reader.prepare("SELECT * FROM enrollments ORDER BY rowid").query { row throws(StoreError) in
            each(.enrollment(try Codec.enrollment(row)))
        }
    }

    // MARK: Writing

    public func commit(
        _ changes: [Change], outbox: [OutboxChange],
        completion: @escaping @Sendable (Result<Void, StoreError>) -> Void
    ) {
        submit({ $0.batches.append(Batch(changes: changes, outbox: outbox, completion: completion)) }) {
            completion(.failure(StoreError("the store is closed")))
        }
    }

    public func dueCallbacks(
        in partitions: [Partition], now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping @Sendable (Result<DueCallbacks, StoreError>) -> Void
    ) {
        // Every partition (a store of its own): no filter. Some: their indexes as a JSON array for `json_each`.
        let every = partitions.count >= Partition.count && Set(partitions).count == Partition.count
        let only =
            every ? [] : [Statement.Value.text("[" + partitions.map { String($0.index) }.joined(separator: ",") + "]")]
        read(completion) { statements throws(StoreError) in
            var due = DueCallbacks(entries: [], nextDueAt: nil)
            let from = cursor ?? OutboxCursor(dueAt: .min, challengeID: "")
            let page: [Statement.Value] = [
                .integer(from.dueAt), .text(from.challengeID), .integer(now), .integer(Int64(limit)),
            ]
            try (every ? statements.dueCallbacks : statements.dueCallbacksIn).query(page + only) {
                row throws(StoreError) in due.entries.append(try Codec.outboxEntry(row))
            }
            try (every ? statements.nextDue : statements.nextDueIn).query([.integer(now)] + only) { row in
                due.nextDueAt = row.optionalInteger(0)
            }
            return due
        }
    }

    public func deadLetters(
        tenantID: String, limit: Int, completion: @escaping @Sendable (Result<[DeadLetter], StoreError>) -> Void
    ) {
        read(completion) { statements throws(StoreError) in
            var letters: [DeadLetter] = []
            try statements.deadLetters.query([.text(tenantID), .integer(Int64(limit))]) { row throws(StoreError) in
                letters.append(try Codec.deadLetter(row))
            }
            return letters
        }
    }

    public func redrive(
        tenantID: String, challengeID: String?, now: UnixMillis,
        completion: @escaping @Sendable (Result<Int, StoreError>) -> Void
    ) {
        read(completion) { statements throws(StoreError) in
            try statements.begin.run([])
            do throws(StoreError) {
                let (requeue, delete) =
                    challengeID == nil
                    ? (statements.requeueDeadLetters, statements.deleteDeadLetters)
                    : (statements.requeueDeadLetter, statements.deleteDeadLetter)
                let named: [Statement.Value] = [.text(tenantID)] + (challengeID.map { [.text($0)] } ?? [])
                try requeue.run([.integer(now)] + named)
                let requeued = requeue.changes
                try delete.run(named)
                try statements.commit.run([])
                return requeued
            } catch {
                try? statements.rollback.run([])
                throw error
            }
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
                    for change in batch.changes { try apply(change) }
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

    private func apply(_ change: Change) throws(StoreError) {
        switch change {
        case .policySaved(let tenantID, let policy): try statements.upsertPolicy.run(Codec.values(policy, tenantID))
        case .deviceSaved(let device), .deviceUpdated(let device): try statements.upsertDevice.run(Codec.values(device))
        case .deviceRemoved(let device): try statements.deleteDevice.run([.text(device.id)])
        case .challengeSaved(let challenge): try statements.upsertChallenge.run(Codec.values(challenge))
        case .fallbackSaved(let fallback): try statements.upsertFallback.run(Codec.values(fallback))
        case .lockoutSaved(let user, let until):
            try statements.upsertLockout.run([.text(user.tenantID), .text(user.userID), .integer(until)])
        case .forgotten(let request, let challengeID):
            if let challengeID { try statements.deleteChallenge.run([.text(challengeID)]) }
            try statements.deleteFallback.run([.text(request.tenantID), .text(request.requestID)])
        case .resultDue, .fallbackResultDue:
            break  // the caller hands the callback over as an outbox change
        case .enrollmentSaved(let enrollment): try statements.upsertEnrollment.run(Codec.values(enrollment))
        case .enrollmentForgotten(let enrollment): try statements.deleteEnrollment.run([.text(enrollment.id)])
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
    let upsertEnrollment, deleteEnrollment: Statement
    let enqueueCallback, deleteCallback, retryCallback, insertDeadLetter, deadLetters: Statement
    /// A dead letter, or all of a tenant's, back into the outbox.
    let requeueDeadLetter, deleteDeadLetter, requeueDeadLetters, deleteDeadLetters: Statement
    /// Due callbacks and the next due time, of every partition and of the partitions a JSON array names.
    let dueCallbacks, dueCallbacksIn, nextDue, nextDueIn: Statement

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
            INSERT INTO challenges VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
            ON CONFLICT (challenge_id) DO UPDATE SET status = excluded.status, reason = excluded.reason,
                answered_by = excluded.answered_by, decision = excluded.decision,
                selected_number = excluded.selected_number, deny_reason = excluded.deny_reason,
                signed_at_unix = excluded.signed_at_unix, signature = excluded.signature,
                resolved_at = excluded.resolved_at, channel = excluded.channel,
                channel_token = excluded.channel_token
            """)
        deleteChallenge = try database.prepare("DELETE FROM challenges WHERE challenge_id = ?")
        upsertFallback = try database.prepare("INSERT OR REPLACE INTO fallbacks VALUES (?,?,?,?,?,?,?,?)")
        deleteFallback = try database.prepare("DELETE FROM fallbacks WHERE tenant_id = ? AND request_id = ?")
        upsertLockout = try database.prepare("INSERT OR REPLACE INTO lockouts VALUES (?,?,?)")
        upsertEnrollment = try database.prepare(
            """
            INSERT INTO enrollments VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
            ON CONFLICT (enrollment_id) DO UPDATE SET status = excluded.status, device_id = excluded.device_id,
                ended_at = excluded.ended_at
            """)
        deleteEnrollment = try database.prepare("DELETE FROM enrollments WHERE enrollment_id = ?")
        enqueueCallback = try database.prepare("INSERT OR IGNORE INTO outbox VALUES (?,?,?,?,?,?,?,?,?)")
        deleteCallback = try database.prepare("DELETE FROM outbox WHERE challenge_id = ?")
        retryCallback = try database.prepare(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ? WHERE challenge_id = ?")
        insertDeadLetter = try database.prepare(
            "INSERT OR REPLACE INTO dead_letters VALUES (?,?,?,?,?,?,?,?,?,?,?)")
        // The partition filter is applied to the rows the due index yields: a store of its own serves every
        // partition, and an index per partition would cost each callback's insert and delete for nothing.
        let due = "(next_attempt_at, challenge_id) > (?1, ?2) AND next_attempt_at <= ?3"
        let inPartitions = "user_partition IN (SELECT value FROM json_each(?5))"
        let page = "ORDER BY next_attempt_at, challenge_id LIMIT ?4"
        dueCallbacks = try database.prepare("SELECT * FROM outbox WHERE \(due) \(page)")
        dueCallbacksIn = try database.prepare("SELECT * FROM outbox WHERE \(due) AND \(inPartitions) \(page)")
        nextDue = try database.prepare("SELECT min(next_attempt_at) FROM outbox WHERE next_attempt_at > ?1")
        nextDueIn = try database.prepare(
            "SELECT min(next_attempt_at) FROM outbox WHERE next_attempt_at > ?1 AND user_partition IN (SELECT value FROM json_each(?2))"
        )
        deadLetters = try database.prepare(
            "SELECT * FROM dead_letters WHERE tenant_id = ? ORDER BY dead_at DESC, challenge_id LIMIT ?")
        // A callback of that id already in the outbox (a redrive repeated) stays as it is.
        let requeue = """
            INSERT OR IGNORE INTO outbox
                (challenge_id, tenant_id, body, ended_at, attempts, next_attempt_at, user_partition, traceparent,
                bearer_token)
            SELECT challenge_id, tenant_id, body, ended_at, 0, ?1, user_partition, traceparent, bearer_token
            FROM dead_letters
            WHERE tenant_id = ?2
            """
        requeueDeadLetter = try database.prepare(requeue + " AND challenge_id = ?3")
        deleteDeadLetter = try database.prepare("DELETE FROM dead_letters WHERE tenant_id = ? AND challenge_id = ?")
        requeueDeadLetters = try database.prepare(requeue)
        deleteDeadLetters = try database.prepare("DELETE FROM dead_letters WHERE tenant_id = ?")
    }
}

extension Journal {
    /// Everything the journal holds, gathered in memory (for small stores and for tests).
    public func load() throws(StoreError) -> StoredState {
        var state = StoredState()
        try load { state.add($0) }
        return state
    }

    /// Commits state changes with no outbox change.
    public func commit(_ changes: [Change], completion: @escaping @Sendable (Result<Void, StoreError>) -> Void) {
        commit(changes, outbox: [], completion: completion)
    }
}
