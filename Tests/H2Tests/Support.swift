// Test support: a loop on its own thread, bounded waits for loop callbacks, and a server+client pair.
import Foundation
import H2
import Logging
import Synchronization
import Testing

struct TimedOut: Error, CustomStringConvertible {
    let seconds: Double
    var description: String { "nothing happened within \(seconds) s" }
}

/// Resumes a continuation once: with the first value given, or with `TimedOut` after `seconds`.
final class OneShot<Value: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<Value, any Error>?>(nil)

    func set(_ continuation: CheckedContinuation<Value, any Error>) {
        self.continuation.withLock { $0 = continuation }
    }

    func resume(_ result: Result<Value, any Error>) {
        let pending = continuation.withLock { value -> CheckedContinuation<Value, any Error>? in
            defer { value = nil }
            return value
        }
        pending?.resume(with: result)
    }
}

/// An event loop running on a thread of its own until `stop()`.
final class LoopThread: Sendable {
    let loop: EventLoop
    private let finished = DispatchSemaphore(value: 0)

    init() throws {
        loop = try EventLoop()
        let loop = self.loop
        let started = DispatchSemaphore(value: 0)
        let finished = self.finished
        let thread = Thread {
            loop.execute { started.signal() }
            loop.run()
            finished.signal()
        }
        thread.start()
        precondition(started.wait(timeout: .now() + 10) == .success, "the loop did not start")
    }

    /// Stops the loop and waits (bounded) for its thread to leave it, so loop-bound objects can be released.
    func stop() {
        loop.stop()
        _ = finished.wait(timeout: .now() + 10)
    }

    /// Runs `body` on the loop; it calls `done` (on any thread) exactly once. Fails after `timeout` seconds.
    func wait<Value: Sendable>(
        timeout: Double = 10, _ body: @escaping @Sendable (_ done: @escaping @Sendable (Value) -> Void) -> Void
    ) async throws -> Value {
        let once = OneShot<Value>()
        return try await withCheckedThrowingContinuation { continuation in
            once.set(continuation)
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
                once.resume(.failure(TimedOut(seconds: timeout)))
            }
            loop.execute { body { value in once.resume(.success(value)) } }
        }
    }

    /// Runs `body` on the loop and returns its value.
    func run<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
        let result: Result<Value, TestFailure> = try await wait { done in
            do { done(.success(try body())) } catch { done(.failure(TestFailure(description: "\(error)"))) }
        }
        return try result.get()
    }
}

struct TestFailure: Error, CustomStringConvertible { let description: String }

let testLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}()

/// A server on 127.0.0.1 with the given handler, and a client for it, both on one loop thread.
final class ServerFixture: @unchecked Sendable {
    let thread: LoopThread
    var loop: EventLoop { thread.loop }
    private(set) var server: H2Server!
    private(set) var client: H2Client!
    private(set) var port = 0

    deinit {
        // Nothing may run on the loop while the server and client are released.
        thread.stop()
    }

    init(
        limits: H2ServerLimits = H2ServerLimits(), tls: TLSServerContext? = nil, clientTLS: TLSClientContext? = nil,
        clientHost: String = "127.0.0.1", clientOptions: H2Client.Options = H2Client.Options(),
        handler: @escaping HTTPHandler
    ) async throws {
        thread = try LoopThread()
        let handler = UncheckedBox(handler)
        try await thread.run { [self] in
            server = H2Server(loop: loop, limits: limits, logger: testLogger, handler: handler.value)
            port = try server.listen(host: "127.0.0.1", port: 0, tls: tls)
            let scheme = tls == nil ? "http" : "https"
            client = try H2Client(
                loop: loop, origin: "\(scheme)://\(clientHost):\(port)", tls: clientTLS, options: clientOptions,
                logger: testLogger)
        }
    }

    /// Sends one request with the fixture's client and waits for its result.
    func send(
        _ method: String = "GET", _ path: String, headers: HTTPHeaders = [], body: [UInt8] = [], timeout: Double? = nil
    ) async throws -> Result<H2ClientResponse, H2ClientError> {
        let headerCopy = UncheckedBox(headers)
        return try await thread.wait { [self] done in
            client.send(method: method, path: path, headers: headerCopy.value, body: body, timeoutSeconds: timeout) {
                done($0)
            }
        }
    }
}

/// Carries a value that is only read on the loop across the `@Sendable` boundary.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

extension Result where Success == H2ClientResponse {
    var response: H2ClientResponse? { try? get() }
    var status: Int? { response?.status }
    var text: String? { response.map { String(decoding: $0.body, as: UTF8.self) } }
    var error: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
