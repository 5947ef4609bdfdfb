// The HTTP/2 client on the loop: h2c or TLS (verified peer, SNI, ALPN h2), many requests multiplexed on one
// connection, a timeout per request, and a new connection after GOAWAY or a drop. The request and error types
// are every client's (HTTPClient).
import CLibevent
import CNghttp2
import EventLoop
import Logging

public struct HTTPClientResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
}

public enum HTTPClientError: Error, Equatable, CustomStringConvertible {
    /// No connection could be made (refused, unreachable, DNS, TLS handshake or peer verification).
    case connectFailed(String)
    /// No complete response within the request's timeout.
    case timeout
    /// The connection ended before the response did; the request may or may not have been processed.
    case connectionLost
    /// The peer reset the stream with this HTTP/2 error code.
    case streamReset(UInt32)
    /// The response body passed the client's limit.
    case responseTooLarge
    /// The client was closed.
    case closed
    /// The sender withdrew the request (`HTTPRequestHandle.cancel()`).
    case cancelled
    /// Offered h2 and http/1.1 by ALPN, the server chose http/1.1 (NegotiatingClient moves to HTTP/1.1).
    case peerChoseHTTP1
    /// The response was not HTTP/1.1 as RFC 9112 writes it.
    case malformedResponse(String)

    public var description: String {
        switch self {
        case .connectFailed(let why): "connect failed: \(why)"
        case .timeout: "timed out"
        case .connectionLost: "connection lost"
        case .streamReset(let code): "stream reset (HTTP/2 error \(code))"
        case .responseTooLarge: "response too large"
        case .closed: "client closed"
        case .cancelled: "cancelled"
        case .peerChoseHTTP1: "the server chose http/1.1 by ALPN"
        case .malformedResponse(let why): "malformed HTTP/1.1 response: \(why)"
        }
    }

    /// Whether sending again may succeed: everything but an oversized answer, a closed client or a withdrawn request.
    public var isTransient: Bool { self != .responseTooLarge && self != .closed && self != .cancelled }
}

/// What every client of an origin is bounded by.
public struct HTTPClientOptions: Sendable {
    public var connectTimeoutSeconds = 5.0
    public var requestTimeoutSeconds = 10.0
    public var maxResponseBodyBytes = 1 << 20
    /// Requests waiting for a connection beyond this fail at once instead of queueing without bound.
    public var maxQueuedRequests = 100_000
    /// HTTP/1.1: persistent connections to the origin at most (each carries one request at a time).
    public var maxConnections = 64
    public init() {}
}

/// A client for one origin (`http://host:port` for h2c, `https://host:port` for TLS).
///
/// `@unchecked Sendable`: confined to its loop's thread.
public final class H2Client: HTTPClient, RequestTaking, @unchecked Sendable {
    public typealias Options = HTTPClientOptions

    let loop: EventLoop
    let host: String
    let port: Int
    let scheme: String
    let tls: TLSClientContext?
    let options: Options
    let logger: Logger
    private var connection: ClientConnection?
    /// Connections that received GOAWAY: kept until their last streams end.
    private var draining: [ObjectIdentifier: ClientConnection] = [:]
    private var waiting: [ClientRequest] = []
    private(set) var isClosed = false
    let callbacks = ClientCallbacks.shared
    /// What TLS connections offer by ALPN: h2 alone, or both for a client that lets the server choose.
    var alpnOffer = ALPNOffer.h2

    /// - Parameter origin: `http://host:port` or `https://host:port`; `tls` is required for https.
    public init(
        loop: EventLoop, origin: String, tls: TLSClientContext? = nil, options: Options = Options(), logger: Logger
    )
        throws
    {
        let parsed = try Origin(origin, tls: tls)
        self.loop = loop
        host = parsed.host
        port = parsed.port
        scheme = parsed.secure ? "https" : "http"
        self.tls = parsed.secure ? tls : nil
        self.options = options
        self.logger = logger
    }

    /// The `:authority` sent with each request.
    var authority: String { Origin.authority(host: host, port: port) }

    /// Sends a request; `completion` runs on the loop exactly once.
    ///
    /// With `onData`, the response body is streamed: each chunk goes to `onData` as it arrives (no size limit),
    /// and the response given to `completion` has an empty body. For event streams and other long responses.
    @discardableResult
    public func send(
        method: String, path: String, headers: HTTPHeaders = [], body: [UInt8] = [], timeoutSeconds: Double? = nil,
        onData: ((UnsafeBufferPointer<UInt8>) -> Void)? = nil,
        completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void
    ) -> HTTPRequestHandle {
        take(
            ClientRequest(
                method: method, path: path, headers: headers, body: body, onData: onData, completion: completion,
                timeout: (loop, timeoutSeconds ?? options.requestTimeoutSeconds),
                withdraw: { [unowned self] in withdraw($0, $1) }))
    }

    func dispatch(_ request: ClientRequest) {
        if let connection, connection.isConnected {
            connection.submit(request)
            return
        }
        guard waiting.count < options.maxQueuedRequests else {
            return request.finish(.failure(.connectFailed("queue full")))
        }
        waiting.append(request)
        if connection == nil || connection!.isDraining {
            connection = ClientConnection(client: self)
            if connection == nil { failWaiting(.connectFailed("cannot create a connection")) }
        }
    }

    /// Takes a request back before its response (timed out, or cancelled): its stream is reset.
    func withdraw(_ request: ClientRequest, _ error: HTTPClientError) {
        if let index = waiting.firstIndex(where: { $0 === request }) { waiting.remove(at: index) }
        request.connection?.cancel(request)
        request.finish(.failure(error))
    }

    // MARK: From the connection

    func connectionReady(_ ready: ClientConnection) {
        guard ready === connection else { return }
        let queued = waiting
        waiting.removeAll()
        for request in queued { ready.submit(request) }
    }

    /// GOAWAY arrived: new requests go to a new connection; this one finishes its streams.
    func connectionDraining(_ drainingConnection: ClientConnection) {
        draining[ObjectIdentifier(drainingConnection)] = drainingConnection
        if drainingConnection === connection { connection = nil }
    }

    func connectionFailed(_ failed: ClientConnection, _ error: HTTPClientError) {
        guard failed === connection else { return }
        connection = nil
        failWaiting(error)
    }

    func connectionClosed(_ closed: ClientConnection) {
        draining[ObjectIdentifier(closed)] = nil
        if closed === connection { connection = nil }
        if !waiting.isEmpty && connection == nil && !isClosed {
            connection = ClientConnection(client: self)
        }
    }

    /// A stream the server refused without processing it (above GOAWAY's last stream id): safe to send again.
    func retry(_ request: ClientRequest) {
        guard !request.isFinished else { return }
        request.attempts += 1
        guard request.attempts <= 3 else {
            return request.finish(.failure(.streamReset(NGHTTP2_REFUSED_STREAM.rawValue)))
        }
        dispatch(request)
    }

    private func failWaiting(_ error: HTTPClientError) {
        let failed = waiting
        waiting.removeAll()
        for request in failed { request.finish(.failure(error)) }
    }

    deinit {
        connection?.abort(.closed)
        for connection in draining.values { connection.abort(.closed) }
    }

    /// Fails what is outstanding with `.closed` and closes the connection.
    public func close() {
        isClosed = true
        failWaiting(.closed)
        connection?.abort(.closed)
        connection = nil
        for connection in Array(draining.values) { connection.abort(.closed) }
    }
}

/// One request's state, from `send` to its completion.
final class ClientRequest {
    let method: String
    let path: String
    let headers: HTTPHeaders
    let body: [UInt8]
    var bodySent = 0
    private var completion: ((Result<HTTPClientResponse, HTTPClientError>) -> Void)?
    /// The client's way of taking the request back from its connection, ending it with an error.
    private let withdraw: (ClientRequest, HTTPClientError) -> Void
    var timer: LoopTimer?
    weak var connection: ClientConnection?
    var streamID: Int32 = -1
    var attempts = 0
    var status = 0
    var responseHeaders: HTTPHeaders = []
    var responseBody: [UInt8] = []
    var onData: ((UnsafeBufferPointer<UInt8>) -> Void)?
    var responseEnded = false
    /// The HTTP/1.1 connection carrying the request, while one does.
    weak var http1Connection: HTTP1ClientConnection?

    /// `timeout`: on `loop`, the request is withdrawn with `.timeout` after `seconds` unless it has finished by then.
    init(
        method: String, path: String, headers: HTTPHeaders, body: [UInt8],
        onData: ((UnsafeBufferPointer<UInt8>) -> Void)?,
        completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void,
        timeout: (loop: EventLoop, seconds: Double), withdraw: @escaping (ClientRequest, HTTPClientError) -> Void
    ) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.onData = onData
        self.completion = completion
        self.withdraw = withdraw
        timer = timeout.loop.schedule(after: timeout.seconds) { [unowned self] in withdraw(self, .timeout) }
    }

    var isFinished: Bool { completion == nil }

    /// Withdraws the request unless it has finished: it completes with `.cancelled`.
    func cancel() {
        guard !isFinished else { return }
        withdraw(self, .cancelled)
    }

    func finish(_ result: Result<HTTPClientResponse, HTTPClientError>) {
        guard let completion else { return }
        self.completion = nil
        onData = nil
        timer = nil
        completion(result)
    }
}

/// `http(s)://host:port`, IPv6 hosts in brackets; the port defaults to 80 or 443.
struct Origin {
    let secure: Bool
    let host: String
    let port: Int

    /// `host:port`, an IPv6 host in brackets: the `:authority` or `Host` of a request.
    var authority: String { Self.authority(host: host, port: port) }

    static func authority(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Throws `connectFailed` for text that is not an origin, or an https origin without a TLS context.
    init(_ text: String, tls: TLSClientContext?) throws {
        guard let parsed = Origin(text) else {
            throw HTTPClientError.connectFailed("not an http(s)://host:port origin: \(text)")
        }
        guard !parsed.secure || tls != nil else { throw HTTPClientError.connectFailed("https needs a TLS context") }
        self = parsed
    }

    init?(_ text: String) {
        let rest: Substring
        if text.hasPrefix("https://") {
            secure = true
            rest = text.dropFirst(8)
        } else if text.hasPrefix("http://") {
            secure = false
            rest = text.dropFirst(7)
        } else {
            return nil
        }
        let hostPort = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        var host: Substring
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { return nil }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { return nil }
        } else {
            let parts = hostPort.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { return nil }
            host = parts[0]
            portText = parts.count == 2 ? parts[1] : nil
        }
        guard !host.isEmpty else { return nil }
        let port = portText.map { Int($0) } ?? (secure ? 443 : 80)
        guard let port, (1...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
    }
}
