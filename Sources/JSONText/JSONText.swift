// JSON text written by hand: the few JSON shapes the broker sends and stores need no general encoder.

/// `text` as a JSON string literal.
public func jsonString(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count + 2)
    appendJSONString(text, to: &out)
    return out
}

/// Appends `text` as a JSON string literal to `out`, with no string of its own in between: views are written on the
/// request path, one member after another into one buffer.
public func appendJSONString(_ text: String, to out: inout String) {
    out += "\""
    defer { out += "\"" }
    // Most strings (ids, times, names) need no escaping at all.
    if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
        out += text
        return
    }
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case let control where control.value < 0x20:
            let hex = String(control.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
}
