// The bytes of values the Redis store keeps: compact (varints, no field names) and read in one pass, every read
// checked against the end of the bytes.
import Store

/// Bytes written for a value held in Redis: varints, zigzag times, length-prefixed strings.
struct BinaryWriter {
    var bytes: [UInt8] = []

    mutating func byte(_ value: UInt8) { bytes.append(value) }

    mutating func varint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    mutating func count(_ value: Int) { varint(UInt64(value)) }
    /// A number that is no count (a limit, a choice): any non-negative Int.
    mutating func number(_ value: Int) { varint(UInt64(value)) }
    /// Zigzag: small magnitudes of either sign stay short.
    mutating func time(_ value: Int64) { varint(UInt64(bitPattern: (value << 1) ^ (value >> 63))) }

    mutating func optionalTime(_ value: Int64?) {
        byte(value == nil ? 0 : 1)
        if let value { time(value) }
    }

    mutating func raw(_ value: [UInt8]) {
        count(value.count)
        bytes += value
    }

    mutating func string(_ value: String) {
        count(value.utf8.count)
        bytes += value.utf8
    }

    mutating func optionalString(_ value: String?) {
        byte(value == nil ? 0 : 1)
        if let value { string(value) }
    }

    /// An enumeration by its position in `allCases`.
    mutating func choice<Value: CaseIterable & Equatable>(_ value: Value) {
        byte(UInt8(Array(Value.allCases).firstIndex(of: value)!))
    }
}

/// Reads what `BinaryWriter` wrote; anything out of shape is a `StoreError` naming `subject`.
struct BinaryReader {
    var bytes: ArraySlice<UInt8>
    /// What the bytes are of, for errors: "the state of contoso/alice".
    let subject: String

    var isAtEnd: Bool { bytes.isEmpty }

    func damaged(_ what: String) -> StoreError { StoreError("\(subject) holds \(what)") }

    mutating func byte() throws(StoreError) -> UInt8 {
        guard let first = bytes.popFirst() else { throw damaged("too few bytes") }
        return first
    }

    mutating func varint() throws(StoreError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let next = try byte()
            guard shift < 64 else { throw damaged("a number too long") }
            value |= UInt64(next & 0x7f) << shift
            if next < 0x80 { return value }
            shift += 7
        }
    }

    /// The length of a list or a string that follows: bounded by the bytes left, so damage cannot ask for a huge
    /// allocation.
    mutating func count() throws(StoreError) -> Int {
        let value = try varint()
        guard value <= UInt64(bytes.count + 1) * 8 + 1_000_000 else { throw damaged("a count out of range") }
        return Int(value)
    }

    /// A number that is no count: any non-negative Int.
    mutating func number() throws(StoreError) -> Int {
        let value = try varint()
        guard value <= UInt64(Int.max) else { throw damaged("a number out of range") }
        return Int(value)
    }

    mutating func time() throws(StoreError) -> Int64 {
        let zigzag = try varint()
        return Int64(bitPattern: zigzag >> 1) ^ -Int64(bitPattern: zigzag & 1)
    }

    mutating func optionalTime() throws(StoreError) -> Int64? {
        try flag() ? try time() : nil
    }

    mutating func flag() throws(StoreError) -> Bool {
        switch try byte() {
        case 0: return false
        case 1: return true
        default: throw damaged("a flag that is neither 0 nor 1")
        }
    }

    mutating func raw() throws(StoreError) -> [UInt8] {
        let length = try count()
        guard length <= bytes.count else { throw damaged("a length past the end") }
        defer { bytes.removeFirst(length) }
        return Array(bytes.prefix(length))
    }

    mutating func string() throws(StoreError) -> String {
        let length = try count()
        guard length <= bytes.count else { throw damaged("a length past the end") }
        defer { bytes.removeFirst(length) }
        return String(decoding: bytes.prefix(length), as: UTF8.self)
    }

    mutating func optionalString() throws(StoreError) -> String? {
        try flag() ? try string() : nil
    }

    mutating func choice<Value: CaseIterable>(_ type: Value.Type) throws(StoreError) -> Value {
        let index = Int(try byte())
        let all = Array(Value.allCases)
        guard index < all.count else { throw damaged("an unknown \(Value.self)") }
        return all[index]
    }

    mutating func list<Element>(
        _ element: (inout BinaryReader) throws(StoreError) -> Element
    ) throws(StoreError)
        -> [Element]
    {
        let count = try count()
        var elements: [Element] = []
        elements.reserveCapacity(min(count, 64))
        for _ in 0..<count { elements.append(try element(&self)) }
        return elements
    }
}
