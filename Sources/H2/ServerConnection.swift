// One accepted connection: the HTTP/2 preface check (HTTP/1.x gets 505), the server session's streams, the
// preface, idle and request timers, the budget of resets it may make the server send, the unsent response bytes it
// holds, and draining for shutdown.
import CLibevent
import CNghttp2
import COpenSSL
import Glibc

private let clientPreface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
private let http2Required: [UInt8] = {
    let text = "HTTP/2 required: use h2 over TLS (ALPN h2), or h2c with prior knowledge.\n"
    return Array(
        ("HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\nconnection: close\r\n"
            + "content-length: \(text.utf8.count)\r\n\r\n" + text).utf8)
}()

/// `@unchecked Sendable`: confined to its server's loop thread.
final class ServerConnection: SessionConnection, @unchecked Sendable {
    unowned let server: H2Server
    /// Copied from the server's limits: read on every header and body chunk.
    let maxHeaderBlockBytes: Int
    let maxRequestBodyBytes: Int
    let maxBufferedResponseBytes: Int
    let maxBufferedConnectionBytes: Int
    /// Open streams, newest first, linked through the responders: no hashing per stream, no table per connection.
    private var newestStream: HTTPResponder?
    private var streamCount = 0
    private var timer: LoopTimer!
    /// Streams whose request is still arriving: they answer to the request timeout, and do not keep the connection
    /// from being idle.
    private var arrivingStreams = 0
    private var requestTimer: LoopTimer!
    private var requestTimerArmed = false
    /// Every RST_STREAM the server sends costs a token: a client that provokes stream errors ("MadeYouReset",
    /// CVE-2025-8671) cannot make it reset, and so start, requests without bound.
    private var resetBudget: TokenBucket
    private var calmingDown = false
    /// Response bytes the streams hold that have not been handed to the socket yet.
    private(set) var bufferedResponseBytes = 0
    private var prefaceSeen = false
    /// Streams whose answer ended before their request, and the timers that reset them if it still has not.
    private var resetsAfterSending: [Int32] = []
    private var pendingResets: [Int32: LoopTimer] = [:]
    /// How long a client whose request got an early answer (413, 431) may go on sending before the stream is reset.
    static let earlyAnswerGraceSeconds = 1.0
    /// A 505 was sent: the connection is on its way out (see `rejectHTTP1`).
    private var lingering = false
    private var halfClosed = false
    private var draining = false

    init?(server: H2Server, socket: Int32, tls: TLSServerContext?) {
        self.server = server
        maxHeaderBlockBytes = server.limits.maxHeaderBlockBytes
        maxRequestBodyBytes = server.limits.maxRequestBodyBytes
        maxBufferedResponseBytes = server.limits.maxBufferedResponseBytes
        maxBufferedConnectionBytes = server.limits.maxBufferedConnectionBytes
        resetBudget = TokenBucket(
            burst: server.limits.sentResetBurst, ratePerSecond: server.limits.sentResetRatePerSecond,
            now: monotonicSeconds())
        let base = server.loop.base
        let options = Int32(BEV_OPT_CLOSE_ON_FREE.rawValue | BEV_OPT_DEFER_CALLBACKS.rawValue)
        // The connection owns the socket from here on: closed here until a bufferevent holds it, by the
        // bufferevent (BEV_OPT_CLOSE_ON_FREE, freed once in deinit) after.
        let created: OpaquePointer?
        if let tls {
            guard let ssl = tls.makeSession() else {
                Glibc.close(socket)
                return nil
            }
            created = bufferevent_openssl_socket_new(base, socket, ssl, BUFFEREVENT_SSL_ACCEPTING, options)
            if created == nil { SSL_free(ssl) }
        } else {
            created = bufferevent_socket_new(base, socket, options)
        }
        guard let created else {
            Glibc.close(socket)
            return nil
        }
        super.init(loop: server.loop, bufferEvent: created, outputHighWater: server.limits.outputHighWaterBytes)
        var session: OpaquePointer? = nil
        guard
            nghttp2_session_server_new2(
                &session, server.callbacks.table.callbacks, opaqueSelf, server.sessionOptions.option)
                == 0
        else { return nil }
        self.session = session
        submitSettings()
        timer = server.loop.makeTimer { [unowned self] in timedOut() }
        requestTimer = server.loop.makeTimer { [unowned self] in requestDeadlinePassed() }
        timer.schedule(after: server.limits.prefaceTimeoutSeconds)
        bufferevent_enable(created, Int16(EV_READ | EV_WRITE))
    }

    private func submitSettings() {
        let limits = server.limits
        var settings = [
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: limits.maxConcurrentStreams
            ),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                value: UInt32(limits.maxHeaderBlockBytes)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
    }

    override func readable() {
        guard let bufferEvent, !closed, let input = bufferevent_get_input(bufferEvent) else { return }
        if lingering {
            evbuffer_drain(input, evbuffer_get_length(input))
            return
        }
        if !prefaceSeen {
            guard checkPreface(input) else { return }
        }
        receive(from: input)
        // Armed once a read leaves a request unfinished, not for each request: most arrive whole in one read.
        if arrivingStreams > 0 && !requestTimerArmed && !closed {
            requestTimerArmed = true
            requestTimer.schedule(after: server.limits.requestTimeoutSeconds)
        }
    }

    /// Until the 24-byte preface is complete, compares what arrived with it. HTTP/1.x (or anything else) gets 505.
    private func checkPreface(_ input: OpaquePointer) -> Bool {
        var head = [UInt8](repeating: 0, count: clientPreface.count)
        let available = max(0, Int(evbuffer_copyout(input, &head, head.count)))
        guard head.prefix(available).elementsEqual(clientPreface.prefix(available)) else {
            rejectHTTP1()
            return false
        }
        guard available == clientPreface.count else { return false }
        prefaceSeen = true
        activityChanged()
        return true
    }

    /// Answers 505, then closes gracefully: once the answer is written the write side is shut and what the client
    /// still sends is discarded until it closes (at most 2 s). Closing with its request unread would make the
    /// kernel send a reset, and the client could lose the answer.
    private func rejectHTTP1() {
        guard let bufferEvent, !lingering else { return }
        server.onResponse?(505)
        lingering = true
        _ = http2Required.withUnsafeBytes { bufferevent_write(bufferEvent, $0.baseAddress, $0.count) }
        timer.schedule(after: 2)
    }

    override func writable() {
        // Nothing of ours (not even SETTINGS) goes out before the client's preface: an HTTP/1.x client must see its
        // 505 and nothing else.
        guard prefaceSeen || lingering else { return }
        guard lingering else { return super.writable() }
        guard let bufferEvent, !halfClosed, evbuffer_get_length(bufferevent_get_output(bufferEvent)) == 0 else {
            return
        }
        halfClosed = true
        shutdown(bufferevent_getfd(bufferEvent), Int32(SHUT_WR))
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
                guard !closed, nghttp2_session_get_stream_user_data(session, streamID) != nil else { return }
                nghttp2_submit_rst_stream(
                    session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, UInt32(NGHTTP2_NO_ERROR.rawValue))
                flush()
            }
        }
        resetsAfterSending.removeAll()
    }

    override func sessionFailed(_ reason: String) {
        server.logger.debug("closing a connection after a protocol error", metadata: ["nghttp2": "\(reason)"])
    }

    /// The TLS handshake is done: a client that chose http/1.1 by ALPN gets 505.
    override func connected() {
        if let tlsSession, negotiatedProtocol(tlsSession) == "http/1.1" { rejectHTTP1() }
    }

    // MARK: Timers and draining

    /// Streams whose request is complete disarm the timer; with none, it counts down the idle timeout (before
    /// that, the preface's). Called when the number of such streams moves between 0 and 1.
    private func activityChanged() {
        guard prefaceSeen else { return }
        if streamCount == arrivingStreams {
            timer.scheduleShared(after: server.limits.idleTimeoutSeconds)
        } else {
            timer.cancel()
        }
    }

    /// Resets the streams whose request has taken longer than the request timeout, and waits for the next one due.
    private func requestDeadlinePassed() {
        requestTimerArmed = false
        let now = monotonicSeconds()
        let timeout = server.limits.requestTimeoutSeconds
        var nextDue: Double?
        var next = newestStream
        while let stream = next {
            next = stream.olderStream
            guard let since = stream.arrivingSince else { continue }
            if since + timeout <= now {
                stream.requestTimedOut()
                nghttp2_submit_rst_stream(
                    session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.streamID, UInt32(NGHTTP2_CANCEL.rawValue))
            } else {
                nextDue = min(nextDue ?? since + timeout, since + timeout)
            }
        }
        if let nextDue {
            requestTimerArmed = true
            requestTimer.schedule(after: nextDue - now)
        }
        flush()
    }

    /// A stream's request is complete (or answered before it was): it now counts as activity.
    func requestSettled() {
        arrivingStreams -= 1
        if streamCount - arrivingStreams == 1 { activityChanged() }
    }

    /// nghttp2 sent a RST_STREAM. Past the budget, GOAWAY(ENHANCE_YOUR_CALM): nghttp2 ignores what the client
    /// sends from here on and ends the session once the GOAWAY is out.
    fileprivate func sentReset() {
        guard !resetBudget.take(now: monotonicSeconds()), !calmingDown else { return }
        calmingDown = true
        server.logger.notice("a client provoked too many stream resets: closing its connection")
        nghttp2_session_terminate_session(session, UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue))
    }

    /// The streams' unsent response bytes changed; the server keeps the total.
    func bufferedResponseBytesChanged(by delta: Int) {
        bufferedResponseBytes += delta
        server.bufferedResponseBytesChanged(by: delta)
    }

    private func timedOut() {
        guard prefaceSeen, !lingering else {
            close()
            return
        }
        nghttp2_session_terminate_session(session, UInt32(NGHTTP2_NO_ERROR.rawValue))
        flush()
    }

    /// For shutdown: GOAWAY now (streams already open go on), streamed responses end, idle connections close.
    func drain() {
        guard !closed else { return }
        guard prefaceSeen, !lingering, !closeWhenFlushed else {
            close()
            return
        }
        draining = true
        nghttp2_submit_goaway(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
            UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
        for stream in openStreams() where stream.isStreaming { stream.endStream() }
        if streamCount == 0 { nghttp2_session_terminate_session(session, UInt32(NGHTTP2_NO_ERROR.rawValue)) }
        flush()
    }

    override func didClose() {
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
    /// lookup of ours.
    /// A stream whose request is still arriving counts against the request timeout only: it does not keep the
    /// connection from being idle. While this connection's (or every connection's) responses hold too much unsent,
    /// new streams are refused; nghttp2 then ignores the rest of their frames.
    fileprivate func beginStream(_ id: Int32) {
        guard bufferedResponseBytes <= maxBufferedConnectionBytes, !server.isOverBufferLimit else {
            nghttp2_submit_rst_stream(
                session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, UInt32(NGHTTP2_REFUSED_STREAM.rawValue))
            return
        }
        let stream = HTTPResponder(connection: self, streamID: id, now: monotonicSeconds())
        stream.olderStream = newestStream
        newestStream?.newerStream = stream
        newestStream = stream
        streamCount += 1
        arrivingStreams += 1
        nghttp2_session_set_stream_user_data(session, id, Unmanaged.passUnretained(stream).toOpaque())
    }

    fileprivate func streamClosed(_ stream: HTTPResponder) {
        guard stream.isLinked(newest: newestStream) else { return }
        let wasActive = !stream.isArriving
        unlink(stream)
        if !wasActive { arrivingStreams -= 1 }
        stream.closed()
        if wasActive && streamCount == arrivingStreams { activityChanged() }
        if streamCount == 0 && draining {
            nghttp2_session_terminate_session(session, UInt32(NGHTTP2_NO_ERROR.rawValue))
        }
    }

    private func unlink(_ stream: HTTPResponder) {
        if let newer = stream.newerStream {
            newer.olderStream = stream.olderStream
        } else {
            newestStream = stream.olderStream
        }
        stream.olderStream?.newerStream = stream.newerStream
        stream.olderStream = nil
        stream.newerStream = nil
        streamCount -= 1
    }

    private func openStreams() -> [HTTPResponder] {
        var streams: [HTTPResponder] = []
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
private func withStream<Result>(_ session: OpaquePointer?, _ id: Int32, _ body: (HTTPResponder) -> Result) -> Result? {
    guard let pointer = nghttp2_session_get_stream_user_data(session, id) else { return nil }
    return Unmanaged<HTTPResponder>.fromOpaque(pointer)._withUnsafeGuaranteedRef(body)
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
            guard let pointer = nghttp2_session_get_stream_user_data(session, streamID) else { return 0 }
            let stream = Unmanaged<HTTPResponder>.fromOpaque(pointer).takeUnretainedValue()
            withConnection(context) { $0.streamClosed(stream) }
            return 0
        }
    }
}
