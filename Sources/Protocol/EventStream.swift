// A device's event stream (`text/event-stream`, API.md "Event stream"): the frames the broker writes and the reader
// the phone side splits them with, which reads bytes a broker sends and is fuzzed.
import JSONText

/// One event's frame: `event:`, `id:` and one `data:` line (the data is JSON, so one line), then a blank line.
public func eventStreamFrame(event: String, id: String, data: String) -> [UInt8] {
    Array("event: \(event)\nid: \(id)\ndata: \(data)\n\n".utf8)
}

/// A comment line that keeps an idle stream's connection open through proxies; readers ignore it.
public let eventStreamKeepalive = Array(": keepalive\n\n".utf8)

/// An event of a device's stream.
public enum DeviceEvent: Sendable {
    case challenge(JSONValue)
    case resolved(challengeID: String, outcome: String)
}

/// Splits `text/event-stream` bytes into events. Loop-confined.
public final class EventStreamParser {
    /// An event that grows past this without its blank line is dropped, so a broker that never ends one cannot
    /// make the reader hold its stream.
    public static let maxEventBytes = 1 << 20
    private var buffer: [UInt8] = []
    /// Where the search for the blank line that ends an event goes on from.
    private var searched = 0
    private let onEvent: (DeviceEvent) -> Void

    public init(onEvent: @escaping (DeviceEvent) -> Void) { self.onEvent = onEvent }

    public func feed(_ chunk: UnsafeBufferPointer<UInt8>) {
        buffer.append(contentsOf: chunk)
        // Every whole event in the buffer, read where it lies; what they took is dropped once, after them.
        let consumed = buffer.withUnsafeBufferPointer { bytes -> Int in
            var eventStart = 0
            var index = max(0, searched - 1)
            while index + 1 < bytes.count {
                if bytes[index] == 0x0a && bytes[index + 1] == 0x0a {
                    deliver(UnsafeBufferPointer(rebasing: bytes[eventStart..<index]))
                    eventStart = index + 2
                    index = eventStart
                } else {
                    index += 1
                }
            }
            return eventStart
        }
        if consumed > 0 { buffer.removeSubrange(..<consumed) }
        searched = buffer.count
        if buffer.count > Self.maxEventBytes {
            buffer.removeAll()
            searched = 0
        }
    }

    private static let eventField = Array("event: ".utf8)
    private static let dataField = Array("data: ".utf8)

    /// One event's lines: its `event:` name (the first) and its `data:` (the first, JSON).
    private func deliver(_ event: UnsafeBufferPointer<UInt8>) {
        var name: UnsafeBufferPointer<UInt8>?
        var data: UnsafeBufferPointer<UInt8>?
        var lineStart = 0
        while lineStart < event.count {
            let lineEnd = event[lineStart...].firstIndex(of: 0x0a) ?? event.count
            let line = UnsafeBufferPointer(rebasing: event[lineStart..<lineEnd])
            if name == nil, let value = Self.value(of: Self.eventField, in: line) { name = value }
            if data == nil, let value = Self.value(of: Self.dataField, in: line) { data = value }
            lineStart = lineEnd + 1
        }
        guard let name, let data, let json = JSONValue.parse(data) else { return }
        if name.elementsEqual("challenge".utf8) {
            onEvent(.challenge(json))
        } else if name.elementsEqual("resolved".utf8) {
            onEvent(
                .resolved(challengeID: json["challenge_id"]?.string ?? "", outcome: json["outcome"]?.string ?? ""))
        }
    }

    /// What follows `field` on `line`, if the line is that field.
    private static func value(of field: [UInt8], in line: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8>? {
        guard line.count >= field.count, line.prefix(field.count).elementsEqual(field) else { return nil }
        return UnsafeBufferPointer(rebasing: line[field.count...])
    }
}
