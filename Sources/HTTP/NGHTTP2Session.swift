// One nghttp2 session, server or client: every call into nghttp2's session and submit API goes through here.
// Bytes in, bytes out: the session knows no socket, so a server connection's whole HTTP/2 side can be driven
// from memory (the HTTP/2 server fuzz target does).
import CNghttp2

/// RFC 9113 §7 error codes, as far as approvald sends them.
public enum H2ErrorCode: UInt32, Sendable {
    case noError = 0x0
    case protocolError = 0x1
    case cancel = 0x8
    case refusedStream = 0x7
    case enhanceYourCalm = 0xb
}

/// A handle, not an owner of its own: the connection that made it calls `delete()` once (a struct, so that the
/// calls on every request cost no reference counting).
struct NGHTTP2Session {
    private let session: OpaquePointer

    /// A server session whose callbacks get `context`; nil when nghttp2 cannot make one (out of memory).
    static func server(
        callbacks: CallbackTable, options: SessionOptions, context: UnsafeMutableRawPointer
    )
        -> NGHTTP2Session?
    {
        made { nghttp2_session_server_new2(&$0, callbacks.callbacks, context, options.option) }
    }

    /// A client session whose callbacks get `context`.
    static func client(
        callbacks: CallbackTable, options: SessionOptions, context: UnsafeMutableRawPointer
    )
        -> NGHTTP2Session?
    {
        made { nghttp2_session_client_new2(&$0, callbacks.callbacks, context, options.option) }
    }

    private static func made(_ create: (inout OpaquePointer?) -> Int32) -> NGHTTP2Session? {
        var made: OpaquePointer? = nil
        guard create(&made) == 0, let made else { return nil }
        return NGHTTP2Session(made)
    }

    private init(_ session: OpaquePointer) {
        self.session = session
    }

    /// Frees the session; the handle must not be used after.
    func delete() { nghttp2_session_del(session) }

    // MARK: Bytes in and out

    /// Feeds received bytes; returns how many were consumed, or nghttp2's (negative) error for a protocol error,
    /// after which nghttp2 has queued a GOAWAY.
    func receive(_ bytes: UnsafePointer<UInt8>, count: Int) -> Int {
        nghttp2_session_mem_recv(session, bytes, count)
    }

    /// The next serialised frames, valid until the next call; an empty buffer when nothing is queued, nil on a
    /// fatal error.
    func nextOutput() -> UnsafeBufferPointer<UInt8>? {
        var data: UnsafePointer<UInt8>? = nil
        let length = nghttp2_session_mem_send(session, &data)
        guard length >= 0 else { return nil }
        return UnsafeBufferPointer(start: data, count: length)
    }

    /// Whether nghttp2 has anything left to read or write: false once the session has ended (GOAWAY both ways,
    /// or terminated and written).
    var isActive: Bool { nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0 }

    static func describe(_ error: Int) -> String { String(cString: nghttp2_strerror(Int32(error))) }

    // MARK: Connection-level frames

    /// SETTINGS: `(identifier, value)` pairs.
    func submitSettings(_ entries: [(nghttp2_settings_id, UInt32)]) {
        var settings = entries.map { nghttp2_settings_entry(settings_id: Int32($0.0.rawValue), value: $0.1) }
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
    }

    /// GOAWAY with `code`, after which the session ends once it is written; nghttp2 ignores what arrives from now.
    func terminate(_ code: H2ErrorCode) {
        nghttp2_session_terminate_session(session, code.rawValue)
    }

    /// GOAWAY(NO_ERROR) naming the last stream processed: no new streams, those open go on (graceful shutdown).
    func submitGoAway() {
        nghttp2_submit_goaway(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
            H2ErrorCode.noError.rawValue, nil, 0)
    }

    // MARK: Streams

    func reset(_ streamID: Int32, _ code: H2ErrorCode) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, code.rawValue)
    }

    /// Whether nghttp2 still knows stream `streamID` with a user-data pointer of ours.
    func hasStream(_ streamID: Int32) -> Bool {
        nghttp2_session_get_stream_user_data(session, streamID) != nil
    }

    func setStreamUserData(_ streamID: Int32, _ pointer: UnsafeMutableRawPointer?) {
        nghttp2_session_set_stream_user_data(session, streamID, pointer)
    }

    /// The user data of a stream, for the callbacks, which get nghttp2's raw session pointer.
    static func streamUserData(_ session: OpaquePointer?, _ streamID: Int32) -> UnsafeMutableRawPointer? {
        nghttp2_session_get_stream_user_data(session, streamID)
    }

    /// A response: HEADERS with `status`, `headers` and `content-length` when known, then DATA from `provider`
    /// (none for an empty body).
    func submitResponse(
        _ streamID: Int32, status: Int, headers: HTTPHeaders, contentLength: Int?, provider: DataProvider?
    ) {
        withNameValues(status: status, headers: headers, contentLength: contentLength) { fields, count in
            guard let provider else {
                nghttp2_submit_response(session, streamID, fields, count, nil)
                return
            }
            var data = provider.nghttp2
            nghttp2_submit_response(session, streamID, fields, count, &data)
        }
    }

    /// A request with `leading` pseudo-header fields; returns its stream id, or a negative error (out of ids).
    func submitRequest(
        leading: HTTPHeaders, headers: HTTPHeaders, contentLength: Int?, provider: DataProvider?,
        context: UnsafeMutableRawPointer
    ) -> Int32 {
        withNameValues(status: nil, leading: leading, headers: headers, contentLength: contentLength) {
            fields, count in
            guard let provider else { return nghttp2_submit_request(session, nil, fields, count, nil, context) }
            var data = provider.nghttp2
            return nghttp2_submit_request(session, nil, fields, count, &data, context)
        }
    }

    /// Tells nghttp2 that a deferred body has more to send.
    func resumeData(_ streamID: Int32) {
        nghttp2_session_resume_data(session, streamID)
    }
}

/// Where a body's DATA comes from: a read callback and the object it reads, borrowed.
struct DataProvider {
    let source: UnsafeMutableRawPointer
    let read: nghttp2_data_source_read_callback

    var nghttp2: nghttp2_data_provider {
        nghttp2_data_provider(source: nghttp2_data_source(ptr: source), read_callback: read)
    }
}
