// Open device event streams (server-sent events over one HTTP/2 stream each), with a keepalive comment.
import Core
import EventLoop
import HTTP
import Protocol

/// `@unchecked Sendable`: confined to the event loop.
final class DeviceStreams: @unchecked Sendable {
    /// A device's open streams here, and the challenges they were sent that are still queued as far as they know.
    private struct Streams {
        var responders: [ObjectIdentifier: HTTPResponder] = [:]
        var sent: Set<String> = []
    }

    private var byDevice: [String: Streams] = [:]
    private(set) var count = 0
    private var keepalive: LoopTimer?
    /// Told when a device's last stream here closes.
    var onLastClosed: ((String) -> Void)?

    /// - Parameter keepaliveSeconds: how often every open stream gets a `: keepalive` comment.
    init(loop: EventLoop, keepaliveSeconds: Double) {
        keepalive = loop.makeTimer { [unowned self] in
            for responder in byDevice.values.flatMap(\.responders.values) { responder.write(eventStreamKeepalive) }
            keepalive?.schedule(after: keepaliveSeconds)
        }
        keepalive?.schedule(after: keepaliveSeconds)
    }

    /// Adds a stream that was just sent `queue` (challenge ids).
    func add(_ responder: HTTPResponder, for deviceID: String, sent queue: [String]) {
        byDevice[deviceID, default: Streams()].responders[ObjectIdentifier(responder)] = responder
        byDevice[deviceID]?.sent.formUnion(queue)
        count += 1
        responder.onClose = { [unowned self] in remove(responder, for: deviceID) }
    }

    private func remove(_ responder: HTTPResponder, for deviceID: String) {
        guard byDevice[deviceID]?.responders.removeValue(forKey: ObjectIdentifier(responder)) != nil else { return }
        count -= 1
        if byDevice[deviceID]?.responders.isEmpty == true {
            byDevice[deviceID] = nil
            onLastClosed?(deviceID)
        }
    }

    func isStreaming(_ deviceID: String) -> Bool { byDevice[deviceID] != nil }

    /// The devices with a stream here.
    var deviceIDs: [String] { Array(byDevice.keys) }

    /// Sends a queued challenge to every open stream of the device.
    func sendChallenge(id: String, data: String, to deviceID: String) {
        guard byDevice[deviceID]?.sent.insert(id).inserted == true else { return }
        send("challenge", id: id, data: data, to: deviceID)
    }

    /// Tells every open stream of the device that a challenge left its queue.
    func sendResolved(id: String, data: String, to deviceID: String) {
        byDevice[deviceID]?.sent.remove(id)
        send("resolved", id: id, data: data, to: deviceID)
    }

    private func send(_ event: String, id: String, data: String, to deviceID: String) {
        guard let streams = byDevice[deviceID]?.responders.values else { return }
        let frame = eventStreamFrame(event: event, id: id, data: data)
        for responder in streams { responder.write(frame) }
    }

    /// After deliveries may have been missed: the challenges of `queue` the device's streams were not sent; what
    /// they were sent and is no longer queued is forgotten.
    func unsent(of deviceID: String, in queue: [Challenge]) -> [Challenge] {
        guard let sent = byDevice[deviceID]?.sent else { return [] }
        byDevice[deviceID]?.sent = sent.intersection(queue.map(\.id))
        return queue.filter { !sent.contains($0.id) }
    }

    /// Ends the device's streams (it was removed).
    func close(_ deviceID: String) {
        for responder in byDevice[deviceID]?.responders.values.map({ $0 }) ?? [] { responder.endStream() }
    }
}

extension DeviceStreams: MetricsSource {
    func writeMetrics(to writer: inout MetricsWriter) {
        writer.family("approvald_device_streams", .gauge, help: "Open device event streams.")
        writer.sample("approvald_device_streams", count)
    }
}
