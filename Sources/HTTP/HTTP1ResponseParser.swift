// HTTP/1.1 responses from bytes, for the client: http-parser reads the status line, fields and body (by length,
// chunks, or until the connection closes); interim 1xx responses are skipped; the body is bounded.
import CHTTPParser

/// Belongs to one client connection on one loop.
final class HTTP1ResponseParser {
    enum Outcome: Equatable {
        case needMore
        /// A final response is complete (`status`, `fields`, `body`, `keepAlive`).
        case response
        /// The body passed the limit.
        case tooLarge
        case malformed(String)
    }

    private let parser: UnsafeMutablePointer<http_parser>
    let maxBodyBytes: Int
    private var fieldReader = FieldReader()
    private var complete = false
    private var overflowed = false

    private(set) var status = 0
    private(set) var fields = HTTPHeaders()
    private(set) var body: [UInt8] = []
    private(set) var keepAlive = false
    /// Body bytes go here instead of `body` (unbounded), for streamed responses.
    var onBody: ((UnsafeBufferPointer<UInt8>) -> Void)?

    init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
        parser = .allocate(capacity: 1)
        reset()
    }

    deinit { parser.deallocate() }

    /// Ready for the next response on the connection.
    func reset() {
        http_parser_init(parser, HTTP_RESPONSE)
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        fieldReader = FieldReader()
        complete = false
        overflowed = false
        status = 0
        fields = HTTPHeaders()
        body = []
        keepAlive = false
    }

    /// Parses `bytes` (an empty buffer: the connection closed, which ends a body read until close).
    func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> (consumed: Int, outcome: Outcome) {
        let consumed = bytes.withMemoryRebound(to: CChar.self) { data in
            withUnsafePointer(to: responseCallbacks) { http_parser_execute(parser, $0, data.baseAddress, data.count) }
        }
        let error = approvald_http_errno(parser)
        if overflowed { return (consumed, .tooLarge) }
        switch error {
        case HPE_OK where complete:
            return (consumed, .response)
        case HPE_OK:
            return (consumed, .needMore)
        case HPE_PAUSED:
            http_parser_pause(parser, 0)
            return (consumed, complete ? .response : .needMore)
        default:
            return (consumed, .malformed(String(cString: http_errno_description(error))))
        }
    }

    // MARK: From the callbacks

    fileprivate func appendFieldName(_ bytes: UnsafeBufferPointer<UInt8>) {
        fieldReader.appendName(bytes, completing: appendField)
    }

    fileprivate func appendFieldValue(_ bytes: UnsafeBufferPointer<UInt8>) {
        fieldReader.appendValue(bytes)
    }

    private func appendField(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        fields.append(name: name, value: value)
    }

    fileprivate func headersComplete() {
        fieldReader.finish(appendField)
        status = Int(parser.pointee.status_code)
    }

    fileprivate func appendBody(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if let onBody {
            onBody(bytes)
            return true
        }
        guard body.count + bytes.count <= maxBodyBytes else {
            overflowed = true
            return false
        }
        body.append(contentsOf: bytes)
        return true
    }

    fileprivate func messageComplete() {
        // An interim response (100 Continue and the like) is followed by the real one.
        guard status >= 200 else {
            fields = HTTPHeaders()
            return
        }
        keepAlive = http_should_keep_alive(parser) != 0
        complete = true
        http_parser_pause(parser, 1)
    }
}

/// http-parser's callback table for responses: each callback recovers the parser and forwards.
private let responseCallbacks: http_parser_settings = {
    var settings = http_parser_settings()
    http_parser_settings_init(&settings)
    settings.on_header_field = { parser, at, length in
        withHTTPParser(parser, as: HTTP1ResponseParser.self) { $0.appendFieldName(httpParserBytes(at, length)) }
        return 0
    }
    settings.on_header_value = { parser, at, length in
        withHTTPParser(parser, as: HTTP1ResponseParser.self) { $0.appendFieldValue(httpParserBytes(at, length)) }
        return 0
    }
    settings.on_headers_complete = { parser in
        withHTTPParser(parser, as: HTTP1ResponseParser.self) { $0.headersComplete() }
        return 0
    }
    settings.on_body = { parser, at, length in
        withHTTPParser(parser, as: HTTP1ResponseParser.self) { $0.appendBody(httpParserBytes(at, length)) } == true
            ? 0 : 1
    }
    settings.on_message_complete = { parser in
        withHTTPParser(parser, as: HTTP1ResponseParser.self) { $0.messageComplete() }
        return 0
    }
    return settings
}()
