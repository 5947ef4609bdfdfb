// nghttp2 option and callback tables: made once, copied by nghttp2 into each session.
import CNghttp2

/// nghttp2's guards for a server session. `@unchecked Sendable`: immutable once made.
final class SessionOptions: @unchecked Sendable {
    let option: OpaquePointer

    init(limits: HTTPServerLimits) {
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

private let statusName: StaticString = ":status"
private let contentLengthName: StaticString = "content-length"

/// Calls `body` with an nghttp2 name/value array: `:status` (responses), the `leading` fields (a request's
/// pseudo-headers), `content-length`, then `headers`. Names and values point into the borrowed header storage and
/// a stack buffer for the numbers: nothing is copied or allocated here; nghttp2 copies what it keeps.
func withNameValues<Result>(
    status: Int?, leading: HTTPHeaders = [], headers: HTTPHeaders, contentLength: Int?,
    _ body: (UnsafePointer<nghttp2_nv>, Int) -> Result
) -> Result {
    let capacity = leading.count + headers.count + 2
    return withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: capacity) { fields in
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 48) { digits in
            leading.withStorage { leadingBytes in
                headers.withStorage { headerBytes in
                    var count = 0
                    var digitsUsed = 0
                    func add(
                        _ name: UnsafePointer<UInt8>?, _ nameLength: Int, _ value: UnsafePointer<UInt8>?,
                        _ valueLength: Int
                    ) {
                        // An empty field may have no base address; nghttp2 reads no byte of it, any pointer will do.
                        let fallback = statusName.utf8Start
                        fields[count] = nghttp2_nv(
                            name: UnsafeMutablePointer(mutating: name ?? fallback),
                            value: UnsafeMutablePointer(mutating: value ?? fallback), namelen: nameLength,
                            valuelen: valueLength, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
                        count += 1
                    }
                    func addNumber(_ name: StaticString, _ number: Int) {
                        var length = 1
                        var scale = 10
                        while number >= scale && length < 19 {
                            length += 1
                            scale &*= 10
                        }
                        var remaining = max(number, 0)
                        for index in stride(from: digitsUsed + length - 1, through: digitsUsed, by: -1) {
                            digits[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
                            remaining /= 10
                        }
                        add(name.utf8Start, name.utf8CodeUnitCount, digits.baseAddress! + digitsUsed, length)
                        digitsUsed += length
                    }
                    func addAll(_ block: UnsafeBufferPointer<UInt8>) {
                        HTTPHeaders.forEachField(in: block) { name, value in
                            add(name.baseAddress, name.count, value.baseAddress, value.count)
                            return true
                        }
                    }
                    if let status { addNumber(statusName, status) }
                    addAll(leadingBytes)
                    if let contentLength { addNumber(contentLengthName, contentLength) }
                    addAll(headerBytes)
                    return body(UnsafePointer(fields.baseAddress!), count)
                }
            }
        }
    }
}
