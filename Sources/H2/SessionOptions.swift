// nghttp2 option and callback tables: made once, copied by nghttp2 into each session.
import CNghttp2

/// nghttp2's guards for a server session. `@unchecked Sendable`: immutable once made.
final class SessionOptions: @unchecked Sendable {
    let option: OpaquePointer

    init(limits: H2ServerLimits) {
        var option: OpaquePointer? = nil
        precondition(nghttp2_option_new(&option) == 0, "nghttp2_option_new failed")
        self.option = option!
        nghttp2_option_set_stream_reset_rate_limit(
            self.option, limits.streamResetBurst, limits.streamResetRatePerSecond)
        nghttp2_option_set_max_continuations(self.option, limits.maxContinuations)
        nghttp2_option_set_max_settings(self.option, 32)
        nghttp2_option_set_max_outbound_ack(self.option, 1000)
        nghttp2_option_set_max_deflate_dynamic_table_size(self.option, 4096)
    }

    /// For client sessions: the defaults, plus the same SETTINGS flood guard.
    init() {
        var option: OpaquePointer? = nil
        precondition(nghttp2_option_new(&option) == 0, "nghttp2_option_new failed")
        self.option = option!
        nghttp2_option_set_max_settings(self.option, 32)
        nghttp2_option_set_max_outbound_ack(self.option, 1000)
    }

    deinit { nghttp2_option_del(option) }
}

/// A callback table. `@unchecked Sendable`: immutable once made.
final class CallbackTable: @unchecked Sendable {
    let callbacks: OpaquePointer

    init(_ configure: (OpaquePointer) -> Void) {
        var callbacks: OpaquePointer? = nil
        precondition(nghttp2_session_callbacks_new(&callbacks) == 0, "nghttp2_session_callbacks_new failed")
        self.callbacks = callbacks!
        configure(self.callbacks)
    }

    deinit { nghttp2_session_callbacks_del(callbacks) }
}

/// Frame type and flag tests, spelled once.
extension UnsafePointer where Pointee == nghttp2_frame {
    var type: UInt32 { UInt32(pointee.hd.type) }
    var streamID: Int32 { pointee.hd.stream_id }
    var endsStream: Bool { pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 }
    var isHeaders: Bool { type == NGHTTP2_HEADERS.rawValue }
    var isData: Bool { type == NGHTTP2_DATA.rawValue }
}

/// Calls `body` with `status` and `headers` as an nghttp2 name/value array; nghttp2 copies what it keeps.
func withNameValues<Result>(
    status: Int?, headers: HTTPHeaders, extra: (name: String, value: String)? = nil,
    _ body: (UnsafePointer<nghttp2_nv>, Int) -> Result
) -> Result {
    var bytes: [UInt8] = []
    var spans: [(name: Range<Int>, value: Range<Int>)] = []
    spans.reserveCapacity(headers.count + 2)
    func add(_ name: some StringProtocol, _ value: some StringProtocol) {
        let nameStart = bytes.count
        bytes.append(contentsOf: name.utf8)
        let valueStart = bytes.count
        bytes.append(contentsOf: value.utf8)
        spans.append((nameStart..<valueStart, valueStart..<bytes.count))
    }
    if let status { add(":status", String(status)) }
    for header in headers { add(header.name, header.value) }
    if let extra { add(extra.name, extra.value) }
    bytes.append(0)  // never an empty buffer: every base address below is valid
    return bytes.withUnsafeMutableBufferPointer { storage in
        let base = storage.baseAddress!
        let fields = spans.map { span in
            nghttp2_nv(
                name: base + span.name.lowerBound, value: base + span.value.lowerBound, namelen: span.name.count,
                valuelen: span.value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
        }
        return fields.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
    }
}
