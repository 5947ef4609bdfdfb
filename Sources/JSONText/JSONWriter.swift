// One JSON object written as text, field by field: the shapes approvald sends, stores and signs need no general
// encoder, and every one of them is written this way.

/// Builds one JSON object as text. Inlinable: views are written on the request path.
public struct JSONWriter {
    @usableFromInline var text = "{"
    @usableFromInline var first = true

    @inlinable public init() {}

    @inlinable mutating func key(_ name: String) {
        if !first { text += "," }
        first = false
        text += "\"\(name)\":"
    }

    @inlinable public mutating func string(_ name: String, _ value: String?) {
        key(name)
        text += value.map(jsonString) ?? "null"
    }

    @inlinable public mutating func integer(_ name: String, _ value: Int64?) {
        key(name)
        text += value.map(String.init) ?? "null"
    }

    @inlinable public mutating func bool(_ name: String, _ value: Bool) {
        key(name)
        text += value ? "true" : "false"
    }

    @inlinable public mutating func strings(_ name: String, _ values: [String]) {
        key(name)
        text += "[" + values.map(jsonString).joined(separator: ",") + "]"
    }

    @inlinable public mutating func integers(_ name: String, _ values: [Int]) {
        key(name)
        text += "[" + values.map(String.init).joined(separator: ",") + "]"
    }

    /// Already-encoded JSON.
    @inlinable public mutating func raw(_ name: String, _ json: String) {
        key(name)
        text += json
    }

    /// The object, closed.
    @inlinable public var done: String { text + "}" }
}
