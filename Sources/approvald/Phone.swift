// A phone's side of the protocol, for the tools that play phones (simulate, bench): signed requests, signed
// answers, and its event stream (`text/event-stream`).
import Crypto
import Foundation
import JSONText
import Service

/// The `Authorization` header of a device request, signed with the device key at the current time.
func deviceAuthorization(device: String, key: P256PrivateKey, method: String, path: String) -> String {
    let time = String(Int64(Date().timeIntervalSince1970))
    let signature = (try? key.signature(for: "\(time)\n\(method)\n\(path)\n")) ?? []
    return "Approvald-Device device=\(device), t=\(time), sig=\(Base64URL.encode(signature))"
}

/// The body of a phone's answer to the challenge `view` shows: the decision, signed with the device key now.
func answerBody(
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
