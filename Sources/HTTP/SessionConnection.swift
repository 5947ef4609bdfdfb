// What a server and a client connection share: a bufferevent (plain or TLS) carrying one nghttp2 session —
// feeding it what arrives, serialising what it queues with back-pressure, and closing once.
import CLibevent
import EventLoop
import Glibc

/// `@unchecked Sendable`: confined to its loop's thread.
class SessionConnection: @unchecked Sendable {
    let loop: EventLoop
    var bufferEvent: OpaquePointer?
    var session: NGHTTP2Session?
    /// Frames stop being serialised while the socket buffer holds more than this.
    let outputHighWater: Int
    private var receiving = false
    private var sending = false
    private var closeRequested = false
    /// Set once closing is decided: what is buffered is written, nothing more is serialised.
    var closeWhenFlushed = false
    private(set) var closed = false

    init(loop: EventLoop, bufferEvent: OpaquePointer, outputHighWater: Int) {
        self.loop = loop
        self.bufferEvent = bufferEvent
        self.outputHighWater = outputHighWater
        bufferevent_setcb(bufferEvent, onReadable, onWritable, onEvent, Unmanaged.passUnretained(self).toOpaque())
    }

    /// A connection released without `close()` (its owner went away) still frees its C objects.
    deinit {
        session?.delete()
        if let bufferEvent { bufferevent_free(bufferEvent) }
    }

    /// The context nghttp2 hands back to the callbacks.
    var opaqueSelf: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// Subclasses look at the input first (the server checks the preface), then call `receive(from:)`.
    func readable() {
        guard let bufferEvent, !closed, let input = bufferevent_get_input(bufferEvent) else { return }
        receive(from: input)
    }

    /// Feeds every buffered byte to nghttp2, chain by chain without copying, then sends what that produced.
    final func receive(from input: OpaquePointer) {
        guard let session else { return }
        receiving = true
        var vectors = [iovec](repeating: iovec(), count: 8)
        var failure: Int?
        while evbuffer_get_length(input) > 0 && failure == nil && !closeRequested {
            let count = Int(evbuffer_peek(input, -1, nil, &vectors, Int32(vectors.count)))
            var consumed = 0
            for vector in vectors.prefix(min(count, vectors.count)) {
                let result = session.receive(vector.iov_base.assumingMemoryBound(to: UInt8.self), count: vector.iov_len)
                if result < 0 {
                    failure = result
                    break
                }
                consumed += result
            }
            evbuffer_drain(input, consumed)
        }
        receiving = false
        if closeRequested {
            close()
            return
        }
        if let failure {
            // nghttp2 has queued a GOAWAY for the protocol error it reports: send it, then close.
            sessionFailed(NGHTTP2Session.describe(failure))
            session.terminate(.protocolError)
        }
        flush()
    }

    /// Called after each chunk of frames nghttp2 serialised: what those frames made necessary can be submitted now.
    func didSerialize() {}

    /// A protocol error ended the session; the subclass may log it.
    func sessionFailed(_ reason: String) {}

    /// Serialises what nghttp2 has queued into the socket buffer, up to the high-water mark; the rest waits for
    /// the socket to drain (`writable`). Closes once neither side has anything left to say.
    final func flush() {
        // Inside nghttp2's receive or send (a callback that submits a frame), the loop under way sends it.
        guard !receiving, !sending, !closed, let bufferEvent, let output = bufferevent_get_output(bufferEvent) else {
            return
        }
        sending = true
        var failed = false
        while !closeWhenFlushed && !closeRequested, let session, evbuffer_get_length(output) < outputHighWater {
            guard let frames = session.nextOutput() else {
                failed = true
                break
            }
            guard let data = frames.baseAddress, frames.count > 0 else { break }
            evbuffer_add(output, data, frames.count)
            didSerialize()
        }
        sending = false
        if failed || closeRequested {
            close()
            return
        }
        if let session, !session.isActive { closeWhenFlushed = true }
        if closeWhenFlushed && evbuffer_get_length(output) == 0 { close() }
    }

    func writable() {
        flush()
    }

    /// BEV_EVENT_CONNECTED (TCP connect or TLS handshake done) goes to `connected()`; EOF, errors and timeouts
    /// close the connection.
    func event(_ what: Int16) {
        if what & Int16(BEV_EVENT_CONNECTED) != 0 {
            connected()
        } else if what & Int16(BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT) != 0 {
            close()
        }
    }

    func connected() {}

    /// Closes at once (deferred to the end of the current read or write if one is under way). Subclasses release
    /// their streams in `didClose()`.
    final func close() {
        guard !closed else { return }
        if receiving || sending {
            closeRequested = true
            return
        }
        closed = true
        session?.delete()
        session = nil
        if let bufferEvent { bufferevent_free(bufferEvent) }
        bufferEvent = nil
        didClose()
    }

    func didClose() {}

    /// The TLS session of this connection, if it has one.
    var tlsSession: OpaquePointer? {
        bufferEvent.flatMap { bufferevent_openssl_get_ssl($0) }
    }
}

private func connection(_ context: UnsafeMutableRawPointer?) -> SessionConnection? {
    context.map { Unmanaged<SessionConnection>.fromOpaque($0).takeUnretainedValue() }
}

private func onReadable(_: OpaquePointer?, _ context: UnsafeMutableRawPointer?) { connection(context)?.readable() }
private func onWritable(_: OpaquePointer?, _ context: UnsafeMutableRawPointer?) { connection(context)?.writable() }
private func onEvent(_: OpaquePointer?, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    connection(context)?.event(what)
}
