// Where deliveries for this instance's streams and long polls are sent: a route (device → instance, with a lease)
// for each device streamed here, renewed every third of its lifetime in calls of `batch` devices, and a watch for
// each challenge a long poll here waits for. Commits elsewhere publish to this instance's inbox along them.
import Core
import EventLoop
import Redis

/// `@unchecked Sendable`: confined to the event loop of its client.
final class StreamRoutes: @unchecked Sendable {
    private let client: RedisClient
    private let instanceID: String
    private let routeMillis: String
    private let renewSeconds: Double
    /// Devices with a stream here, whose deliveries are routed here.
    private var streamed: Set<String> = []
    private let loop: EventLoop
    private lazy var renewTimer = loop.makeTimer { [unowned self] in renewAll() }
    /// Routes a call renews: Redis runs nothing else during a call, and 1,000 took it 1–4 ms, which the sign-ins
    /// committing meanwhile waited for.
    static let batch = 100
    /// Between `start()` (the store is open) and `stop()` (it closes): nothing is sent to Redis otherwise.
    private var active = false

    init(client: RedisClient, loop: EventLoop, instanceID: String, routeSeconds: Double) {
        self.client = client
        self.loop = loop
        self.instanceID = instanceID
        routeMillis = String(Int(routeSeconds * 1000))
        renewSeconds = routeSeconds / 3
    }

    /// Starts renewing the routes.
    func start() {
        active = true
        renewTimer.schedule(after: renewSeconds)
    }

    func stop() {
        active = false
        renewTimer.cancel()
    }

    /// After a reconnect: routes may have lapsed; route every stream again, then `done`.
    func routeAgain(done: @escaping () -> Void) {
        route(Array(streamed), done: done)
    }

    func streamOpened(deviceID: String, routed: @escaping () -> Void) {
        streamed.insert(deviceID)
        route([deviceID], done: routed)
    }

    func streamClosed(deviceID: String) {
        guard streamed.remove(deviceID) != nil, active else { return }
        client.send(["FCALL", "approvald_unroute_stream", "0", instanceID, deviceID]) { _ in }
    }

    /// A long poll here waits up to `seconds` for the end of a challenge or an enrollment: its end is published here
    /// from when `watching` runs.
    func watch(endOf id: String, seconds: Double, watching: @escaping () -> Void) {
        guard active else { return }
        let lifetime = String(Int((seconds + 5) * 1000))
        client.send(["FCALL", "approvald_watch", "0", instanceID, id, lifetime]) { result in
            if case .success(.integer) = result { watching() }
        }
    }

    private func renewAll() {
        route(Array(streamed)) {}
        renewTimer.schedule(after: renewSeconds)
    }

    /// Routes the devices' deliveries here, in calls of at most `batch`; `done` runs when all have answered.
    private func route(_ deviceIDs: [String], done: @escaping () -> Void) {
        guard active, !deviceIDs.isEmpty else { return done() }
        var remaining = 0
        for start in stride(from: 0, to: deviceIDs.count, by: Self.batch) {
            remaining += 1
            let devices = deviceIDs[start..<min(start + Self.batch, deviceIDs.count)]
            client.send(["FCALL", "approvald_route_streams", "0", instanceID, routeMillis] + devices) { _ in
                remaining -= 1
                if remaining == 0 { done() }
            }
        }
    }
}
