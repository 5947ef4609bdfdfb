// The transport on this project's HTTP client (Linux, and anywhere libevent and nghttp2 are): an event loop on a
// thread of its own or a shared one, and one client that carries the requests and the event streams alike (on HTTP/2
// one connection; a stream the caller stops reading is withdrawn from it).
import EventLoop
import Foundation
import HTTP
import Logging

/// `@unchecked Sendable`: its client is touched only on its loop's thread, through `loop.execute`.
public final class EventLoopTransport: ApprovalTransport, @unchecked Sendable {
    private let loop: EventLoop
    /// Whether the loop is this transport's own (stopped when it goes) rather than its caller's.
    private let ownsLoop: Bool
    private let origin: String
    private let clientProtocol: ClientProtocol
    private let tls: TLSClientContext?
    private let logger: Logger
    private let connection = Connection()
    /// Signalled when a loop of the transport's own has stopped.
    private let loopEnded = DispatchSemaphore(value: 0)

    /// A transport to `baseURL`'s origin (http:// or https://), speaking `clientProtocol` (on https, by default
    /// whatever the broker picks by ALPN; on http, HTTP/2 with prior knowledge); `caFile` for a broker whose
    /// certificate the system does not trust.
    /// - Parameter loop: a running loop to share (many phones of one process on one thread); by default the
    ///   transport runs a loop of its own. Devices of one user of the transport may share it too: on HTTP/2 their
    ///   requests and streams then share one connection (up to the broker's concurrent streams, 128 by default).
    public init(
        baseURL: String, clientProtocol: ClientProtocol? = nil, caFile: String? = nil, loop shared: EventLoop? = nil
    ) throws {
        guard let url = URL(string: baseURL), let scheme = url.scheme, ["http", "https"].contains(scheme),
            let host = url.host
        else { throw ApprovalError.invalidActivation("\(baseURL) is not an http:// or https:// URL") }
        origin = "\(scheme)://\(host.contains(":") ? "[\(host)]" : host)" + (url.port.map { ":\($0)" } ?? "")
        self.clientProtocol = clientProtocol ?? (scheme == "https" ? .negotiated : .h2)
        tls = scheme == "https" ? try TLSClientContext(caFile: caFile) : nil
        var logger = Logger(label: "approvalkit")
        logger.logLevel = .error
        self.logger = logger
        ownsLoop = shared == nil
        loop = try shared ?? EventLoop()
        guard ownsLoop else { return }
        let thread = Thread { [loop, loopEnded] in
            loop.run()
            loopEnded.signal()
        }
        thread.name = "approvalkit-loop"
        thread.start()
    }

    deinit { scheduleClose() }

    /// Closes the connection (what is outstanding fails), after the work already handed to the loop; on a loop
    /// of its own, stops the loop and waits (at most 2 s) for it to end, so that a process may exit right after.
    /// Idempotent; requests after it fail. Not to be called on the loop's own thread.
    public func close() {
        scheduleClose()
        if ownsLoop { _ = loopEnded.wait(timeout: .now() + 2) }
    }

    /// The closure holds the loop weakly: queued on a shared loop that has already stopped (a transport released
    /// after its process's loop ended), it would otherwise keep the loop, and the loop it, alive for good.
    private func scheduleClose() {
        let (ownsLoop, connection) = (self.ownsLoop, self.connection)
        loop.execute { [weak loop] in
            connection.close()
            if ownsLoop { loop?.stop() }
        }
    }

    public func send(_ request: TransportRequest) async throws -> TransportResponse {
        try await withCheckedThrowingContinuation { continuation in
            onLoop { [self] in
                do {
                    try client().send(
                        method: request.method, path: request.path,
                        headers: HTTPHeaders(request.headers.map { (name: $0.0, value: $0.1) }),
                        body: request.body, timeoutSeconds: nil, onData: nil
                    ) { result in
                        switch result {
                        case .success(let response):
                            continuation.resume(
                                returning: TransportResponse(status: response.status, body: response.body))
                        case .failure(let error): continuation.resume(throwing: ApprovalError.unreachable("\(error)"))
                        }
                    }
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    public func stream(_ request: TransportRequest) -> AsyncThrowingStream<StreamPart, any Error> {
        AsyncThrowingStream { continuation in
            onLoop { [self] in
                do {
                    // A day: the stream ends when the broker or the caller ends it, not on a timer.
                    let sent = try client().send(
                        method: request.method, path: request.path,
                        headers: HTTPHeaders(request.headers.map { (name: $0.0, value: $0.1) }),
                        body: request.body, timeoutSeconds: 86_400,
                        onData: { continuation.yield(.bytes(Array($0))) }
                    ) { result in
                        switch result {
                        case .success(let response):
                            continuation.yield(.ended(status: response.status))
                            continuation.finish()
                        case .failure(let error): continuation.finish(throwing: ApprovalError.unreachable("\(error)"))
                        }
                    }
                    let handle = LoopBound(sent)
                    continuation.onTermination = { [loop] _ in loop.execute { handle.value.cancel() } }
                } catch {
                    continuation.finish(throwing: error)
                }
            }
        }
    }

    /// Runs `work` on the loop: at once when called there (a task running on the loop, as `Task(executorPreference:)`
    /// with a shared loop makes it), else soon.
    private func onLoop(_ work: @escaping @Sendable () -> Void) {
        if loop.isRunningHere { work() } else { loop.execute(work) }
    }

    /// The client, made on first use.
    private func client() throws -> any HTTPClient {
        if let open = connection.client { return open }
        guard !connection.isClosed else { throw ApprovalError.unreachable("the transport is closed") }
        var options = HTTPClientOptions()
        options.requestTimeoutSeconds = 40
        let made = try makeHTTPClient(
            loop: loop, origin: origin, tls: tls, speaking: clientProtocol, options: options, logger: logger)
        connection.client = made
        return made
    }
}

/// The transport's client, apart from it so that closing it may outlive it (its `deinit` closes it on the loop).
///
/// `@unchecked Sendable`: touched only on the loop's thread.
private final class Connection: @unchecked Sendable {
    var client: (any HTTPClient)?
    private(set) var isClosed = false

    func close() {
        isClosed = true
        client?.close()
        client = nil
    }
}
