// The server: listeners, each serving HTTP/2 and HTTP/1.1 on one port (TLS: by ALPN; cleartext: h2c with prior
// knowledge, or HTTP/1.1), the connections, the budget of unsent bytes over all of them, graceful shutdown.
import CLibevent
import COpenSSL
import EventLoop
import Glibc
import Logging

/// Bounds on what one client may make the server hold or do.
public struct HTTPServerLimits: Sendable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS sent to every client.
    public var maxConcurrentStreams: UInt32 = 128
    /// Larger request bodies get 413, whatever content-length says.
    public var maxRequestBodyBytes = 16 * 1024
    /// Larger header blocks (names + values + 32 per field, as RFC 9113 counts) get 431.
    public var maxHeaderBlockBytes = 16 * 1024
    /// A connection that has not finished TLS and said which protocol it speaks (ALPN, or its first bytes), or
    /// whose HTTP/2 preface has not arrived, by then is closed.
    public var prefaceTimeoutSeconds = 10.0
    /// A connection with no open stream for this long is sent GOAWAY and closed.
    public var idleTimeoutSeconds = 300.0
    /// A streamed response whose unsent bytes pass this is reset: a client that does not read is dropped.
    public var maxBufferedResponseBytes = 256 * 1024
    /// A connection holding more unsent response bytes than this gets no new stream (REFUSED_STREAM), and its
    /// streamed responses that would pass it are reset.
    public var maxBufferedConnectionBytes = 1 << 20
    /// Past this many unsent response bytes over all connections, new streams are refused everywhere and the
    /// connections holding the most are closed until the total is back under three quarters of it.
    public var maxBufferedBytesTotal = 64 << 20
    /// A request's headers and body must arrive within this; past it the stream is reset (HTTP/2), or the
    /// request answered 408 and the connection closed (HTTP/1.1).
    public var requestTimeoutSeconds = 10.0
    /// HTTP/1.1: a client that takes nothing of what is queued for it for this long is dropped.
    public var sendTimeoutSeconds = 30.0
    /// Frames stop being serialised (HTTP/2), and pipelined requests stop being read (HTTP/1.1), while a
    /// connection's socket buffer holds more than this.
    public var outputHighWaterBytes = 64 * 1024
    /// nghttp2's RST_STREAM flood guard: a bucket of `burst` resets refilled at `ratePerSecond`.
    public var streamResetBurst: UInt64 = 1000
    public var streamResetRatePerSecond: UInt64 = 33
    /// The same bucket for the resets the server sends itself (stream errors a client provokes, timed-out and
    /// refused requests): past it the connection gets GOAWAY(ENHANCE_YOUR_CALM) and is closed.
    public var sentResetBurst: UInt64 = 1000
    public var sentResetRatePerSecond: UInt64 = 33
    /// nghttp2's cap on CONTINUATION frames per header block.
    public var maxContinuations = 8
    /// After running out of file descriptors, accepting resumes this much later.
    public var acceptPauseSeconds = 0.25

    public init() {}
}

/// A request handler. It runs on the loop thread and answers through the responder, now or later.
public typealias HTTPHandler = (HTTPRequest, HTTPResponder) -> Void

/// Serves HTTP/2 and HTTP/1.1 on one event loop.
///
/// `@unchecked Sendable`: all state is confined to the loop's thread (checked in debug builds).
public final class HTTPServer: @unchecked Sendable {
    public let loop: EventLoop
    public let limits: HTTPServerLimits
    let handler: HTTPHandler
    let logger: Logger
    /// Called with the status of every response the server sends, its own refusals included, and the exchange it
    /// answers (its request's method and path; nil for an HTTP/1.1 request refused before its head was read).
    public var onResponse: ((_ status: Int, _ stream: HTTPResponder?) -> Void)?
    /// The answer to a request refused before any handler saw it (413, 431, and HTTP/1.1's 400, 408, 417, 505).
    public var earlyRefusal: (EarlyRefusal) -> HTTPResponse = { $0.plainResponse }

    private var listeners: [Listener] = []
    private var connections: [ObjectIdentifier: ServedConnection] = [:]
    private var shutdownCompletion: (() -> Void)?
    private var shutdownDeadline: LoopTimer?
    let callbacks: ServerCallbacks
    let sessionOptions: SessionOptions

    public init(
        loop: EventLoop, limits: HTTPServerLimits = HTTPServerLimits(), logger: Logger, handler: @escaping HTTPHandler
    ) {
        self.loop = loop
        self.limits = limits
        self.logger = logger
        self.handler = handler
        callbacks = ServerCallbacks()
        sessionOptions = SessionOptions(limits: limits)
    }

    /// The number of open connections, those whose protocol is not known yet included.
    public var connectionCount: Int { connections.count }

    /// The number of open connections that speak `httpProtocol`.
    public func connectionCount(speaking httpProtocol: HTTPProtocol) -> Int {
        connections.values.reduce(0) { $0 + ($1.httpProtocol == httpProtocol ? 1 : 0) }
    }
    /// Connections accepted since start.
    public private(set) var acceptedConnections = 0

    /// Unsent response bytes over all connections.
    public private(set) var bufferedResponseBytes = 0
    private var shedding: LoopTimer?

    /// Whether new streams are refused because responses already hold too much memory.
    var isOverBufferLimit: Bool { bufferedResponseBytes > limits.maxBufferedBytesTotal }

    func bufferedResponseBytesChanged(by delta: Int) {
        bufferedResponseBytes += delta
        if delta > 0 && isOverBufferLimit && shedding == nil {
            // Deferred: the connection that passed the limit may be inside one of its nghttp2 callbacks.
            shedding = loop.schedule(after: 0) { [unowned self] in shedLoad() }
        }
    }

    /// Closes the connections holding the most unsent bytes until the total is under three quarters of the limit.
    private func shedLoad() {
        shedding = nil
        let target = limits.maxBufferedBytesTotal / 4 * 3
        guard bufferedResponseBytes > target else { return }
        let heaviest = connections.values.filter { $0.bufferedResponseBytes > 0 }
            .sorted { $0.bufferedResponseBytes > $1.bufferedResponseBytes }
        logger.warning(
            "unsent responses over the limit: closing the connections holding the most",
            metadata: ["buffered_bytes": "\(bufferedResponseBytes)", "limit": "\(limits.maxBufferedBytesTotal)"])
        for connection in heaviest {
            guard bufferedResponseBytes > target else { break }
            connection.close()
        }
    }

    /// Whether `shutdown` has begun.
    public var isShuttingDown: Bool { shutdownCompletion != nil }

    /// Starts listening on `host:port` (port 0 picks a free one) and returns the bound port.
    @discardableResult
    public func listen(host: String, port: Int, tls: TLSServerContext? = nil) throws -> Int {
        loop.assertInLoop()
        let listener = try Listener(server: self, host: host, port: port, tls: tls)
        listeners.append(listener)
        return listener.port
    }

    func accepted(socket: Int32, tls: TLSServerContext?) {
        guard !isShuttingDown else {
            close(socket)
            return
        }
        var enabled: Int32 = 1
        setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &enabled, socklen_t(MemoryLayout<Int32>.size))
        // The bufferevent owns the socket from here on (BEV_OPT_CLOSE_ON_FREE), and the connection that holds it
        // frees it once.
        let options = Int32(BEV_OPT_CLOSE_ON_FREE.rawValue | BEV_OPT_DEFER_CALLBACKS.rawValue)
        let created: OpaquePointer?
        if let tls {
            guard let ssl = tls.makeSession() else {
                close(socket)
                return
            }
            created = bufferevent_openssl_socket_new(loop.base, socket, ssl, BUFFEREVENT_SSL_ACCEPTING, options)
            if created == nil { SSL_free(ssl) }
        } else {
            created = bufferevent_socket_new(loop.base, socket, options)
        }
        guard let created else {
            close(socket)
            logger.warning("could not set up a connection")
            return
        }
        adopt(IncomingConnection(server: self, bufferEvent: created, isSecure: tls != nil))
    }

    /// Serves a bufferevent that is not a socket's (one end of an in-memory pair, for the fuzz targets), which the
    /// connection frees when it closes.
    func serve(bufferEvent: OpaquePointer) {
        adopt(IncomingConnection(server: self, bufferEvent: bufferEvent, isSecure: false))
    }

    private func adopt(_ connection: ServedConnection) {
        connections[ObjectIdentifier(connection)] = connection
        acceptedConnections += 1
    }

    /// A connection's protocol is known: an HTTP/2 or HTTP/1.1 connection takes its bufferevent over.
    func classified(
        _ incoming: IncomingConnection, as httpProtocol: HTTPProtocol, bufferEvent: OpaquePointer, isSecure: Bool
    ) {
        connections[ObjectIdentifier(incoming)] = nil
        let connection: ServedConnection
        switch httpProtocol {
        case .h2:
            guard let h2 = ServerConnection(server: self, bufferEvent: bufferEvent) else {
                logger.warning("could not set up an HTTP/2 session")
                return
            }
            connection = h2
        case .http1:
            connection = HTTP1ServerConnection(server: self, bufferEvent: bufferEvent, isSecure: isSecure)
        }
        connections[ObjectIdentifier(connection)] = connection
        connection.begin()
        if isShuttingDown { connection.drain() }
    }

    func connectionClosed(_ connection: ServedConnection) {
        connections[ObjectIdentifier(connection)] = nil
        if isShuttingDown && connections.isEmpty { finishShutdown() }
        if trimming == nil {
            trimming = loop.schedule(after: Self.trimDelaySeconds) { [unowned self] in
                trimming = nil
                // What closed connections freed goes back to the system, not only to malloc's free lists: a burst
                // of connections that held much must not leave the process that large.
                malloc_trim(0)
            }
        }
    }

    /// Connections that close within this of each other share one `malloc_trim`.
    static let trimDelaySeconds = 1.0
    private var trimming: LoopTimer?

    /// Stops accepting, sends GOAWAY on every connection, ends streamed responses, lets requests in flight finish
    /// for at most `graceSeconds`, then closes what is left and calls `completion` (once).
    public func shutdown(graceSeconds: Double, completion: @escaping () -> Void) {
        loop.assertInLoop()
        guard !isShuttingDown else { return }
        shutdownCompletion = completion
        listeners.removeAll()
        logger.info("shutting down", metadata: ["connections": "\(connections.count)"])
        for connection in Array(connections.values) { connection.drain() }
        if connections.isEmpty {
            finishShutdown()
            return
        }
        shutdownDeadline = loop.schedule(after: graceSeconds) { [unowned self] in
            logger.warning("shutdown grace ended", metadata: ["connections_left": "\(connections.count)"])
            for connection in Array(connections.values) { connection.graceEnded() }
        }
    }

    private func finishShutdown() {
        shutdownDeadline = nil
        let completion = shutdownCompletion
        shutdownCompletion = {}
        completion?()
    }
}

/// One listening socket. Pauses accepting when the process runs out of file descriptors, instead of spinning.
final class Listener {
    private unowned let server: HTTPServer
    private var listener: OpaquePointer?
    let tls: TLSServerContext?
    private(set) var port = 0
    private var resumeTimer: LoopTimer?

    init(server: HTTPServer, host: String, port: Int, tls: TLSServerContext?) throws {
        self.server = server
        self.tls = tls
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var found: UnsafeMutablePointer<addrinfo>? = nil
        let status = getaddrinfo(host, String(port), &hints, &found)
        guard status == 0, let address = found else {
            throw EventLoopError(
                "cannot resolve listen address \(host):\(port): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(found) }
        let flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC
        guard
            let listener = evconnlistener_new_bind(
                server.loop.base,
                { _, socket, _, _, context in
                    guard let context else { return }
                    let listener = Unmanaged<Listener>.fromOpaque(context).takeUnretainedValue()
                    listener.server.accepted(socket: socket, tls: listener.tls)
                }, Unmanaged.passUnretained(self).toOpaque(), flags, 1024, address.pointee.ai_addr,
                Int32(address.pointee.ai_addrlen))
        else {
            throw EventLoopError("cannot listen on \(host):\(port): \(String(cString: strerror(errno)))")
        }
        self.listener = listener
        evconnlistener_set_error_cb(listener) { _, context in
            guard let context else { return }
            Unmanaged<Listener>.fromOpaque(context).takeUnretainedValue().acceptFailed(errno: errno)
        }
        var bound = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = getsockname(evconnlistener_get_fd(listener), $0, &length)
            }
        }
        self.port = Int(
            bound.ss_family == sa_family_t(AF_INET6)
                ? withUnsafePointer(to: &bound) {
                    $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
                }
                : withUnsafePointer(to: &bound) {
                    $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
                })
    }

    deinit { if let listener { evconnlistener_free(listener) } }

    private func acceptFailed(errno code: Int32) {
        switch code {
        case EMFILE, ENFILE, ENOBUFS, ENOMEM:
            // The pending connection stays in the backlog and would wake us at once, forever: stop listening for
            // a moment instead, and let connections that close give their descriptors back.
            evconnlistener_disable(listener)
            server.logger.warning(
                "out of file descriptors: accepting paused",
                metadata: ["pause_seconds": "\(server.limits.acceptPauseSeconds)"])
            resumeTimer = server.loop.schedule(after: server.limits.acceptPauseSeconds) { [unowned self] in
                evconnlistener_enable(listener)
            }
        default:
            server.logger.debug("accept failed", metadata: ["errno": "\(code)"])
        }
    }
}
