// What HTTP/1.1 writes: a server's status lines and header blocks, chunks of a streamed body, `100 Continue`;
// a client's request heads.

enum HTTP1Wire {
    /// How the body's end is known.
    enum Framing: Equatable {
        /// `content-length` (the whole body is known).
        case contentLength(Int)
        /// `transfer-encoding: chunked` (a body streamed over time).
        case chunked
        /// The body ends when the connection closes (a body streamed over time to an HTTP/1.0 client, which does
        /// not know chunks).
        case untilClose
        /// No body at all (1xx, 204, 304).
        case none
    }

    static let continueResponse: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
    static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)

    /// Statuses whose responses carry neither a body nor its length (RFC 9110 §8.6, §15.3.5).
    static func hasNoContent(_ status: Int) -> Bool {
        (100..<200).contains(status) || status == 204 || status == 304
    }

    /// The status line and header block. The framing and connection fields are the server's: a handler's own
    /// `content-length`, `transfer-encoding`, `connection` or `host` is left out, and so is any field whose name or
    /// value could split the response (CR, LF or NUL in it, or an empty name).
    /// `reserving` makes room for that many more bytes after the head (the body the caller appends).
    static func head(
        status: Int, headers: HTTPHeaders, framing: Framing, keepAlive: Bool, reserving extra: Int = 0
    ) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(128 + headers.count * 48 + extra)
        if let line = statusLines[status] {
            bytes.append(contentsOf: line)
        } else {
            bytes.append(contentsOf: "HTTP/1.1 \(status) \(HTTPStatus.reasonPhrase(status))\r\n".utf8)
        }
        appendFields(headers, to: &bytes)
        switch framing {
        case .contentLength(let length): bytes.append(contentsOf: "content-length: \(length)\r\n".utf8)
        case .chunked: bytes.append(contentsOf: "transfer-encoding: chunked\r\n".utf8)
        case .untilClose, .none: break
        }
        if !keepAlive { bytes.append(contentsOf: "connection: close\r\n".utf8) }
        bytes.append(contentsOf: "\r\n".utf8)
        return bytes
    }

    /// A client's request line and header block: `Host`, the handler's fields (those that could split the request,
    /// and framing or connection fields, left out), and the body's length.
    static func requestHead(
        method: String, path: String, authority: String, headers: HTTPHeaders, contentLength: Int
    ) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(128 + headers.count * 48)
        bytes.append(contentsOf: "\(method) \(path) HTTP/1.1\r\nhost: \(authority)\r\n".utf8)
        appendFields(headers, to: &bytes)
        if contentLength > 0 || method == "POST" || method == "PUT" || method == "PATCH" {
            bytes.append(contentsOf: "content-length: \(contentLength)\r\n".utf8)
        }
        bytes.append(contentsOf: "\r\n".utf8)
        return bytes
    }

    /// One chunk of a chunked body: its size in hex, the bytes, CRLF.
    static func chunk(_ data: [UInt8]) -> [UInt8] {
        var bytes = Array(String(data.count, radix: 16).utf8)
        bytes.reserveCapacity(bytes.count + data.count + 4)
        bytes.append(contentsOf: "\r\n".utf8)
        bytes.append(contentsOf: data)
        bytes.append(contentsOf: "\r\n".utf8)
        return bytes
    }

    private static func appendFields(_ headers: HTTPHeaders, to bytes: inout [UInt8]) {
        headers.forEachField { name, value in
            guard isSafe(name: name, value: value) else { return true }
            bytes.append(contentsOf: name)
            bytes.append(contentsOf: ": ".utf8)
            bytes.append(contentsOf: value)
            bytes.append(contentsOf: "\r\n".utf8)
            return true
        }
    }

    /// Fields the wire format writes itself.
    private static let framingFields: [[UInt8]] = ["content-length", "transfer-encoding", "connection", "host"].map {
        Array($0.utf8)
    }

    /// The status lines of the statuses with a reason phrase, made once.
    private static let statusLines: [Int: [UInt8]] = Dictionary(
        uniqueKeysWithValues: (100..<600).compactMap { status in
            let phrase = HTTPStatus.reasonPhrase(status)
            return phrase.hasSuffix("Error") || ["Informational", "Success", "Redirection"].contains(phrase)
                ? nil : (status, Array("HTTP/1.1 \(status) \(phrase)\r\n".utf8))
        })

    private static func isSafe(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool {
        guard !name.isEmpty else { return false }
        for byte in name where byte <= 0x20 || byte >= 0x7f || byte == UInt8(ascii: ":") { return false }
        for byte in value where byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n") || byte == 0 { return false }
        switch name.count {
        case 4, 10, 14, 17: return !framingFields.contains { $0.elementsEqual(name) }
        default: return true
        }
    }
}
