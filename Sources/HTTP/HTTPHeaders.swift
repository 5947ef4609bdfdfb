// Header fields as one byte buffer: what arrives from nghttp2 is copied in without making Strings, and what goes
// out is handed to nghttp2 as pointers into the buffer. Strings are made only for the fields a handler reads.

/// Header fields in order, names lowercase. Each entry is stored as
/// `[name length: UInt16][value length: UInt16][name bytes][value bytes]` (big-endian lengths).
///
/// `@unchecked Sendable`: its buffer is copy-on-write, written only when uniquely referenced, as Array's is.
public struct HTTPHeaders: @unchecked Sendable, Sequence, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral,
    CustomStringConvertible
{
    private var bytes: HeaderBytes?
    public private(set) var count = 0

    public init() {}

    public init(_ fields: [(name: String, value: String)]) {
        for field in fields { append(field.name, field.value) }
    }

    public init(arrayLiteral fields: (String, String)...) {
        for (name, value) in fields { append(name, value) }
    }

    /// `["content-type": "text/plain"]`: order kept, repeats allowed, as a header block needs.
    public init(dictionaryLiteral fields: (String, String)...) {
        for (name, value) in fields { append(name, value) }
    }

    public var isEmpty: Bool { count == 0 }

    /// Appends a field. Names and values longer than 65,535 bytes are cut there (no header block allows them).
    public mutating func append(_ name: String, _ value: String) {
        var name = name
        var value = value
        name.withUTF8 { nameBytes in value.withUTF8 { valueBytes in append(name: nameBytes, value: valueBytes) } }
    }

    public mutating func append(_ field: (String, String)) {
        append(field.0, field.1)
    }

    mutating func append(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        let nameLength = Swift.min(name.count, Int(UInt16.max))
        let valueLength = Swift.min(value.count, Int(UInt16.max))
        let needed = 4 + nameLength + valueLength
        let used = bytes?.header ?? 0
        if bytes == nil || !isKnownUniquelyReferenced(&bytes!) || bytes!.capacity - used < needed {
            // One allocation for a typical request's fields; doubling after that; a copy when shared.
            let grown = HeaderBytes.make(capacity: Swift.max(256, used + needed, (bytes?.capacity ?? 0) * 2))
            if let bytes { grown.copy(from: bytes) }
            bytes = grown
        }
        bytes!.withUnsafeMutablePointers { usedCount, start in
            let entry = start + usedCount.pointee
            entry[0] = UInt8(nameLength >> 8)
            entry[1] = UInt8(nameLength & 0xff)
            entry[2] = UInt8(valueLength >> 8)
            entry[3] = UInt8(valueLength & 0xff)
            if nameLength > 0 { (entry + 4).update(from: name.baseAddress!, count: nameLength) }
            if valueLength > 0 { (entry + 4 + nameLength).update(from: value.baseAddress!, count: valueLength) }
            usedCount.pointee += needed
        }
        count += 1
    }

    /// Calls `body` with the storage, borrowed: pointers into it stay valid until `body` returns.
    func withStorage<Result>(_ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        guard let bytes else { return body(UnsafeBufferPointer(start: nil, count: 0)) }
        return bytes.withUnsafeMutablePointers { usedCount, start in
            body(UnsafeBufferPointer(start: start, count: usedCount.pointee))
        }
    }

    /// Calls `body` with each field's name and value bytes, in order; stops when it returns false.
    func forEachField(_ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) -> Bool) {
        withStorage { HTTPHeaders.forEachField(in: $0, body) }
    }

    /// The same walk over storage the caller has borrowed, so the pointers stay valid for as long as it holds it.
    static func forEachField(
        in bytes: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) -> Bool
    ) {
        var offset = 0
        while offset + 4 <= bytes.count {
            let nameLength = Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
            let valueLength = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let nameStart = offset + 4
            let valueStart = nameStart + nameLength
            let name = UnsafeBufferPointer(rebasing: bytes[nameStart..<valueStart])
            let value = UnsafeBufferPointer(rebasing: bytes[valueStart..<valueStart + valueLength])
            guard body(name, value) else { return }
            offset = valueStart + valueLength
        }
    }

    /// The first value of the field `name` (lowercase), or nil.
    public subscript(field name: String) -> String? {
        var found: String?
        var name = name
        name.withUTF8 { wanted in
            forEachField { fieldName, value in
                guard fieldName.elementsEqual(wanted) else { return true }
                found = String(decoding: value, as: UTF8.self)
                return false
            }
        }
        return found
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        var fields: [(name: String, value: String)] = []
        fields.reserveCapacity(count)
        forEachField { name, value in
            fields.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
            return true
        }
        return fields.makeIterator()
    }

    public var description: String {
        map { "\($0.name): \($0.value)" }.joined(separator: "\n")
    }
}

/// The bytes behind `HTTPHeaders`: a header (bytes used) and the elements, in one allocation.
final class HeaderBytes: ManagedBuffer<Int, UInt8> {
    static func make(capacity: Int) -> HeaderBytes {
        unsafeDowncast(create(minimumCapacity: capacity) { _ in 0 }, to: HeaderBytes.self)
    }

    func copy(from other: HeaderBytes) {
        other.withUnsafeMutablePointers { otherUsed, otherStart in
            withUnsafeMutablePointers { used, start in
                start.update(from: otherStart, count: otherUsed.pointee)
                used.pointee = otherUsed.pointee
            }
        }
    }
}
