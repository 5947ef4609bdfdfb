// Bytes written as hexadecimal text in test vectors and fixtures.

/// The bytes of `text`, two hexadecimal digits each; whitespace and line breaks between them are skipped.
public func hex(_ text: String) -> [UInt8] {
    let digits = Array(text.filter { !$0.isWhitespace }.utf8)
    return stride(from: 0, to: digits.count, by: 2).map {
        UInt8(String(decoding: digits[$0...$0 + 1], as: UTF8.self), radix: 16)!
    }
}
