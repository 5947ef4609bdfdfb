// What the request and the response parser share of http-parser: recovering the Swift object from a callback, the
// bytes a data callback hands over, and header fields put together from the pieces the callbacks deliver.
import CHTTPParser

/// A header field at a time from http-parser's field and value callbacks, which may each come in several pieces:
/// handed on with the name lowercased and the value without the spaces and tabs at its end.
struct FieldReader {
    private var name: [UInt8] = []
    private var value: [UInt8] = []
    private var inValue = false

    /// A piece of a name. One that starts a new field completes the field before, which goes to `field` first.
    mutating func appendName(
        _ bytes: UnsafeBufferPointer<UInt8>,
        completing field: (_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Void
    ) {
        if inValue { finish(field) }
        name.append(contentsOf: bytes)
    }

    mutating func appendValue(_ bytes: UnsafeBufferPointer<UInt8>) {
        inValue = true
        value.append(contentsOf: bytes)
    }

    /// The field under way, if there is one, goes to `field`; the buffers are kept for the next.
    mutating func finish(
        _ field: (_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Void
    ) {
        guard inValue || !name.isEmpty else { return }
        for index in name.indices where (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(name[index]) {
            name[index] |= 0x20
        }
        name.withUnsafeBufferPointer { nameBytes in
            value.withUnsafeBufferPointer { valueBytes in
                var end = valueBytes.count
                while end > 0 && (valueBytes[end - 1] == UInt8(ascii: " ") || valueBytes[end - 1] == UInt8(ascii: "\t"))
                {
                    end -= 1
                }
                field(nameBytes, UnsafeBufferPointer(rebasing: valueBytes[..<end]))
            }
        }
        name.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
        inValue = false
    }
}

/// The bytes http-parser hands a data callback.
func httpParserBytes(_ at: UnsafePointer<CChar>?, _ length: Int) -> UnsafeBufferPointer<UInt8> {
    guard let at else { return UnsafeBufferPointer(start: nil, count: 0) }
    return UnsafeRawPointer(at).withMemoryRebound(to: UInt8.self, capacity: length) {
        UnsafeBufferPointer(start: $0, count: length)
    }
}

/// Calls `body` with the Swift object an http-parser's `data` points at, borrowed.
@inline(__always)
func withHTTPParser<Owner: AnyObject, Result>(
    _ parser: UnsafeMutablePointer<http_parser>?, as: Owner.Type, _ body: (Owner) -> Result
) -> Result? {
    guard let context = parser?.pointee.data else { return nil }
    return Unmanaged<Owner>.fromOpaque(context)._withUnsafeGuaranteedRef(body)
}
