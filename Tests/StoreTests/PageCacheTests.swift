// The page cache wrapper (CSQLitePageCache): commits whose b-tree balances renumbered pages skip their truncation,
// a rollback of a transaction that grew the database passes its truncation on, and the database stays whole.
import Foundation
import Testing

@testable import Store

@Suite struct PageCacheTests {
    /// A fresh database in WAL mode, as the journal opens it (without fsyncs, which these tests do not need).
    private static func database() throws -> (SQLiteDatabase, String) {
        let directory = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let database = try SQLiteDatabase(path: directory + "/cache.sqlite3")
        try database.execute("PRAGMA journal_mode = WAL")
        try database.execute("PRAGMA synchronous = OFF")
        try database.execute("CREATE TABLE rows (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        try database.execute("CREATE INDEX rows_by_value ON rows (value)")
        return (database, directory)
    }

    /// Distinct keys in an order that scatters them over the index (a bijective mix of the counter).
    private static func key(_ index: UInt64) -> String {
        var mixed = index &* 0x9E37_79B9_7F4A_7C15
        mixed ^= mixed >> 29
        return String(mixed, radix: 16)
    }

    private static func integrity(_ database: SQLiteDatabase) throws -> String {
        var result = ""
        try database.prepare("PRAGMA integrity_check").query { row in result = row.text(0) }
        return result
    }

    private static func count(_ database: SQLiteDatabase, _ sql: String) throws -> Int64 {
        var count: Int64 = -1
        try database.prepare(sql).query { row in count = row.integer(0) }
        return count
    }

    @Test func insertsAndDeletesThatRebalanceKeepTheDatabaseWholeAndSkipTheirTruncations() throws {
        #expect(SQLiteDatabase.pageCacheWrapped)
        let (database, directory) = try Self.database()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let insert = try database.prepare("INSERT INTO rows VALUES (?, ?)")
        let delete = try database.prepare("DELETE FROM rows WHERE key = ?")
        let before = SQLiteDatabase.pageCacheTruncations
        var next: UInt64 = 0
        var oldest: UInt64 = 0
        let transactions = 300
        for _ in 0..<transactions {
            try database.execute("BEGIN")
            for _ in 0..<30 {
                try insert.run([.text(Self.key(next)), .text(String(repeating: "v", count: 40 + Int(next % 200)))])
                next += 1
            }
            while next - oldest > 2000 {
                try delete.run([.text(Self.key(oldest))])
                oldest += 1
            }
            try database.execute("COMMIT")
        }
        let after = SQLiteDatabase.pageCacheTruncations
        #expect(try Self.integrity(database) == "ok")
        #expect(try Self.count(database, "SELECT count(*) FROM rows") == Int64(next - oldest))
        // Other tests' connections may count too, so only the least this one's commits add is certain.
        #expect(after.skipped - before.skipped >= UInt64(transactions / 2))
    }

    @Test func aRollbackOfATransactionThatGrewTheDatabasePassesItsTruncationOn() throws {
        let (database, directory) = try Self.database()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let insert = try database.prepare("INSERT INTO rows VALUES (?, ?)")
        try database.execute("BEGIN")
        for index in 0..<200 as Range<UInt64> { try insert.run([.text(Self.key(index)), .text("kept")]) }
        try database.execute("COMMIT")
        let before = SQLiteDatabase.pageCacheTruncations
        // The rolled-back rows grow the database by pages that the cache holds past its end until the truncation.
        try database.execute("BEGIN")
        for index in 1000..<4000 as Range<UInt64> {
            try insert.run([.text(Self.key(index)), .text("rolled back " + String(repeating: "a", count: 300))])
        }
        try database.execute("ROLLBACK")
        #expect(SQLiteDatabase.pageCacheTruncations.passed > before.passed)
        // Growing again reuses those page numbers.
        try database.execute("BEGIN")
        for index in 5000..<8000 as Range<UInt64> {
            try insert.run([.text(Self.key(index)), .text("grown " + String(repeating: "b", count: 300))])
        }
        try database.execute("COMMIT")
        #expect(try Self.integrity(database) == "ok")
        #expect(try Self.count(database, "SELECT count(*) FROM rows") == 3200)
        #expect(try Self.count(database, "SELECT count(*) FROM rows WHERE value LIKE 'rolled back%'") == 0)
    }
}
