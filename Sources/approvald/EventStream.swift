// A phone's side of its event stream (`text/event-stream`), for the tools that play phones: simulate and bench.
import JSONText

/// An event of a device's stream.
enum DeviceEvent: Sendable {
    case challenge(JSONValue)
    case resolved(challengeID: String, outcome: String)
}

/// Splits `text/event-stream` bytes into events. Loop-confined.
final class EventStreamParser {
    private var buffer: [UInt8] = []
    private let onEvent: (DeviceEvent) -> Void

    init(onEvent: @escaping (DeviceEvent) -> Void) { self.onEvent = onEvent }

    func feed(_ chunk: UnsafeBufferPointer<UInt8>) {
        buffer.append(contentsOf: chunk)
        while let end = buffer.firstRange(of: [0x0a, 0x0a]) {
            let lines = String(decoding: buffer[..<end.lowerBound], as: UTF8.self).split(separator: "\n")
            buffer.removeSubrange(..<end.upperBound)
            let event = lines.first { $0.hasPrefix("event: ") }?.dropFirst(7)
            guard let data = lines.first(where: { $0.hasPrefix("data: ") })?.dropFirst(6),
                let json = JSONValue.parse(Array(data.utf8))
            else { continue }
            switch event {
            case "challenge": onEvent(.challenge(json))
            case "resolved":
                onEvent(
                    .resolved(
                        challengeID: json["challenge_id"]?.string ?? "", outcome: json["outcome"]?.string ?? ""))
            default: break
            }
        }
    }
}
