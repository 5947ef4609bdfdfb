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

/// Calls `body` with `status` and `headers` as an nghttp2 name/value array; nghttp2 copies what it keeps. The
/// array and its bytes live in temporary (stack, when small) storage: no heap allocation per response.
func withNameValues<Result>(
    status: Int?, headers: HTTPHeaders, extra: (name: String, value: String)? = nil,
    _ body: (UnsafePointer<nghttp2_nv>, Int) -> Result
) -> Result {
    let statusText = status.map(String.init)
    var byteCount = (statusText?.utf8.count ?? 0) + 7
    for header in headers { byteCount += header.name.utf8.count + header.value.utf8.count }
    if let extra { byteCount += extra.name.utf8.count + extra.value.utf8.count }
    let fieldCount = headers.count + (status == nil ? 0 : 1) + (extra == nil ? 0 : 1)
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(byteCount, 1)) { bytes in
        withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(fieldCount, 1)) { fields in
            var used = 0
            var count = 0
            func copy(_ text: String) -> (UnsafeMutablePointer<UInt8>, Int) {
                let start = bytes.baseAddress! + used
                let copied = text.utf8.withContiguousStorageIfAvailable { source in
                    start.update(from: source.baseAddress!, count: source.count)
                    return source.count
                }
                if let copied {
                    used += copied
                } else {
                    for byte in text.utf8 {
                        bytes[used] = byte
                        used += 1
                    }
                }
                return (start, bytes.baseAddress! + used - start)
            }
            func add(_ name: String, _ value: String) {
                let (namePointer, nameLength) = copy(name)
                let (valuePointer, valueLength) = copy(value)
                fields[count] = nghttp2_nv(
                    name: namePointer, value: valuePointer, namelen: nameLength, valuelen: valueLength,
                    flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
                count += 1
            }
            if let statusText { add(":status", statusText) }
            for header in headers { add(header.name, header.value) }
            if let extra { add(extra.name, extra.value) }
            return body(UnsafePointer(fields.baseAddress!), count)
        }
    }
}
