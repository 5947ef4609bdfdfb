// A peer for the tests (a verifier, APNs, FCM): an h2c and HTTP/1.1 server on a loop thread of its own that records every
// request and answers with the statuses it is given, in order, then with its default, optionally after a delay.
// Usable from blocking and async tests alike.
import Dispatch
import EventLoop
import Foundation
import HTTP
import Locking
import Logging

public final class RecordingServer: @unchecked Sendable {
    public struct Callback: Sendable {
        public let method: String
        public let path: String
        /// Field names in lowercase.
        public let headers: [String: String]
        public let body: [UInt8]

        public var text: String { String(decoding: body, as: UTF8.self) }
        public var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
        }
    }

    private struct State {
        var received: [Callback] = []
        var script: [Int] = []
        var status = 200
        var delaySeconds = 0.0
        var bodies: [Int: String] = [:]
        var protocols: Set<HTTPProtocol> = []
    }

    private final class Shared: @unchecked Sendable {
        let state = Locked(State())
        /// Answers waiting for their delay; touched on the loop only.
        var timers: [LoopTimer] = []
        /// The server, once made (weak: the server's handler holds this); touched on the loop only.
        weak var server: HTTPServer?
    }

    private let thread: LoopThread
    private let shared = Shared()
    private let server: UncheckedBox<HTTPServer>
    public let port: Int
    public var origin: String { "http://127.0.0.1:\(port)" }
    /// Where the tests' verifiers receive results.
    public var url: String { origin + "/approvald/results" }

    /// - Parameter port: 0 for a free one; a given port lets a test bring the verifier back where it was.
    public init(status: Int = 200, port: Int = 0) throws {
        thread = try LoopThread()
        let loop = thread.loop
        let shared = self.shared
        shared.state.withLock { $0.status = status }
        let made = Locked<Result<(UncheckedBox<HTTPServer>, Int), any Error>?>(nil)
        let ready = DispatchSemaphore(value: 0)
        loop.execute {
            let server = HTTPServer(loop: loop, logger: Logger(label: "test-verifier")) { request, responder in
                var headers: [String: String] = [:]
                for field in request.headers { headers[field.name.lowercased()] = field.value }
                let callback = Callback(
                    method: request.method, path: request.path, headers: headers, body: request.body)
                let spoken = HTTPProtocol.allCases.filter { shared.server?.connectionCount(speaking: $0) ?? 0 > 0 }
                let (status, delay, body) = shared.state.withLock { state in
                    state.received.append(callback)
                    state.protocols.formUnion(spoken)
                    let status = state.script.isEmpty ? state.status : state.script.removeFirst()
                    return (status, state.delaySeconds, state.bodies[status] ?? "")
                }
                let answer = {
                    _ = responder.respond(
                        HTTPResponse(
                            status: status, headers: ["content-type": "application/json"], body: Array(body.utf8)))
                }
                guard delay > 0 else { return answer() }
                shared.timers.append(loop.schedule(after: delay, answer))
            }
            shared.server = server
            made.withLock { value in
                value = Result { (UncheckedBox(server), try server.listen(host: "127.0.0.1", port: port)) }
            }
            ready.signal()
        }
        guard ready.wait(timeout: .now() + 10) == .success, let result = made.withLock({ $0 }) else {
            thread.stop()
            throw TimedOut(seconds: 10)
        }
        do {
            (server, self.port) = try result.get()
        } catch {
            thread.stop()
            throw error
        }
    }

    /// The next callbacks get these statuses, in order; later ones get `then`.
    public func answer(_ statuses: [Int], then status: Int = 200) {
        shared.state.withLock { state in
            state.script = statuses
            state.status = status
        }
    }

    /// The body of every later answer with that status.
    public func body(_ text: String, for status: Int) { shared.state.withLock { $0.bodies[status] = text } }

    /// Each later answer comes this long after its request.
    public func delay(_ seconds: Double) { shared.state.withLock { $0.delaySeconds = seconds } }

    public var received: [Callback] { shared.state.withLock { $0.received } }

    /// The protocols of the connections open while requests arrived.
    public var protocols: Set<HTTPProtocol> { shared.state.withLock { $0.protocols } }

    /// Closes the listener and every connection, then stops the loop; the server is released only after that.
    public func stop() {
        let server = self.server
        let closed = DispatchSemaphore(value: 0)
        thread.loop.execute { server.value.shutdown(graceSeconds: 0) { closed.signal() } }
        _ = closed.wait(timeout: .now() + 10)
        withExtendedLifetime(server) { thread.stop() }
    }
}
