// One HTTP/1.1 connection on the server: reads requests one at a time through HTTP1RequestParser, hands each to
// the same handler as HTTP/2, writes the answers in order (complete, or chunked for a streamed body), and keeps
// the budgets HTTP/2 keeps: request and idle timeouts, unsent bytes per connection and in all, a client that does
// not read. Its lifecycle is HTTP1ConnectionStateMachine's; this type carries out the machine's actions.
import CLibevent
import EventLoop
import Glibc

/// `@unchecked Sendable`: confined to its server's loop thread.
final class HTTP1ServerConnection: ServedConnection, @unchecked Sendable {
    /// Unowned and unchecked: the server holds every connection until it closes.
    unowned(unsafe) let server: HTTPServer
    private var bufferEvent: OpaquePointer?
    private var machine: HTTP1ConnectionStateMachine
    private let parser: HTTP1RequestParser
    private var timer: LoopTimer!
    /// The request with its handler (or streaming its response), and how a streamed response is framed.
    private var exchange: HTTP1Exchange?
    private var streamFraming = HTTP1Wire.Framing.chunked
    private var outputWatch: OpaquePointer?
    private(set) var bufferedResponseBytes = 0
    /// Inside `readRequests()`: a close is deferred to its end, and a response does not start another read.
    private var reading = false
    private var closeRequested = false
    private(set) var closed = false

    var httpProtocol: HTTPProtocol? { .http1 }

    /// Takes over `bufferEvent` (plain or TLS, its handshake done), which it frees when it closes.
    init(server: HTTPServer, bufferEvent: OpaquePointer, isSecure: Bool) {
        self.server = server
        self.bufferEvent = bufferEvent
        let limits = server.limits
        machine = HTTP1ConnectionStateMachine(
            timeouts: .init(idle: limits.idleTimeoutSeconds, request: limits.requestTimeoutSeconds),
            now: monotonicSeconds())
        parser = HTTP1RequestParser(
            maxHeadBytes: limits.maxHeaderBlockBytes, maxBodyBytes: limits.maxRequestBodyBytes,
            scheme: isSecure ? "https" : "http")
        let context = Unmanaged.passUnretained(self).toOpaque()
        bufferevent_setcb(bufferEvent, onReadable, onWritable, onEvent, context)
        // Reading stops while this much waits unread (a request with its handler, and what was pipelined after it).
        bufferevent_setwatermark(bufferEvent, Int16(EV_READ), 0, limits.outputHighWaterBytes)
        // A client that reads nothing of what is queued for it for this long is dropped.
        var stall = timeval(seconds: limits.sendTimeoutSeconds)
        bufferevent_set_timeouts(bufferEvent, nil, &stall)
        if let output = bufferevent_get_output(bufferEvent) {
            outputWatch = evbuffer_add_cb(output, onOutputChanged, context)
        }
        timer = server.loop.makeTimer { [unowned self] in perform(machine.timerFired(now: monotonicSeconds())) }
        perform(machine.start())
        bufferevent_enable(bufferEvent, Int16(EV_READ | EV_WRITE))
    }

    func begin() {
        readRequests()
    }

    deinit {
        if let bufferEvent { bufferevent_free(bufferEvent) }
    }

    /// Carries out what the machine decided.
    private func perform(_ action: HTTP1ConnectionStateMachine.Action) {
        switch action {
        case .none: break
        case .armTimer(let seconds): timer.schedule(after: seconds)
        case .armIdleTimer(let seconds): timer.scheduleShared(after: seconds)
        case .dispatch: dispatch()
        case .refuse(let refusal):
            timer.cancel()
            server.onResponse?(refusal.status, nil)
            write(server.earlyRefusal(refusal), omittingBody: false, keepAlive: false)
        case .readNext: readRequests()
        case .shutWrite(let lingerSeconds):
            if let bufferEvent { shutdown(bufferevent_getfd(bufferEvent), Int32(SHUT_WR)) }
            timer.schedule(after: lingerSeconds)
        case .endStream:
            if streamFraming == .chunked { append(HTTP1Wire.lastChunk) }
            finishExchange()
        case .close: close()
        }
    }

    // MARK: Reading requests

    fileprivate func readable() {
        guard let bufferEvent, !closed, let input = bufferevent_get_input(bufferEvent) else { return }
        if machine.discardsInput {
            evbuffer_drain(input, evbuffer_get_length(input))
            return
        }
        readRequests()
    }

    /// Parses what has arrived while the machine reads requests: a complete one goes to its handler (which may
    /// answer at once, and the loop goes on with the next), a refused one is answered and ends the connection.
    /// Between requests, reading waits while the output is over its mark.
    private func readRequests() {
        guard !reading, !closed, let bufferEvent, let input = bufferevent_get_input(bufferEvent),
            let output = bufferevent_get_output(bufferEvent)
        else { return }
        reading = true
        defer {
            reading = false
            if closeRequested { close() } else { perform(machine.readEnded(now: monotonicSeconds())) }
        }
        let outputMark = server.limits.outputHighWaterBytes
        while machine.readsRequests, !closeRequested, evbuffer_get_length(input) > 0 {
            if machine.state == .idle && evbuffer_get_length(output) >= outputMark { break }
            var chunk = iovec()
            guard evbuffer_peek(input, -1, nil, &chunk, 1) > 0 else { break }
            let (consumed, outcome) = parser.parse(
                UnsafeBufferPointer(start: chunk.iov_base.assumingMemoryBound(to: UInt8.self), count: chunk.iov_len))
            evbuffer_drain(input, consumed)
            if consumed > 0 && machine.state == .idle { machine.requestBegan(now: monotonicSeconds()) }
            switch outcome {
            case .needMore:
                if consumed == 0 { return }
            case .head:
                if parser.head?.expectsContinue == true { append(HTTP1Wire.continueResponse) }
            case .message:
                perform(machine.requestReceived())
            case .refused(let refusal):
                perform(machine.requestRefused(refusal))
            }
        }
    }

    /// Hands the request just read to the handler.
    private func dispatch() {
        guard let head = parser.head else { return }
        let body = parser.body
        parser.nextRequest()
        let exchange = HTTP1Exchange(connection: self, head: head)
        self.exchange = exchange
        server.handler(HTTPRequest(method: head.method, path: head.path, fields: head.fields, body: body), exchange)
    }

    // MARK: Answering (from the exchange)

    func respond(_ exchange: HTTP1Exchange, _ response: HTTPResponse) -> Bool {
        guard exchange === self.exchange, !closed, machine.state == .handling else { return false }
        let (keepAlive, then) = machine.responded(requestKeepsAlive: exchange.keepAlive)
        server.onResponse?(response.status, exchange)
        write(response, omittingBody: exchange.isHead, keepAlive: keepAlive)
        finishExchange()
        perform(then)
        return true
    }

    /// Chunked, or for an HTTP/1.0 client until the connection closes (which a streamed response's does anyway).
    func startStream(_ exchange: HTTP1Exchange, status: Int, headers: HTTPHeaders) -> Bool {
        guard exchange === self.exchange, !closed, machine.streamStarted() else { return false }
        server.onResponse?(status, exchange)
        streamFraming = exchange.isHTTP10 ? .untilClose : .chunked
        append(HTTP1Wire.head(status: status, headers: headers, framing: streamFraming, keepAlive: !exchange.isHTTP10))
        return true
    }

    /// A chunk of a streamed response. A client that leaves more than the stream's budget unread is dropped.
    func writeChunk(_ exchange: HTTP1Exchange, _ bytes: [UInt8]) -> Bool {
        guard exchange === self.exchange, !closed, machine.state == .streaming else { return false }
        guard !bytes.isEmpty else { return true }
        append(streamFraming == .chunked ? HTTP1Wire.chunk(bytes) : bytes)
        guard bufferedResponseBytes <= server.limits.maxBufferedResponseBytes else {
            close()
            return false
        }
        return true
    }

    func endStream(_ exchange: HTTP1Exchange) {
        guard exchange === self.exchange, !closed else { return }
        perform(machine.streamEnded())
    }

    /// The exchange's answer is complete: it leaves the connection and its `onClose` runs, as an HTTP/2 stream's
    /// does when its response is sent.
    private func finishExchange() {
        let finished = exchange
        exchange = nil
        finished?.closed()
    }

    /// The head and the body in one write.
    private func write(_ response: HTTPResponse, omittingBody: Bool, keepAlive: Bool) {
        let framing: HTTP1Wire.Framing =
            HTTP1Wire.hasNoContent(response.status) ? .none : .contentLength(response.body.count)
        let body = omittingBody || framing == .none ? [] : response.body
        var bytes = HTTP1Wire.head(
            status: response.status, headers: response.headers, framing: framing, keepAlive: keepAlive,
            reserving: body.count)
        bytes.append(contentsOf: body)
        append(bytes)
    }

    /// Queues bytes for the client; one that has left more than the connection's budget unread is dropped.
    private func append(_ bytes: [UInt8]) {
        guard let bufferEvent, !bytes.isEmpty else { return }
        _ = bytes.withUnsafeBytes { bufferevent_write(bufferEvent, $0.baseAddress, $0.count) }
        if bufferedResponseBytes > server.limits.maxBufferedConnectionBytes { close() }
    }

    /// Unsent bytes changed (queued by a write, or taken by the socket): the connection and the server keep count.
    fileprivate func outputChanged(by delta: Int) {
        guard delta != 0, !closed else { return }
        bufferedResponseBytes += delta
        server.bufferedResponseBytesChanged(by: delta)
    }

    fileprivate func writable() {
        guard let bufferEvent, !closed, evbuffer_get_length(bufferevent_get_output(bufferEvent)) == 0 else { return }
        perform(machine.outputDrained())
    }

    fileprivate func event(_ what: Int16) {
        if what & Int16(BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT) != 0 { close() }
    }

    // MARK: Shutdown and closing

    func drain() {
        guard !closed else { return }
        perform(machine.shutdownRequested())
    }

    func graceEnded() {
        perform(machine.shutdownGraceEnded())
    }

    /// Closes at once (at the end of the read under way, if there is one).
    func close() {
        guard !closed else { return }
        if reading {
            closeRequested = true
            return
        }
        closed = true
        machine.closed()
        timer.cancel()
        if let bufferEvent {
            if let outputWatch, let output = bufferevent_get_output(bufferEvent) {
                evbuffer_remove_cb_entry(output, outputWatch)
            }
            bufferevent_free(bufferEvent)
        }
        bufferEvent = nil
        outputWatch = nil
        server.bufferedResponseBytesChanged(by: -bufferedResponseBytes)
        bufferedResponseBytes = 0
        finishExchange()
        server.connectionClosed(self)
    }
}

/// One request on an HTTP/1.1 connection, as its handler sees it.
///
/// `@unchecked Sendable`: confined to the server's loop thread.
final class HTTP1Exchange: HTTPResponder, @unchecked Sendable {
    /// Cleared when the exchange is finished or the connection closes: everything after that is a no-op.
    private var connection: HTTP1ServerConnection?
    let keepAlive: Bool
    /// A HEAD request's answer has a head and no body.
    let isHead: Bool
    let isHTTP10: Bool

    init(connection: HTTP1ServerConnection, head: HTTP1RequestHead) {
        self.connection = connection
        keepAlive = head.keepAlive
        isHead = head.method == "HEAD"
        isHTTP10 = head.isHTTP10
        super.init()
        method = head.method
        path = head.path
    }

    override public var isOpen: Bool { connection != nil }

    // The connection's machine decides what each may do: answer while handling, write while streaming.

    @discardableResult
    override public func respond(_ response: HTTPResponse) -> Bool {
        connection?.respond(self, response) ?? false
    }

    @discardableResult
    override public func startStream(status: Int, headers: HTTPHeaders) -> Bool {
        connection?.startStream(self, status: status, headers: headers) ?? false
    }

    @discardableResult
    override public func write(_ bytes: [UInt8]) -> Bool {
        connection?.writeChunk(self, bytes) ?? false
    }

    override public func endStream() {
        connection?.endStream(self)
    }

    /// The answer is complete or the connection closed.
    func closed() {
        connection = nil
        exchangeClosed()
    }
}

// MARK: - libevent callbacks: each recovers the connection and forwards.

private func withConnection(_ context: UnsafeMutableRawPointer?, _ body: (HTTP1ServerConnection) -> Void) {
    guard let context else { return }
    body(Unmanaged<HTTP1ServerConnection>.fromOpaque(context).takeUnretainedValue())
}

private func onReadable(_: OpaquePointer?, _ context: UnsafeMutableRawPointer?) {
    withConnection(context) { $0.readable() }
}
private func onWritable(_: OpaquePointer?, _ context: UnsafeMutableRawPointer?) {
    withConnection(context) { $0.writable() }
}
private func onEvent(_: OpaquePointer?, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    withConnection(context) { $0.event(what) }
}
private func onOutputChanged(
    _: OpaquePointer?, _ info: UnsafePointer<evbuffer_cb_info>?, _ context: UnsafeMutableRawPointer?
) {
    guard let info else { return }
    withConnection(context) { $0.outputChanged(by: info.pointee.n_added - info.pointee.n_deleted) }
}
