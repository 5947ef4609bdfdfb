// The HTTP/1.1 client for one origin: a bounded pool of persistent connections, each carrying one request at a
// time; requests beyond the pool wait in order (bounded too); a timeout per request; a request whose reused
// connection turned out closed before any answer is sent again on a new one.
import DequeModule
import EventLoop

/// `@unchecked Sendable`: confined to its loop's thread.
public final class HTTP1Client: HTTPClient, RequestTaking, @unchecked Sendable {
    let loop: EventLoop
    let host: String
    let port: Int
    let tls: TLSClientContext?
    let options: HTTPClientOptions
    /// The `Host` field sent with each request.
    let authority: String
    /// Every open connection, and those of them waiting for a request (the most recently used last).
    private var connections: [ObjectIdentifier: HTTP1ClientConnection] = [:]
    private var idle: [HTTP1ClientConnection] = []
    private var waiting = Deque<ClientRequest>()
    private(set) var isClosed = false

    /// - Parameter origin: `http://host:port` or `https://host:port`; `tls` is required for https.
    public init(loop: EventLoop, origin: String, tls: TLSClientContext?, options: HTTPClientOptions) throws {
        let parsed = try Origin(origin, tls: tls)
        self.loop = loop
        host = parsed.host
        port = parsed.port
        self.tls = parsed.secure ? tls : nil
        self.options = options
        authority = parsed.authority
    }

    deinit {
        for connection in connections.values { connection.abandon() }
    }

    /// The number of open connections (idle or carrying a request).
    public var connectionCount: Int { connections.count }

    @discardableResult
    public func send(
        method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutSeconds: Double?,
        onData: ((UnsafeBufferPointer<UInt8>) -> Void)?,
        completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void
    ) -> HTTPRequestHandle {
        take(
            ClientRequest(
                method: method, path: path, headers: headers, body: body, onData: onData, completion: completion,
                timeout: (loop, timeoutSeconds ?? options.requestTimeoutSeconds),
                withdraw: { [unowned self] in withdraw($0, $1) }))
    }

    /// On an idle connection, a new one while the pool has room, or in line.
    func dispatch(_ request: ClientRequest) {
        if let connection = idle.popLast() {
            connection.start(request)
        } else if connections.count < options.maxConnections {
            guard let connection = HTTP1ClientConnection(client: self, first: request) else {
                return request.finish(.failure(.connectFailed("cannot create a connection to \(authority)")))
            }
            connections[ObjectIdentifier(connection)] = connection
        } else if waiting.count < options.maxQueuedRequests {
            waiting.append(request)
        } else {
            request.finish(.failure(.connectFailed("queue full")))
        }
    }

    /// Takes a request back before its response (timed out, or cancelled). An HTTP/1.1 request cannot be withdrawn
    /// from its connection: the connection goes with it.
    func withdraw(_ request: ClientRequest, _ error: HTTPClientError) {
        if let index = waiting.firstIndex(where: { $0 === request }) { waiting.remove(at: index) }
        request.http1Connection?.abandon()
        request.finish(.failure(error))
    }

    // MARK: From the connections

    /// The connection answered its request and may carry the next.
    func connectionIdle(_ connection: HTTP1ClientConnection) {
        if let next = waiting.popFirst() { return connection.start(next) }
        idle.append(connection)
    }

    /// The connection closed (the peer, an error, an answer that ended it, a timeout).
    func connectionClosed(_ connection: HTTP1ClientConnection) {
        connections[ObjectIdentifier(connection)] = nil
        idle.removeAll { $0 === connection }
        if !isClosed, let next = waiting.popFirst() { dispatch(next) }
    }

    /// A request that never reached the server (its reused connection was found closed): once more, afresh.
    func retry(_ request: ClientRequest, after error: HTTPClientError) {
        guard !request.isFinished else { return }
        request.attempts += 1
        guard request.attempts <= 1, !isClosed else { return request.finish(.failure(error)) }
        dispatch(request)
    }

    public func close() {
        isClosed = true
        let failed = waiting
        waiting.removeAll()
        for request in failed { request.finish(.failure(.closed)) }
        for connection in Array(connections.values) { connection.abort(.closed) }
        idle.removeAll()
    }
}
