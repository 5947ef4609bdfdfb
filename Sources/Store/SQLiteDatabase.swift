// A thin layer over SQLite's C API: a connection, prepared statements, typed binds and columns.
import CSQLite
import CSQLitePageCache

public struct StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One SQLite connection. Not thread-safe: the store uses it from its writer thread only (and from the opening
/// thread before that starts).
final class SQLiteDatabase {
    private var handle: OpaquePointer?
    let path: String

    /// Whether SQLite's page cache is wrapped (CSQLitePageCache): installed once, before the first connection
    /// opens, which is when SQLite still takes a new page cache.
    static let pageCacheWrapped = approvald_sqlite_wrap_page_cache() == 1

    /// The page cache truncations the wrapper skipped, having nothing to drop, and those it passed on.
    static var pageCacheTruncations: (skipped: UInt64, passed: UInt64) {
        var skipped: UInt64 = 0
        var passed: UInt64 = 0
        approvald_sqlite_page_cache_truncations(&skipped, &passed)
        return (skipped, passed)
    }

    init(path: String) throws(StoreError) {
        self.path = path
        _ = Self.pageCacheWrapped
        var opened: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let status = sqlite3_open_v2(path, &opened, flags, nil)
        guard status == SQLITE_OK, let opened else {
            let message = opened.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(status))
            sqlite3_close(opened)
            throw StoreError("cannot open \(path): \(message)")
        }
        handle = opened
    }

    deinit { sqlite3_close(handle) }

    /// Runs SQL that returns no rows (schema, pragmas, BEGIN/COMMIT).
    func execute(_ sql: String) throws(StoreError) {
        var message: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &message) == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? "unknown error"
            sqlite3_free(message)
            throw StoreError("\(path): \(text) in \(sql.prefix(80))")
        }
    }

    /// Rows the last statement inserted, updated or deleted.
    var changes: Int { Int(sqlite3_changes(handle)) }

    func prepare(_ sql: String) throws(StoreError) -> Statement {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw StoreError("\(path): \(lastError) in \(sql.prefix(80))")
        }
        return Statement(database: self, statement: statement)
    }

    var lastError: String { String(cString: sqlite3_errmsg(handle)) }
}

/// A prepared statement, reset after each use.
final class Statement {
    private unowned let database: SQLiteDatabase
    private let statement: OpaquePointer

    init(database: SQLiteDatabase, statement: OpaquePointer) {
        self.database = database
        self.statement = statement
    }

    deinit { sqlite3_finalize(statement) }

    /// The values to bind, in order of the statement's `?` parameters.
    enum Value {
        case integer(Int64)
        case text(String)
        case blob([UInt8])
        case null
    }

    /// Rows the last run of this statement inserted, updated or deleted (read before the connection runs another).
    var changes: Int { database.changes }

    /// Binds, steps to completion, resets.
    func run(_ values: [Value]) throws(StoreError) {
        try withBindings(values) { () throws(StoreError) in
            guard sqlite3_step(statement) == SQLITE_DONE else {
                throw StoreError("\(database.path): \(database.lastError)")
            }
        }
    }

    /// Binds, calls `row` for each result row, resets.
    func query(_ values: [Value] = [], _ row: (Row) throws(StoreError) -> Void) throws(StoreError) {
        try withBindings(values) { () throws(StoreError) in
            while true {
                switch sqlite3_step(statement) {
                case SQLITE_ROW: try row(Row(statement: statement))
                case SQLITE_DONE: return
                default: throw StoreError("\(database.path): \(database.lastError)")
                }
            }
        }
    }

    /// Binds `values`, runs `body` (which steps the statement), then resets it and clears the bindings. Text and
    /// blobs are bound where Swift keeps their bytes (SQLITE_STATIC) rather than copied into memory SQLite allocates
    /// for each: the bytes stay put until `body` has returned, and no binding outlives that.
    private func withBindings(_ values: [Value], _ body: () throws(StoreError) -> Void) throws(StoreError) {
        // Every binding is cleared when its use ends (below), so a statement comes here with none.
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        try bind(values[...], at: 1, then: body)
    }

    /// Binds the first of `values` at parameter `index`, then the others after it, then runs `body`, each nested
    /// in the scope of the bytes the one before it points at.
    private func bind(
        _ values: ArraySlice<Value>, at index: Int32, then body: () throws(StoreError) -> Void
    ) throws(StoreError) {
        guard let value = values.first else { return try body() }
        let rest = values.dropFirst()
        func bound(_ status: Int32) throws(StoreError) {
            guard status == SQLITE_OK else { throw StoreError("\(database.path): \(database.lastError)") }
            try bind(rest, at: index + 1, then: body)
        }
        var failure: StoreError?
        switch value {
        case .integer(let number): try bound(sqlite3_bind_int64(statement, index, number))
        case .null: try bound(sqlite3_bind_null(statement, index))
        case .text(var text):
            text.withUTF8 { utf8 in
                do throws(StoreError) {
                    // An empty string is bound as empty text, not as the NULL a nil pointer would make.
                    let start = utf8.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) }
                    try bound(sqlite3_bind_text(statement, index, start ?? Self.emptyText, Int32(utf8.count), nil))
                } catch {
                    failure = error
                }
            }
        case .blob(let bytes):
            bytes.withUnsafeBytes { raw in
                do throws(StoreError) {
                    try bound(sqlite3_bind_blob(statement, index, raw.baseAddress, Int32(raw.count), nil))
                } catch {
                    failure = error
                }
            }
        }
        if let failure { throw failure }
    }

    /// A C string of no characters in the binary's constants, for binding empty text without a copy.
    private static var emptyText: UnsafePointer<CChar> {
        UnsafeRawPointer(("" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
    }
}

/// One result row; columns by index.
struct Row {
    let statement: OpaquePointer

    func integer(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

    func optionalInteger(_ column: Int32) -> Int64? {
        sqlite3_column_type(statement, column) == SQLITE_NULL ? nil : integer(column)
    }

    func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(statement, column) else { return "" }
        let count = Int(sqlite3_column_bytes(statement, column))
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }

    func optionalText(_ column: Int32) -> String? {
        sqlite3_column_type(statement, column) == SQLITE_NULL ? nil : text(column)
    }

    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(statement, column))
        guard count > 0, let bytes = sqlite3_column_blob(statement, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: count))
    }
}
