// Test support: a loop on its own thread, bounded waits for loop callbacks, and a server+client pair.
import EventLoop
import Foundation
import HTTP
import Logging
import Synchronization
import TestSupport
import Testing

let testLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}()

/// A server on 127.0.0.1 with the given handler, and a client for it (HTTP/2 unless told otherwise), both on one
/// loop thread.
final class ServerFixture: @unchecked Sendable {
    let thread: LoopThread
    var loop: EventLoop { thread.loop }
    private(set) var server: HTTPServer!
    private(set) var client: (any HTTPClient)!
    private(set) var port = 0

    /// Loop-bound objects a test made besides the server and client, released with them.
    private var kept: [AnyObject] = []

    deinit {
        // Nothing may run on the loop while the server, the client and what was kept are released.
        thread.stop()
    }

    /// Keeps a loop-bound object until the loop has stopped (releasing it while the loop runs would race it).
    func keepUntilStopped(_ object: AnyObject) {
        kept.append(object)
    }

    init(
        limits: HTTPServerLimits = HTTPServerLimits(), tls: TLSServerContext? = nil, clientTLS: TLSClientContext? = nil,
        clientHost: String = "127.0.0.1", clientOptions: HTTPClientOptions = HTTPClientOptions(),
        clientProtocol: ClientProtocol = .h2, handler: @escaping HTTPHandler
    ) async throws {
        thread = try LoopThread()
        let handler = UncheckedBox(handler)
        try await thread.run { [self] in
            server = HTTPServer(loop: loop, limits: limits, logger: testLogger, handler: handler.value)
            port = try server.listen(host: "127.0.0.1", port: 0, tls: tls)
            let scheme = tls == nil ? "http" : "https"
            client = try makeHTTPClient(
                loop: loop, origin: "\(scheme)://\(clientHost):\(port)", tls: clientTLS, speaking: clientProtocol,
                options: clientOptions, logger: testLogger)
        }
    }

    /// Sends one request with the fixture's client and waits for its result.
    func send(
        _ method: String = "GET", _ path: String, headers: HTTPHeaders = [], body: [UInt8] = [], timeout: Double? = nil
    ) async throws -> Result<HTTPClientResponse, HTTPClientError> {
        let headerCopy = UncheckedBox(headers)
        return try await thread.wait { [self] done in
            client.send(
                method: method, path: path, headers: headerCopy.value, body: body, timeoutSeconds: timeout, onData: nil
            ) { done($0) }
        }
    }
}

extension Result where Success == HTTPClientResponse {
    var response: HTTPClientResponse? { try? get() }
    var status: Int? { response?.status }
    var text: String? { response.map { String(decoding: $0.body, as: UTF8.self) } }
    var error: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
