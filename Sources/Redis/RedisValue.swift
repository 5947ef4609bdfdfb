// Replies as Swift values, and the client's errors.
import CHiredis

/// One reply of the RESP2 protocol.
public enum RedisValue: Equatable, Sendable {
    /// `+OK` and other simple strings.
    case status(String)
    /// An error reply (`-ERR …`, `-WRONGTYPE …`): the command ran and was refused.
    case error(String)
    case integer(Int64)
    case bulk([UInt8])
    case null
    case array([RedisValue])

    /// A copy of hiredis's reply, which is freed once its callback returns.
    init(reply: UnsafePointer<redisReply>) {
        let value = reply.pointee
        func text() -> String {
            guard let bytes = value.str else { return "" }
            return String(decoding: UnsafeRawBufferPointer(start: bytes, count: value.len), as: UTF8.self)
        }
        switch Int32(value.type) {
        case REDIS_REPLY_STATUS: self = .status(text())
        case REDIS_REPLY_ERROR: self = .error(text())
        case REDIS_REPLY_INTEGER: self = .integer(value.integer)
        case REDIS_REPLY_STRING:
            self = .bulk(value.str.map { Array(UnsafeRawBufferPointer(start: $0, count: value.len)) } ?? [])
        case REDIS_REPLY_ARRAY:
            self = .array(
                (0..<value.elements).compactMap { index in value.element[index].map { RedisValue(reply: $0) } })
        default: self = .null
        }
    }

    /// A bulk or status reply as text.
    public var string: String? {
        switch self {
        case .bulk(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        default: nil
        }
    }
}

public enum RedisError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The configured URL does not parse.
    case invalidURL(String)
    /// No connection to send on (connecting, reconnecting), or it was lost before the reply came.
    case unavailable(String)
    /// No reply within the command timeout; the connection was dropped, since later replies would be out of step.
    case timedOut(seconds: Double)
    /// The client was closed.
    case closed

    public var description: String {
        switch self {
        case .invalidURL(let why): "invalid Redis URL: \(why)"
        case .unavailable(let why): "Redis unavailable: \(why)"
        case .timedOut(let seconds): "Redis did not reply within \(seconds) s"
        case .closed: "the Redis client is closed"
        }
    }
}
