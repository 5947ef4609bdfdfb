// One HTTP/2 connection on the server: the preface check, the server session's streams, the timers, the budget of resets it may make the server send, the unsent response bytes it holds, and draining for
// shutdown. Its lifecycle is ConnectionStateMachine's; this type carries out the machine's actions.
import CLibevent
import CNghttp2
import COpenSSL
import EventLoop
import Glibc

/// `@unchecked Sendable`: confined to its server's loop thread.
final class ServerConnection: SessionConnection, ServedConnection, @unchecked Sendable {
    /// Unowned and unchecked: the server holds every connection until it closes, and the hot path would otherwise
    /// pay a reference count on each use.
    unowned(unsafe) let server: HTTPServer
    /// Copied from the server's limits: read on every header and body chunk.
    let maxHeaderBlockBytes: Int
    let maxRequestBodyBytes: Int
    let maxBufferedResponseBytes: Int
    let maxBufferedConnectionBytes: Int
    private var machine: ConnectionStateMachine
    /// Open streams, newest first, linked through the responders: no hashing per stream, no table per connection.
    private var newestStream: H2Stream?
    /// The preface, idle or linger timer (one at a time), and the timer of requests still arriving.
    private var timer: LoopTimer!
    private var requestTimer: LoopTimer!
    /// Streams whose answer ended before their request, and the timers that reset them if it still has not.
    private var resetsAfterSending: [Int32] = []
    private var pendingResets: [Int32: LoopTimer] = [:]
    /// How long a client whose request got an early answer (413, 431) may go on sending before the stream is reset.
    static let earlyAnswerGraceSeconds = 1.0
    /// Response bytes the streams hold that have not been handed to the socket yet.
    private(set) var bufferedResponseBytes = 0
    /// The monotonic time of the read under way: what streams opened in it are stamped with (one clock read per
    /// read, not per stream).
    private var readTime = 0.0

    var httpProtocol: HTTPProtocol? { .h2 }

    /// Takes over `bufferEvent` (a socket's, plain or TLS, or one end of an in-memory pair), which it frees when it
    /// closes.
    init?(server: HTTPServer, bufferEvent: OpaquePointer) {
        self.server = server
        let limits = server.limits
        maxHeaderBlockBytes = limits.maxHeaderBlockBytes
        maxRequestBodyBytes = limits.maxRequestBodyBytes
        maxBufferedResponseBytes = limits.maxBufferedResponseBytes
        maxBufferedConnectionBytes = limits.maxBufferedConnectionBytes
        machine = ConnectionStateMachine(
            timeouts: .init(
                preface: limits.prefaceTimeoutSeconds, idle: limits.idleTimeoutSeconds,
                request: limits.requestTimeoutSeconds),
            resetBurst: limits.sentResetBurst, resetRatePerSecond: limits.sentResetRatePerSecond,
            now: monotonicSeconds())
        super.init(loop: server.loop, bufferEvent: bufferEvent, outputHighWater: limits.outputHighWaterBytes)
        guard
            let session = NGHTTP2Session.server(
                callbacks: server.callbacks.table, options: server.sessionOptions, context: opaqueSelf)
        else { return nil }
        self.session = session
        session.submitSettings([
            (NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits.maxConcurrentStreams),
            (NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, UInt32(limits.maxHeaderBlockBytes)),
            (NGHTTP2_SETTINGS_ENABLE_PUSH, 0),
        ])
        timer = server.loop.makeTimer { [unowned self] in perform(machine.timerFired()) }
        requestTimer = server.loop.makeTimer { [unowned self] in requestTimerFired() }
        perform(machine.start())
        bufferevent_enable(bufferEvent, Int16(EV_READ | EV_WRITE))
    }

    func begin() {
        readable()
    }

    /// Carries out what the machine decided.
    private func perform(_ action: ConnectionStateMachine.Action) {
        switch action {
        case .none: break
        case .armTimer(let seconds): timer.schedule(after: seconds)
        case .armIdleTimer(let seconds): timer.scheduleShared(after: seconds)
        case .cancelTimer: timer.cancel()
        case .armRequestTimer(let seconds): requestTimer.schedule(after: seconds)
        case .endSession(let code):
            if code == .enhanceYourCalm {
                server.logger.notice("a client provoked too many stream resets: closing its connection")
            }
            session?.terminate(code)
            flush()
        case .goAway(let endSession):
            session?.submitGoAway()
            for stream in openStreams() where stream.isStreaming { stream.endStream() }
            if endSession { session?.terminate(.noError) }
            flush()
        case .close: close()
        }
    }

    override func readable() {
        guard let bufferEvent, !closed, let input = bufferevent_get_input(bufferEvent) else { return }
        if machine.state == .waitingForPreface {
            guard checkPreface(input) else { return }
        }
        readTime = monotonicSeconds()
        receive(from: input)
        if !closed { perform(machine.readEnded()) }
    }

    /// Until the 24-byte preface is complete, compares what arrived with it; anything else closes the connection.
    private func checkPreface(_ input: OpaquePointer) -> Bool {
        var head = [UInt8](repeating: 0, count: ProtocolDetection.preface.count)
        let available = max(0, Int(evbuffer_copyout(input, &head, head.count)))
        switch ProtocolDetection.classify(head.prefix(available)) {
        case .http1:
            perform(machine.badPreface())
            return false
        case .undecided:
            return false
        case .http2:
            perform(machine.prefaceReceived())
            return true
        }
    }

    override func writable() {
        // Nothing of ours (not even SETTINGS) goes out before the client's preface.
        guard machine.state != .waitingForPreface else { return }
        super.writable()
    }

    func resetAfterSending(_ streamID: Int32) {
        resetsAfterSending.append(streamID)
    }

    /// The early answer is out. A client that then finishes its request ends the stream by itself; one that is
    /// still sending a second later is reset (NO_ERROR). Resetting at once makes some clients (curl 7.88) drop the
    /// answer that arrived with the reset.
    override func didSerialize() {
        guard !resetsAfterSending.isEmpty else { return }
        for streamID in resetsAfterSending {
            pendingResets[streamID] = loop.schedule(after: Self.earlyAnswerGraceSeconds) { [unowned self] in
                pendingResets[streamID] = nil
                guard !closed, session?.hasStream(streamID) == true else { return }
                reset(streamID, .noError)
            }
        }
        resetsAfterSending.removeAll()
    }

    /// Resets a stream and sends the reset.
    func reset(_ streamID: Int32, _ code: H2ErrorCode) {
        session?.reset(streamID, code)
        flush()
    }

    override func sessionFailed(_ reason: String) {
        server.logger.debug("closing a connection after a protocol error", metadata: ["nghttp2": "\(reason)"])
    }

    // MARK: Timers, resets and draining

    /// Resets the streams whose request has taken longer than the request timeout, and waits for the next one due.
    private func requestTimerFired() {
        let now = monotonicSeconds()
        let expiredBefore = machine.requestTimerFired(now: now)
        var oldest: Double?
        for stream in openStreams() {
            stream.requestTimerFired(expiredBefore: expiredBefore)
            if let since = stream.arrivingSince { oldest = min(oldest ?? since, since) }
        }
        perform(machine.requestsStillArriving(oldest: oldest, now: now))
    }

    /// A stream's request is complete (or answered before it was): it now counts as activity.
    func requestSettled() {
        perform(machine.requestSettled())
    }

    /// nghttp2 sent a RST_STREAM: it costs a token of the budget.
    fileprivate func sentReset() {
        perform(machine.resetSent(now: monotonicSeconds()))
    }

    /// The streams' unsent response bytes changed; the server keeps the total.
    func bufferedResponseBytesChanged(by delta: Int) {
        guard delta != 0 else { return }
        bufferedResponseBytes += delta
        server.bufferedResponseBytesChanged(by: delta)
    }

    /// For shutdown: GOAWAY now (streams already open go on), streamed responses end, idle connections close.
    func drain() {
        guard !closed else { return }
        perform(machine.shutdownRequested())
    }

    /// The shutdown grace is over.
    func graceEnded() {
        perform(machine.shutdownGraceEnded())
    }

    override func didClose() {
        machine.closed()
        timer.cancel()
        requestTimer.cancel()
        pendingResets.removeAll()
        let open = openStreams()
        for stream in open { unlink(stream) }
        for stream in open { stream.closed() }
        server.connectionClosed(self)
    }

    // MARK: Streams (from the nghttp2 callbacks)

    /// The list owns the stream; nghttp2's stream user data points at it, so the callbacks find it without a
    /// lookup of ours. While this connection's (or every connection's) responses hold too much unsent, new streams
    /// are refused; nghttp2 then ignores the rest of their frames.
    fileprivate func beginStream(_ id: Int32) {
        guard bufferedResponseBytes <= maxBufferedConnectionBytes, !server.isOverBufferLimit else {
            reset(id, .refusedStream)
            return
        }
        let stream = H2Stream(connection: self, streamID: id, now: readTime)
        stream.olderStream = newestStream
        newestStream?.newerStream = stream
        newestStream = stream
        machine.streamOpened()
        session?.setStreamUserData(id, Unmanaged.passUnretained(stream).toOpaque())
    }

    fileprivate func streamClosed(_ stream: H2Stream) {
        guard stream.isLinked(newest: newestStream) else { return }
        let wasActive = !stream.isArriving
        unlink(stream)
        stream.closed()
        perform(machine.streamClosed(wasActive: wasActive))
    }

    private func unlink(_ stream: H2Stream) {
        if let newer = stream.newerStream {
            newer.olderStream = stream.olderStream
        } else {
            newestStream = stream.olderStream
        }
        stream.olderStream?.newerStream = stream.newerStream
        stream.olderStream = nil
        stream.newerStream = nil
    }

    private func openStreams() -> [H2Stream] {
        var streams: [H2Stream] = []
        var next = newestStream
        while let stream = next {
            streams.append(stream)
            next = stream.olderStream
        }
        return streams
    }
}

// MARK: - nghttp2 callbacks: each checks its pointers and forwards to the connection or the stream.

// The nghttp2 callbacks run inside `readable()` or `flush()`, which hold the connection, and a stream is held by
// its connection's list until it closes: so the callbacks borrow both without retaining them, except the close
// callback, which takes the stream out of the list and so must hold it itself.

/// Calls `body` with the connection, borrowed.
@inline(__always)
private func withConnection<Result>(
    _ context: UnsafeMutableRawPointer?, _ body: (ServerConnection) -> Result
)
    -> Result?
{
    guard let context else { return nil }
    return Unmanaged<ServerConnection>.fromOpaque(context)._withUnsafeGuaranteedRef(body)
}

/// Calls `body` with the request stream `id`, borrowed, found through nghttp2's stream user data.
@inline(__always)
private func withStream<Result>(_ session: OpaquePointer?, _ id: Int32, _ body: (H2Stream) -> Result) -> Result? {
    guard let pointer = NGHTTP2Session.streamUserData(session, id) else { return nil }
    return Unmanaged<H2Stream>.fromOpaque(pointer)._withUnsafeGuaranteedRef(body)
}

/// The server's nghttp2 callback table.
final class ServerCallbacks: Sendable {
    let table = CallbackTable { callbacks in
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, context in
            guard let frame, frame.isHeaders, frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
            withConnection(context) { $0.beginStream(frame.streamID) }
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) {
            session, frame, name, nameLength, value, valueLength, _, _ in
            guard let frame, let name, let value else { return 0 }
            withStream(session, frame.streamID) {
                $0.receiveHeader(
                    name: UnsafeBufferPointer(start: name, count: nameLength),
                    value: UnsafeBufferPointer(start: value, count: valueLength))
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) {
            session, _, streamID, data, length, _ in
            guard let data else { return 0 }
            withStream(session, streamID) { $0.receiveBody(UnsafeBufferPointer(start: data, count: length)) }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { session, frame, _ in
            guard let frame, frame.isHeaders || frame.isData else { return 0 }
            withStream(session, frame.streamID) { stream in
                if frame.isHeaders && frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST { stream.headersComplete() }
                if frame.endsStream { stream.requestComplete() }
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks) { _, frame, context in
            guard let frame, frame.type == NGHTTP2_RST_STREAM.rawValue else { return 0 }
            withConnection(context) { $0.sentReset() }
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { session, streamID, _, context in
            guard let pointer = NGHTTP2Session.streamUserData(session, streamID) else { return 0 }
            let stream = Unmanaged<H2Stream>.fromOpaque(pointer).takeUnretainedValue()
            withConnection(context) { $0.streamClosed(stream) }
            return 0
        }
    }
}
