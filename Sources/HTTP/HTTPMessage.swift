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
/// (`HTTPServer.earlyRefusal`); HTTP knows nothing of the API's error format.
public enum EarlyRefusal: Equatable, Sendable {
    /// The body, declared or received, is larger than the limit: 413.
    case bodyTooLarge(limit: Int)
    /// The header block is larger than the limit: 431.
    case headerBlockTooLarge(limit: Int)
    /// HTTP/1.1 the server does not accept (RFC 9112's strict rules): 400, and the connection closes.
    case malformed(String)
    /// The request did not arrive within the request timeout: 408, and the connection closes.
    case requestTimeout(seconds: Double)
    /// An HTTP version other than 1.0 and 1.1 in an HTTP/1.x request line: 505.
    case versionNotSupported
    /// An `Expect` other than `100-continue`: 417.
    case expectationFailed

    /// The status code of the answer.
    public var status: Int {
        switch self {
        case .bodyTooLarge: 413
        case .headerBlockTooLarge: 431
        case .malformed: 400
        case .requestTimeout: 408
        case .versionNotSupported: 505
        case .expectationFailed: 417
        }
    }

    /// What went wrong, in a sentence.
    public var detail: String {
        switch self {
        case .bodyTooLarge(let limit): "the request body is larger than \(limit) bytes"
        case .headerBlockTooLarge(let limit): "the header block is larger than \(limit) bytes"
        case .malformed(let why): "malformed HTTP/1.1 request: \(why)"
        case .requestTimeout(let seconds): "the request did not arrive within \(seconds) s"
        case .versionNotSupported: "HTTP/1.0, HTTP/1.1 and HTTP/2 are served"
        case .expectationFailed: "only Expect: 100-continue is supported"
        }
    }

    /// A plain-text answer, for servers whose owner says nothing else.
    public var plainResponse: HTTPResponse { .text(status, detail + "\n") }
}
