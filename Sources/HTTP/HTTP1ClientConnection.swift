// One persistent HTTP/1.1 client connection: connect (DNS, TCP, TLS with ALPN http/1.1), then one request at a
// time — written whole, its response read by HTTP1ResponseParser — and kept for the next while both sides agree.
import CLibevent
import EventLoop
import Glibc

/// `@unchecked Sendable`: confined to its loop's thread.
final class HTTP1ClientConnection: @unchecked Sendable {
    /// `connecting → busy ⇄ idle → closed`.
    enum State {
        /// TCP (and TLS) under way, with the request that asked for the connection.
        case connecting(ClientRequest)
        /// A request is written and its response is being read; `reused` when the connection carried one before.
        case busy(ClientRequest, reused: Bool)
        /// Open, waiting in the pool for a request.
        case idle
        case closed
    }

    /// Weak: the client owns its connections, and may be released while a connect is under way.
    private weak var client: HTTP1Client?
    private let authority: String
    private var bufferEvent: OpaquePointer?
    private var state: State
    private let parser: HTTP1ResponseParser
    private var connectTimer: LoopTimer?
    /// Response bytes have arrived for the request under way: it reached the server, and is never sent again.
    private var answering = false

    init?(client: HTTP1Client, first request: ClientRequest) {
        guard let created = makeClientBufferEvent(loop: client.loop, tls: client.tls, offer: .http1, host: client.host)
        else { return nil }
        self.client = client
        authority = client.authority
        bufferEvent = created
        state = .connecting(request)
        parser = HTTP1ResponseParser(maxBodyBytes: client.options.maxResponseBodyBytes)
        request.http1Connection = self
        bufferevent_setcb(created, onReadable, nil, onEvent, Unmanaged.passUnretained(self).toOpaque())
        bufferevent_enable(created, Int16(EV_READ | EV_WRITE))
        let timeout = client.options.connectTimeoutSeconds
        connectTimer = client.loop.schedule(after: timeout) { [unowned self] in
            abort(.connectFailed("no connection to \(authority) within \(timeout) s"))
        }
        guard
            bufferevent_socket_connect_hostname(
                created, client.loop.dnsBase, AF_UNSPEC, client.host, Int32(client.port))
                == 0
        else {
            // Reported through the event callback too; make sure it is reported once, later.
            client.loop.execute { [weak self] in
                guard let self else { return }
                abort(.connectFailed("cannot connect to \(authority)"))
            }
            return
        }
    }

    deinit {
        if let bufferEvent { bufferevent_free(bufferEvent) }
    }

    /// Writes `request` on this idle connection.
    func start(_ request: ClientRequest) {
        guard case .idle = state else { return request.finish(.failure(.connectionLost)) }
        state = .busy(request, reused: true)
        write(request)
    }

    private func write(_ request: ClientRequest) {
        guard let bufferEvent else { return }
        request.http1Connection = self
        answering = false
        parser.reset()
        parser.onBody = request.onData
        var head = HTTP1Wire.requestHead(
            method: request.method, path: request.path, authority: authority, headers: request.headers,
            contentLength: request.body.count)
        head.append(contentsOf: request.body)
        _ = head.withUnsafeBytes { bufferevent_write(bufferEvent, $0.baseAddress, $0.count) }
    }

    // MARK: Events

    fileprivate func event(_ what: Int16) {
        if what & Int16(BEV_EVENT_CONNECTED) != 0 {
            connectTimer = nil
            disableNagle(bufferEvent)
            guard case .connecting(let request) = state else { return }
            state = .busy(request, reused: false)
            write(request)
        } else if what & Int16(BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT) != 0 {
            switch state {
            case .connecting:
                abort(.connectFailed(connectFailure(of: bufferEvent, authority: authority)))
            case .busy where answering && what & Int16(BEV_EVENT_EOF) != 0:
                // A body read until the connection closes ends here.
                readable(endOfStream: true)
            default:
                abort(.connectionLost)
            }
        }
    }

    fileprivate func readable(endOfStream: Bool = false) {
        guard let bufferEvent, let input = bufferevent_get_input(bufferEvent) else { return }
        guard case .busy(let request, _) = state else {
            // Nothing was asked: what an idle connection receives ends it.
            if evbuffer_get_length(input) > 0 { close() }
            return
        }
        var outcome = HTTP1ResponseParser.Outcome.needMore
        while outcome == .needMore, evbuffer_get_length(input) > 0 {
            answering = true
            var chunk = iovec()
            guard evbuffer_peek(input, -1, nil, &chunk, 1) > 0 else { break }
            let (consumed, parsed) = parser.parse(
                UnsafeBufferPointer(start: chunk.iov_base.assumingMemoryBound(to: UInt8.self), count: chunk.iov_len))
            evbuffer_drain(input, consumed)
            outcome = parsed
            if consumed == 0 && parsed == .needMore { break }
        }
        if outcome == .needMore && endOfStream { outcome = parser.parse(UnsafeBufferPointer(start: nil, count: 0)).1 }
        switch outcome {
        case .needMore:
            if endOfStream { abort(.connectionLost) }
        case .response:
            let response = HTTPClientResponse(status: parser.status, headers: parser.fields, body: parser.body)
            let keep = parser.keepAlive && evbuffer_get_length(input) == 0 && !endOfStream
            request.http1Connection = nil
            if keep {
                // Back in the pool first: what the completion sends next may take this connection.
                state = .idle
                client?.connectionIdle(self)
                request.finish(.success(response))
            } else {
                state = .closed
                request.finish(.success(response))
                close()
            }
        case .tooLarge:
            abort(.responseTooLarge)
        case .malformed(let why):
            abort(.malformedResponse(why))
        }
    }

    // MARK: Ending

    /// Ends the request under way with `error` — or, when it never reached the server on a reused connection, has
    /// the client send it again — and closes.
    func abort(_ error: HTTPClientError) {
        let ended = state
        state = .closed
        connectTimer = nil
        close()
        switch ended {
        case .connecting(let request):
            request.http1Connection = nil
            request.finish(.failure(error))
        case .busy(let request, let reused):
            request.http1Connection = nil
            if reused && !answering && error == .connectionLost {
                client?.retry(request, after: error)
            } else {
                request.finish(.failure(error))
            }
        case .idle, .closed:
            break
        }
    }

    /// Closes without a word to the request under way: its owner has finished it (a timeout).
    func abandon() {
        state = .closed
        close()
    }

    private func close() {
        state = .closed
        connectTimer = nil
        guard let bufferEvent else { return }
        self.bufferEvent = nil
        bufferevent_free(bufferEvent)
        client?.connectionClosed(self)
    }
}

private func withConnection(_ context: UnsafeMutableRawPointer?, _ body: (HTTP1ClientConnection) -> Void) {
    guard let context else { return }
    body(Unmanaged<HTTP1ClientConnection>.fromOpaque(context).takeUnretainedValue())
}

private func onReadable(_: OpaquePointer?, _ context: UnsafeMutableRawPointer?) {
    withConnection(context) { $0.readable() }
}
private func onEvent(_: OpaquePointer?, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    withConnection(context) { $0.event(what) }
}
