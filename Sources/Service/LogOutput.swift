// Where and how log lines are written: swift-log's text lines, or one JSON object per line for a log shipper, on
// standard error either way.
import Foundation
import JSONText
import Locking
import Logging

/// How log lines are written (`[log] format`).
public enum LogFormat: String, Sendable, CaseIterable {
    /// `<time> <level> <label>: <fields> <message>`, for a terminal.
    case text
    /// One JSON object per line, for a log shipper.
    case json
}

public enum LogOutput {
    /// Sets up the process's logging once, before any logger is made.
    public static func bootstrap(format: LogFormat, level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler(label: label, write: writeStandardError)
                handler.logLevel = level
                return handler
            }
        }
    }

    /// One write(2) per line under a lock: lines from the loop and the store's threads never interleave.
    private static let standardError = Locked(())
    static func writeStandardError(_ line: String) {
        standardError.withLock { _ in
            var line = line
            line.withUTF8 { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = write(STDERR_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
                    if written <= 0 { return }
                    offset += written
                }
            }
        }
    }
}

/// `{"ts":"2026-12-03T11:45:34.123Z","level":"info","msg":"…","logger":"approvald",…}`: the time in RFC 3339 (UTC,
/// milliseconds), then the message, then the logger's and the line's metadata as fields (the line's win), in key
/// order; integers and finite doubles given as `.stringConvertible` are JSON numbers. A field named like one of the
/// four is written with a `field.` prefix instead of replacing it.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let write: @Sendable (String) -> Void

    public init(label: String, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let explicit = event.metadata { fields.merge(explicit) { _, new in new } }
        var timestamps = LogTimestamps()
        var json = JSONWriter()
        json.string("ts", timestamps.now())
        json.string("level", event.level.rawValue)
        json.string("msg", event.message.description)
        json.string("logger", label)
        let named = fields.map { key, value in
            (name: ["ts", "level", "msg", "logger"].contains(key) ? "field.\(key)" : key, value: value)
        }
        for (name, value) in named.sorted(by: { $0.name < $1.name }) {
            json.raw(named: name, Self.json(value))
        }
        write(json.finished() + "\n")
    }

    private static func json(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let string): jsonString(string)
        case .stringConvertible(let number as Int): String(number)
        case .stringConvertible(let number as Double) where number.isFinite: String(number)
        case .stringConvertible(let convertible): jsonString(convertible.description)
        case .array(let values): "[" + values.map(json).joined(separator: ",") + "]"
        case .dictionary(let entries):
            JSONWriter.object { object in
                for (key, value) in entries.sorted(by: { $0.key < $1.key }) { object.raw(named: key, json(value)) }
            }
        }
    }
}

/// Log times in RFC 3339, UTC, to the millisecond (`2026-12-03T11:45:34.123Z`). The part up to the seconds is made
/// once a second: the access log writes one per request.
struct LogTimestamps {
    private var second = Int.min
    private var prefix = ""

    /// Now, to the millisecond: `2026-12-03T11:45:34.123Z`.
    mutating func now() -> String {
        let now = clockNow()
        return prefix + "." + Self.padded(now.tv_nsec / 1_000_000, 3) + "Z"
    }

    /// Now, to the second, as swift-log's text lines write it (in UTC): `2026-12-03T11:45:34+0000`.
    mutating func nowToTheSecond() -> String {
        _ = clockNow()
        return prefix + "+0000"
    }

    private mutating func clockNow() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        if now.tv_sec != second {
            second = now.tv_sec
            prefix = Self.prefix(of: now.tv_sec)
        }
        return now
    }

    /// `2026-12-03T11:45:34` for a Unix time.
    private static func prefix(of unixSeconds: Int) -> String {
        var seconds = unixSeconds
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return "\(padded(Int(parts.tm_year) + 1900, 4))-\(padded(Int(parts.tm_mon) + 1, 2))-"
            + "\(padded(Int(parts.tm_mday), 2))T\(padded(Int(parts.tm_hour), 2)):\(padded(Int(parts.tm_min), 2)):"
            + "\(padded(Int(parts.tm_sec), 2))"
    }

    /// `value` in decimal with leading zeros to `width` digits.
    static func padded(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}
