// The request a handler receives and the response it gives, independent of HTTP/2 framing.

import Glibc

/// A complete request: headers and the whole body, at most the server's body limit.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path with its query string, as sent.
    public var path: String
    /// Every field as received, pseudo-header fields (`:method`, `:scheme`, `:authority`, `:path`) first.
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(
        method: String, path: String, authority: String = "", scheme: String = "http", headers: HTTPHeaders = [],
        body: [UInt8] = []
    ) {
        var fields: HTTPHeaders = [(":method", method), (":scheme", scheme)]
        if !authority.isEmpty { fields.append(":authority", authority) }
        fields.append(":path", path)
        for field in headers { fields.append(field.name, field.value) }
        self.init(method: method, path: path, fields: fields, body: body)
    }

    init(method: String, path: String, fields: HTTPHeaders, body: [UInt8]) {
        self.method = method
        self.path = path
        self.headers = fields
        self.body = body
    }

    /// `:authority`, or the `host` field, or empty.
    public var authority: String { headers[field: ":authority"] ?? headers[field: "host"] ?? "" }

    public var scheme: String { headers[field: ":scheme"] ?? "http" }

    /// The path without its query string.
    public var pathOnly: Substring {
        queryMark.map { path[..<$0] } ?? path[...]
    }

    /// The query string without `?`, empty when there is none.
    public var query: Substring {
        queryMark.map { path[path.index(after: $0)...] } ?? ""
    }

    /// Where `?` is, found with memchr over the UTF-8 bytes.
    private var queryMark: String.Index? {
        var path = path
        let offset = path.withUTF8 { bytes -> Int in
            guard let base = bytes.baseAddress, let found = memchr(base, Int32(UInt8(ascii: "?")), bytes.count) else {
                return -1
            }
            return UnsafeRawPointer(found) - UnsafeRawPointer(base)
        }
        return offset < 0 ? nil : path.utf8.index(path.utf8.startIndex, offsetBy: offset)
    }
}

/// A complete response. `content-length` is added by the server.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A plain-text response.
    public static func text(_ status: Int, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["content-type": "text/plain; charset=utf-8"], body: Array(text.utf8))
    }
}

/// A request the server answers itself, before any handler sees it. The server's owner words the answer
/// (`H2Server.earlyRefusal`); H2 knows nothing of the API's error format.
public enum EarlyRefusal: Equatable, Sendable {
    /// The body, declared or received, is larger than the limit: 413.
    case bodyTooLarge(limit: Int)
    /// The header block is larger than the limit: 431.
    case headerBlockTooLarge(limit: Int)

    /// A plain-text answer, for servers whose owner says nothing else.
    public var plainResponse: HTTPResponse {
        switch self {
        case .bodyTooLarge(let limit): .text(413, "the request body is larger than \(limit) bytes\n")
        case .headerBlockTooLarge(let limit): .text(431, "the header block is larger than \(limit) bytes\n")
        }
    }
}
