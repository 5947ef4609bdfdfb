// One JSON object written as text, field by field: the shapes approvald sends, stores and signs need no general
// encoder, and every one of them is written this way.

/// Builds one JSON object as text. Inlinable: views are written on the request path.
public struct JSONWriter {
    @usableFromInline var text = "{"
    @usableFromInline var first = true

    /// Room for a typical view from the start: a string grown from empty reallocates at each doubling.
    @inlinable public init() { text.reserveCapacity(256) }

    // Each part is appended to `text` as it is: an interpolation or a `+` would make a string of its own first.
    @inlinable mutating func key(_ name: String) {
        text += first ? "\"" : ",\""
        first = false
        text += name
        text += "\":"
    }

    @inlinable public mutating func string(_ name: String, _ value: String?) {
        key(name)
        if let value { appendJSONString(value, to: &text) } else { text += "null" }
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
        text += "["
        for (index, value) in values.enumerated() {
            if index > 0 { text += "," }
            appendJSONString(value, to: &text)
        }
        text += "]"
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

    /// Already-encoded JSON under a name that may need escaping (the other methods take names that do not).
    public mutating func raw(named name: String, _ json: String) {
        if !first { text += "," }
        first = false
        text += jsonString(name) + ":" + json
    }

    /// An array of already-encoded JSON values.
    @inlinable public mutating func rawArray(_ name: String, _ items: [String]) {
        key(name)
        text += "[" + items.joined(separator: ",") + "]"
    }

    /// An object, written by `body`, as the value of `name`.
    @inlinable public mutating func object(_ name: String, _ body: (inout JSONWriter) -> Void) {
        raw(name, Self.object(body))
    }

    /// An object written by `body`, as text.
    @inlinable public static func object(_ body: (inout JSONWriter) -> Void) -> String {
        var writer = JSONWriter()
        body(&writer)
        return writer.finished()
    }

    /// The object, closed: the writer's own text, with no copy made.
    @inlinable public consuming func finished() -> String {
        text += "}"
        return text
    }
}
