// Where a Redis server is and how to log in to it: `redis://[[user]:password@]host[:port][/db]`.

public struct RedisURL: Equatable, Sendable, CustomStringConvertible {
    public let host: String
    public let port: Int
    /// For `AUTH`: with a user name (Redis 6 ACLs) or, as `redis://:password@…`, without one.
    public let user: String?
    public let password: String?
    /// For `SELECT`: 0 unless the path names another.
    public let database: Int

    public static let defaultPort = 6379

    public init(parsing text: String) throws(RedisError) {
        guard text.hasPrefix("redis://") else { throw .invalidURL("\(Self.masked(text)) does not start with redis://") }
        var rest = Substring(text.dropFirst("redis://".count))
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard let number = Int(path), (0...10_000).contains(number) else {
                    throw .invalidURL("\(Self.masked(text)): the database must be a number, not \(path)")
                }
                database = number
            }
        }
        var user: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            guard let colon = credentials.firstIndex(of: ":") else {
                throw .invalidURL("\(Self.masked(text)): credentials must be :password or user:password")
            }
            let name = credentials[..<colon]
            user = name.isEmpty ? nil : try Self.percentDecoded(name, in: text)
            password = try Self.percentDecoded(credentials[credentials.index(after: colon)...], in: text)
        }
        var host = rest
        var port = Self.defaultPort
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw .invalidURL("\(Self.masked(text)): unclosed [") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .invalidURL("\(Self.masked(text)): junk after ]") }
                port = try Self.port(after.dropFirst(), in: text)
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            port = try Self.port(rest[rest.index(after: colon)...], in: text)
        }
        guard !host.isEmpty else { throw .invalidURL("\(Self.masked(text)) names no host") }
        self.host = String(host)
        self.port = port
        self.user = user
        self.password = password
        self.database = database
    }

    /// The URL with its password masked, for logs and errors.
    public var description: String {
        let credentials = password.map { _ in "\(user ?? ""):***@" } ?? ""
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "redis://\(credentials)\(shownHost):\(port)/\(database)"
    }

    private static func port(_ text: Substring, in url: String) throws(RedisError) -> Int {
        guard let port = Int(text), (1...65_535).contains(port) else {
            throw .invalidURL("\(masked(url)): the port must be 1-65535, not \(text)")
        }
        return port
    }

    private static func percentDecoded(_ text: Substring, in url: String) throws(RedisError) -> String {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw .invalidURL("\(masked(url)): a % in the credentials is not followed by two hex digits")
            }
            bytes.append(high << 4 | low)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// A URL as text with whatever stands between `//` and `@` masked: errors about a URL never show its password.
    static func masked(_ text: String) -> String {
        guard let start = text.range(of: "://"), let at = text.lastIndex(of: "@"), at > start.upperBound else {
            return text
        }
        return text[..<start.upperBound] + "***" + text[at...]
    }
}
