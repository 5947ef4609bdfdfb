// A client with a bound on requests in flight: the rest wait here, in order, instead of piling up in the
// connection or the pool (where they would all run their timeouts while queued).
import DequeModule
import EventLoop
import Foundation
import HTTP
import Logging

/// A URL in the configuration that is not one the Service can call.
public struct UnusableURL: Error, CustomStringConvertible {
    public let description: String
}

/// A client for `url`'s origin (TLS for https, trusting `caFile` or else the system's CAs) that speaks
/// `clientProtocol`, and the path with query to request there.
func connect(
    to url: String, speaking clientProtocol: ClientProtocol = .h2, caFile: String?,
    options: HTTPClientOptions = HTTPClientOptions(), loop: EventLoop, logger: Logger
) throws -> (client: any HTTPClient, path: String) {
    guard let parsed = URL(string: url), let scheme = parsed.scheme, ["http", "https"].contains(scheme) else {
        throw UnusableURL(description: "\(url) is not an http:// or https:// URL")
    }
    let tls = scheme == "https" ? try TLSClientContext(caFile: caFile) : nil
    let client = try makeHTTPClient(
        loop: loop, origin: url, tls: tls, speaking: clientProtocol, options: options, logger: logger)
    return (client, (parsed.path.isEmpty ? "/" : parsed.path) + (parsed.query.map { "?\($0)" } ?? ""))
}

/// `@unchecked Sendable`: confined to the event loop.
final class BoundedClient: @unchecked Sendable {
    private struct Request {
        let method: String
        let path: String
        let headers: HTTPHeaders
        let body: [UInt8]
        let completion: (Result<HTTPClientResponse, HTTPClientError>) -> Void
    }

    let client: any HTTPClient
    let limit: Int
    private(set) var inFlight = 0
    private var waiting = Deque<Request>()
    /// Whether a request sent now would go out at once rather than wait here.
    var hasRoom: Bool { inFlight < limit }

    init(_ client: any HTTPClient, limit: Int) {
        self.client = client
        self.limit = limit
    }

    func send(
        method: String, path: String, headers: HTTPHeaders, body: [UInt8],
        completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void
    ) {
        let request = Request(method: method, path: path, headers: headers, body: body, completion: completion)
        if inFlight < limit { start(request) } else { waiting.append(request) }
    }

    private func start(_ request: Request) {
        inFlight += 1
        client.send(method: request.method, path: request.path, headers: request.headers, body: request.body) {
            [self] result in
            inFlight -= 1
            if let next = waiting.popFirst() { start(next) }
            request.completion(result)
        }
    }
}
