// HTTP/1.1 requests from bytes, one at a time. http-parser (Debian's libhttp-parser) reads the syntax. Debian
// builds it without HTTP_PARSER_STRICT, so what that leaves open of API.md's rules is checked here, in one place:
// obsolete line folding, a bare CR or a NUL in the head (`HeadScanner`), field names that are not tokens, the
// Transfer-Encoding and Content-Length policy, Host, Expect (`checkHead`), chunk framing (`ChunkFraming`), and the
// size of the head and of the body. No I/O: the connection feeds it bytes.
import CHTTPParser

/// A complete request head.
struct HTTP1RequestHead {
    var method: String
    /// The path with its query, as the request line sent it (absolute-form reduced to its path).
    var path: String
    /// `:method`, `:scheme` and `:path`, then every field as sent, names lowercased.
    var fields: HTTPHeaders
    /// Whether the connection may carry another request after this one's response (RFC 9112 §9.3).
    var keepAlive: Bool
    /// The client waits for `100 Continue` before it sends the body.
    var expectsContinue: Bool
    /// An HTTP/1.0 request: a body streamed to it cannot be chunked.
    var isHTTP10: Bool
}

/// Not Sendable: a parser belongs to one connection on one loop, and is never shared.
final class HTTP1RequestParser {
    enum Outcome: Equatable {
        /// Everything given was consumed; the request is not complete.
        case needMore
        /// The head is complete and passed the rules (`head`); the body, if any, follows.
        case head
        /// The request is complete (`head` and `body`); the parser waits for `nextRequest()`.
        case message
        /// The request is refused; the connection answers and closes.
        case refused(EarlyRefusal)
    }

    private enum Phase {
        case head, body, complete
    }

    /// Everything of the request being read: a new one for each request.
    private struct Reading {
        var phase = Phase.head
        var scanner = HeadScanner()
        var headBytes = 0
        var target: [UInt8] = []
        var method = ""
        var path = ""
        var fields = HTTPHeaders()
        var facts = FieldFacts()
        var framing = ChunkFraming()
        var bodyOverflowed = false
        var head: HTTP1RequestHead?
        var body: [UInt8] = []
    }

    private let parser: UnsafeMutablePointer<http_parser>
    let maxHeadBytes: Int
    let maxBodyBytes: Int
    /// `http` or `https`: the request's `:scheme`.
    let scheme: String
    private var request = Reading()
    /// Apart from `request`: completing a field, it hands the field to code that changes `request`.
    private var fieldReader = FieldReader()
    private var pausedAt: Outcome?
    /// The bytes of the current `parse` call, and the chunk data http-parser found in them (offsets into them, and
    /// whether each range ends its chunk).
    private var parsing: UnsafeBufferPointer<UInt8> = UnsafeBufferPointer(start: nil, count: 0)
    private var dataRanges: [(range: Range<Int>, endsChunk: Bool)] = []

    /// The complete head (after `.head`) and body (after `.message`).
    var head: HTTP1RequestHead? { request.head }
    var body: [UInt8] { request.body }

    init(maxHeadBytes: Int, maxBodyBytes: Int, scheme: String = "http") {
        self.maxHeadBytes = maxHeadBytes
        self.maxBodyBytes = maxBodyBytes
        self.scheme = scheme
        parser = .allocate(capacity: 1)
        http_parser_init(parser, HTTP_REQUEST)
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { parser.deallocate() }

    /// Forgets the request just completed: the parser reads the next one.
    func nextRequest() {
        http_parser_init(parser, HTTP_REQUEST)
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        request = Reading()
        fieldReader = FieldReader()
    }

    /// Parses from the start of `bytes` and says how many it consumed. It stops after a complete head and after a
    /// complete request: the caller acts on them, then calls again with what is left.
    func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> (consumed: Int, outcome: Outcome) {
        guard request.phase != .complete, let base = bytes.baseAddress, !bytes.isEmpty else { return (0, .needMore) }
        // A head is never read much past its limit: the rest waits in the connection's buffer (and the socket).
        let wasHead = request.phase == .head
        let offered = wasHead ? min(bytes.count, maxHeadBytes - request.headBytes + 1) : bytes.count
        pausedAt = nil
        parsing = UnsafeBufferPointer(start: base, count: offered)
        dataRanges.removeAll(keepingCapacity: true)
        let consumed = base.withMemoryRebound(to: CChar.self, capacity: offered) { data in
            withUnsafePointer(to: requestCallbacks) { http_parser_execute(parser, $0, data, offered) }
        }
        parsing = UnsafeBufferPointer(start: nil, count: 0)
        let error = approvald_http_errno(parser)
        if !wasHead, parser.pointee.flags & UInt32(F_CHUNKED.rawValue) != 0,
            let violation = request.framing.scan(UnsafeBufferPointer(start: base, count: consumed), data: dataRanges)
        {
            return (consumed, .refused(.malformed(violation)))
        }
        if wasHead {
            if let violation = request.scanner.scan(UnsafeBufferPointer(start: base, count: consumed)) {
                return (consumed, .refused(.malformed(violation)))
            }
            request.headBytes += consumed
            if request.phase == .head && request.headBytes > maxHeadBytes {
                return (consumed, .refused(.headerBlockTooLarge(limit: maxHeadBytes)))
            }
        }
        switch error {
        case HPE_OK:
            return (consumed, .needMore)
        case HPE_PAUSED:
            http_parser_pause(parser, 0)
            let outcome = pausedAt ?? .needMore
            if outcome == .head, let refusal = checkHead() { return (consumed, .refused(refusal)) }
            return (consumed, outcome)
        case HPE_CB_body where request.bodyOverflowed:
            return (consumed, .refused(.bodyTooLarge(limit: maxBodyBytes)))
        case HPE_HEADER_OVERFLOW:
            return (consumed, .refused(.headerBlockTooLarge(limit: maxHeadBytes)))
        default:
            return (consumed, .refused(.malformed(String(cString: http_errno_description(error)))))
        }
    }

    // MARK: The rules http-parser leaves to its user

    /// API.md's rules on a complete head: the field names, the version, Host, Transfer-Encoding against
    /// Content-Length, the declared length against the limit, Expect, the request target.
    private func checkHead() -> EarlyRefusal? {
        let facts = request.facts
        guard let head = request.head else { return .malformed("no request head") }
        guard !facts.badFieldName else { return .malformed("a field name that is not a token") }
        guard parser.pointee.http_major == 1, parser.pointee.http_minor <= 1 else { return .versionNotSupported }
        let isHTTP11 = parser.pointee.http_minor == 1
        if isHTTP11 ? facts.hosts != 1 : facts.hosts > 1 {
            return .malformed("an HTTP/1.1 request needs exactly one Host")
        }
        if facts.transferCodings > 0 {
            guard facts.contentLengths == 0 else { return .malformed("both Content-Length and Transfer-Encoding") }
            guard isHTTP11, facts.transferCodings == 1, facts.chunked else {
                return .malformed("a Transfer-Encoding other than chunked")
            }
        }
        if facts.contentLengths > 0 {
            guard facts.contentLengths == 1, let length = facts.contentLength else {
                return .malformed("a malformed or repeated Content-Length")
            }
            if length > maxBodyBytes { return .bodyTooLarge(limit: maxBodyBytes) }
        }
        if facts.expectations > 0 && !(facts.expectations == 1 && head.expectsContinue) { return .expectationFailed }
        guard head.path.first == "/" || (head.path == "*" && head.method == "OPTIONS") else {
            return .malformed("the request target is not a path")
        }
        return nil
    }

    /// `http://host/path` (absolute-form, RFC 9112 §3.2.2) becomes `/path`; any other target stays as sent.
    private static func originForm(_ target: [UInt8]) -> String {
        guard target.first != UInt8(ascii: "/") else { return String(decoding: target, as: UTF8.self) }
        for scheme in ["http://", "https://"] where target.count >= scheme.utf8.count {
            guard zip(target, scheme.utf8).allSatisfy({ $0 | 0x20 == $1 | 0x20 }) else { continue }
            let rest = target.dropFirst(scheme.utf8.count)
            guard let slash = rest.firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") }) else {
                return "/"
            }
            let path = String(decoding: rest[slash...], as: UTF8.self)
            return path.hasPrefix("?") ? "/" + path : path
        }
        return String(decoding: target, as: UTF8.self)
    }

    // MARK: From the callbacks

    fileprivate func appendTarget(_ bytes: UnsafeBufferPointer<UInt8>) {
        request.target.append(contentsOf: bytes)
    }

    fileprivate func appendFieldName(_ bytes: UnsafeBufferPointer<UInt8>) {
        // Trailer fields of a chunked body are read and dropped.
        guard request.phase == .head else { return }
        fieldReader.appendName(bytes, completing: commitField)
    }

    fileprivate func appendFieldValue(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard request.phase == .head else { return }
        fieldReader.appendValue(bytes)
    }

    /// A field read: the facts the rules need noted, appended to the fields (after the request's pseudo-header
    /// fields, which go first).
    private func commitField(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        if request.fields.isEmpty { appendPseudoFields() }
        request.facts.note(name: name, value: value)
        request.fields.append(name: name, value: value)
    }

    /// `:method`, `:scheme` and `:path`, as HTTP/2 requests begin. The authority is the `host` field
    /// (`HTTPRequest.authority` reads either).
    private func appendPseudoFields() {
        request.method = String(cString: http_method_str(http_method(rawValue: UInt32(parser.pointee.method))))
        request.path = Self.originForm(request.target)
        request.fields.append(":method", request.method)
        request.fields.append(":scheme", scheme)
        request.fields.append(":path", request.path)
    }

    fileprivate func headersComplete() {
        fieldReader.finish(commitField)
        if request.fields.isEmpty { appendPseudoFields() }
        request.head = HTTP1RequestHead(
            method: request.method, path: request.path, fields: request.fields,
            keepAlive: http_should_keep_alive(parser) != 0, expectsContinue: request.facts.expectsContinue,
            isHTTP10: parser.pointee.http_minor == 0)
        request.phase = .body
        pausedAt = .head
        http_parser_pause(parser, 1)
    }

    /// False when the body passes the limit: http-parser then stops with HPE_CB_body.
    fileprivate func appendBody(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if let start = bytes.baseAddress, let base = parsing.baseAddress {
            let offset = start - base
            // http-parser counts down what is left of the chunk as it hands its data over.
            dataRanges.append((offset..<offset + bytes.count, parser.pointee.content_length == 0))
        }
        guard request.body.count + bytes.count <= maxBodyBytes else {
            request.bodyOverflowed = true
            return false
        }
        request.body.append(contentsOf: bytes)
        return true
    }

    fileprivate func messageComplete() {
        request.phase = .complete
        pausedAt = .message
        http_parser_pause(parser, 1)
    }

}

/// http-parser's callback table: each callback recovers the parser and forwards. Made once, then only read.
private let requestCallbacks: http_parser_settings = {
    var settings = http_parser_settings()
    http_parser_settings_init(&settings)
    settings.on_url = { parser, at, length in
        withHTTPParser(parser, as: HTTP1RequestParser.self) { $0.appendTarget(httpParserBytes(at, length)) }
        return 0
    }
    settings.on_header_field = { parser, at, length in
        withHTTPParser(parser, as: HTTP1RequestParser.self) { $0.appendFieldName(httpParserBytes(at, length)) }
        return 0
    }
    settings.on_header_value = { parser, at, length in
        withHTTPParser(parser, as: HTTP1RequestParser.self) { $0.appendFieldValue(httpParserBytes(at, length)) }
        return 0
    }
    settings.on_headers_complete = { parser in
        withHTTPParser(parser, as: HTTP1RequestParser.self) { $0.headersComplete() }
        return 0
    }
    settings.on_body = { parser, at, length in
        withHTTPParser(parser, as: HTTP1RequestParser.self) { $0.appendBody(httpParserBytes(at, length)) } == true
            ? 0 : 1
    }
    settings.on_message_complete = { parser in
        withHTTPParser(parser, as: HTTP1RequestParser.self) { $0.messageComplete() }
        return 0
    }
    return settings
}()

/// The rules on the raw bytes of a head that http-parser does not enforce: no NUL, no CR without LF after it, no
/// line that starts with a space or tab (obsolete line folding, RFC 9112 §5.2). Fed the head in pieces.
struct HeadScanner {
    private var previous: UInt8 = 0

    /// The first violation in `bytes`, which continue what was scanned before; nil if there is none.
    mutating func scan(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        for byte in bytes {
            defer { previous = byte }
            // Most bytes are printable and follow no CR: nothing to check.
            if byte > 0x20 && previous != UInt8(ascii: "\r") { continue }
            if byte == 0 { return "a NUL in the request head" }
            if previous == UInt8(ascii: "\r") && byte != UInt8(ascii: "\n") { return "a bare CR in the request head" }
            if previous == UInt8(ascii: "\n") && (byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")) {
                return "obsolete line folding"
            }
        }
        return nil
    }
}

/// The framing of a chunked body, which http-parser built without HTTP_PARSER_STRICT does not check: each
/// chunk's data is followed by CRLF, and no CR in the size lines or trailers goes without its LF. Fed the body's
/// bytes in pieces, with where the chunk data is in each piece.
struct ChunkFraming {
    private var previous: UInt8 = 0
    /// Of the CRLF that must follow a chunk's data, the bytes still to come.
    private var terminatorLeft = 0

    mutating func scan(_ bytes: UnsafeBufferPointer<UInt8>, data: [(range: Range<Int>, endsChunk: Bool)]) -> String? {
        var dataIndex = 0
        var offset = 0
        while offset < bytes.count {
            if dataIndex < data.count, data[dataIndex].range.lowerBound == offset {
                offset = max(offset + 1, data[dataIndex].range.upperBound)
                if data[dataIndex].endsChunk { terminatorLeft = 2 }
                previous = 0
                dataIndex += 1
                continue
            }
            let byte = bytes[offset]
            defer {
                previous = byte
                offset += 1
            }
            if terminatorLeft > 0 {
                guard byte == (terminatorLeft == 2 ? UInt8(ascii: "\r") : UInt8(ascii: "\n")) else {
                    return "chunk data not followed by CRLF"
                }
                terminatorLeft -= 1
                continue
            }
            if byte == 0 { return "a NUL in the chunk framing" }
            if previous == UInt8(ascii: "\r") && byte != UInt8(ascii: "\n") { return "a bare CR in the chunk framing" }
        }
        return nil
    }
}

/// What the rules need to know of a request's fields, noted as each is read (names lowercased), without making
/// Strings of them.
struct FieldFacts {
    var badFieldName = false
    var hosts = 0
    var contentLengths = 0
    /// The last `content-length`, nil when it is not a decimal within Int.
    var contentLength: Int?
    var transferCodings = 0
    /// The last `transfer-encoding` is `chunked` (case-insensitive) and nothing else.
    var chunked = false
    var expectations = 0
    /// The last `expect` is `100-continue` (case-insensitive).
    var expectsContinue = false

    mutating func note(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        if name.isEmpty || !name.allSatisfy(isTokenCharacter) { badFieldName = true }
        switch name.count {
        case 4 where name.elementsEqual("host".utf8):
            hosts += 1
        case 6 where name.elementsEqual("expect".utf8):
            expectations += 1
            expectsContinue = Self.equalsIgnoringCase(value, "100-continue")
        case 14 where name.elementsEqual("content-length".utf8):
            contentLengths += 1
            contentLength = Self.decimal(value)
        case 17 where name.elementsEqual("transfer-encoding".utf8):
            transferCodings += 1
            chunked = Self.equalsIgnoringCase(value, "chunked")
        default:
            break
        }
    }

    private static func equalsIgnoringCase(_ bytes: UnsafeBufferPointer<UInt8>, _ lowercase: StaticString) -> Bool {
        bytes.count == lowercase.utf8CodeUnitCount
            && zip(bytes, UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount))
                .allSatisfy { $0 | 0x20 == $1 }
    }

    /// One or more digits and nothing else, within Int.
    private static func decimal(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var value = 0
        for byte in bytes {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            let (scaled, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, carry) = scaled.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            guard !overflow, !carry else { return nil }
            value = sum
        }
        return value
    }
}

/// `tchar` of RFC 9110 §5.6.2: what a field name is made of.
private func isTokenCharacter(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
        UInt8(ascii: "0")...UInt8(ascii: "9"):
        true
    default:
        "!#$%&'*+-.^_`|~".utf8.contains(byte)
    }
}
