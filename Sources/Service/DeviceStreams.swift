// Open device event streams (server-sent events over one HTTP/2 stream each), with a keepalive comment.
import H2

/// `@unchecked Sendable`: confined to the event loop.
final class DeviceStreams: @unchecked Sendable {
    private var byDevice: [String: [ObjectIdentifier: HTTPResponder]] = [:]
    private(set) var count = 0
    private var keepalive: LoopTimer?

    /// - Parameter keepaliveSeconds: how often every open stream gets a `: keepalive` comment.
    init(loop: EventLoop, keepaliveSeconds: Double) {
        keepalive = loop.makeTimer { [unowned self] in
            for responder in byDevice.values.flatMap(\.values) { responder.write(Self.keepaliveFrame) }
            keepalive?.schedule(after: keepaliveSeconds)
        }
        keepalive?.schedule(after: keepaliveSeconds)
    }

    private static let keepaliveFrame = Array(": keepalive\n\n".utf8)

    func add(_ responder: HTTPResponder, for deviceID: String) {
        byDevice[deviceID, default: [:]][ObjectIdentifier(responder)] = responder
        count += 1
        responder.onClose = { [unowned self] in remove(responder, for: deviceID) }
    }

    private func remove(_ responder: HTTPResponder, for deviceID: String) {
        guard byDevice[deviceID]?.removeValue(forKey: ObjectIdentifier(responder)) != nil else { return }
        count -= 1
        if byDevice[deviceID]?.isEmpty == true { byDevice[deviceID] = nil }
    }

    func isStreaming(_ deviceID: String) -> Bool { byDevice[deviceID] != nil }

    /// Sends one event to every open stream of the device.
    func send(_ event: String, id: String, data: String, to deviceID: String) {
        guard let streams = byDevice[deviceID] else { return }
        let frame = Array("event: \(event)\nid: \(id)\ndata: \(data)\n\n".utf8)
        for responder in streams.values { responder.write(frame) }
    }

    /// Ends the device's streams (it was removed).
    func close(_ deviceID: String) {
        for responder in byDevice[deviceID]?.values.map({ $0 }) ?? [] { responder.endStream() }
    }
}
