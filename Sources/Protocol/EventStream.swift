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
        while let end = buffer[max(0, searched - 1)...].firstRange(of: [0x0a, 0x0a]) {
            let lines = String(decoding: buffer[..<end.lowerBound], as: UTF8.self).split(separator: "\n")
            buffer.removeSubrange(..<end.upperBound)
            searched = 0
            deliver(lines)
        }
        searched = buffer.count
        if buffer.count > Self.maxEventBytes {
            buffer.removeAll()
            searched = 0
        }
    }

    private func deliver(_ lines: [Substring]) {
        let event = lines.first { $0.hasPrefix("event: ") }?.dropFirst(7)
        guard let data = lines.first(where: { $0.hasPrefix("data: ") })?.dropFirst(6),
            let json = JSONValue.parse(Array(data.utf8))
        else { return }
        switch event {
        case "challenge": onEvent(.challenge(json))
        case "resolved":
            onEvent(
                .resolved(challengeID: json["challenge_id"]?.string ?? "", outcome: json["outcome"]?.string ?? ""))
        default: break
        }
    }
}
