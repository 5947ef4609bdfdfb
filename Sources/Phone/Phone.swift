// A phone's side of the protocol, for the tools that play phones (simulate, bench): signed requests, signed
// answers, and its event stream (`text/event-stream`), which reads bytes a broker sends and is fuzzed.
import Crypto
import Foundation
import JSONText
import Service

/// The `Authorization` header of a device request, signed with the device key at the current time.
public func deviceAuthorization(device: String, key: P256PrivateKey, method: String, path: String) -> String {
    let time = String(Int64(Date().timeIntervalSince1970))
    let signature = (try? key.signature(for: "\(time)\n\(method)\n\(path)\n")) ?? []
    return "Approvald-Device device=\(device), t=\(time), sig=\(Base64URL.encode(signature))"
}

/// The body of a phone's answer to the challenge `view` shows: the decision, signed with the device key now.
public func answerBody(
    to view: JSONValue, device: String, key: P256PrivateKey, decision: String, selectedNumber: Int?, reason: String?
) -> String {
    let signedAt = Int64(Date().timeIntervalSince1970)
    let signed = decisionString(
        tenantID: view["tenant_id"]?.string ?? "", requestID: view["request_id"]?.string ?? "",
        challengeID: view["challenge_id"]?.string ?? "", deviceID: device, decision: decision,
        selectedNumber: selectedNumber, reason: reason, signedAtUnix: signedAt)
    let signature = Base64URL.encode((try? key.signature(for: signed)) ?? [])
    return "{\"decision\":\(jsonString(decision)),\"selected_number\":\(selectedNumber.map(String.init) ?? "null"),"
        + "\"reason\":\(reason.map(jsonString) ?? "null"),\"signed_at_unix\":\(signedAt),"
        + "\"signature\":\(jsonString(signature))}"
}

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
