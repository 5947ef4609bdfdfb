// One client connection: connect (DNS, TCP, TLS with ALPN h2), then an nghttp2 client session whose streams are
// the client's requests.
import CLibevent
import CNghttp2
import COpenSSL
import EventLoop
import Glibc

/// `@unchecked Sendable`: confined to its loop's thread.
final class ClientConnection: SessionConnection, @unchecked Sendable {
    /// Weak: the client owns its connection, and may be released while a connect is under way.
    private weak var client: H2Client?
    private var streams: [Int32: ClientRequest] = [:]
    private var connectTimer: LoopTimer?
    private var machine = ClientConnectionStateMachine()
    var isConnected: Bool { machine.isConnected }
    var isDraining: Bool { machine.isDraining }

    init?(client: H2Client) {
        let loop = client.loop
        guard
            let created = makeClientBufferEvent(loop: loop, tls: client.tls, offer: client.alpnOffer, host: client.host)
        else { return nil }
        super.init(loop: loop, bufferEvent: created, outputHighWater: 64 * 1024)
        self.client = client
        bufferevent_enable(created, Int16(EV_READ | EV_WRITE))
        let connectTimeout = client.options.connectTimeoutSeconds
        connectTimer = loop.schedule(after: connectTimeout) { [unowned self] in
            fail(.connectFailed("no connection within \(connectTimeout) s"))
        }
        guard
            bufferevent_socket_connect_hostname(created, loop.dnsBase, AF_UNSPEC, client.host, Int32(client.port)) == 0
        else {
            // The failure is reported through the event callback too; make sure it is reported once, later.
            let authority = client.authority
            loop.execute { [weak self] in self?.fail(.connectFailed("cannot connect to \(authority)")) }
            return
        }
    }

    override func event(_ what: Int16) {
        guard machine.isConnected || what & Int16(BEV_EVENT_CONNECTED) != 0 else {
            if what & Int16(BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT) != 0 {
                fail(.connectFailed(connectFailure(of: bufferEvent, authority: client?.authority ?? "peer")))
            }
            return
        }
        super.event(what)
    }

    override func connected() {
        connectTimer = nil
        guard let client else { return close() }
        // With a few hundred requests in flight, Nagle's delays were the whole wake-up rate.
        disableNagle(bufferEvent)
        if let tlsSession, negotiatedProtocol(tlsSession) != "h2" {
            // A peer offered both that chose http/1.1 is the client's to move to HTTP/1.1; else it is a failure.
            if negotiatedProtocol(tlsSession) == "http/1.1" { return fail(.peerChoseHTTP1) }
            return fail(.connectFailed("\(client.authority) did not agree to h2 by ALPN"))
        }
        guard
            let session = NGHTTP2Session.client(
                callbacks: client.callbacks.table, options: client.callbacks.options, context: opaqueSelf)
        else { return fail(.connectFailed("cannot create an HTTP/2 session")) }
        self.session = session
        session.submitSettings([(NGHTTP2_SETTINGS_ENABLE_PUSH, 0)])
        guard machine.connected() else { return close() }
        client.connectionReady(self)
        flush()
    }

    private func fail(_ error: HTTPClientError) {
        guard !closed else { return }
        connectTimer = nil
        client?.connectionFailed(self, error)
        abort(error)
    }

    /// Fails every request on this connection with `error` and closes it.
    func abort(_ error: HTTPClientError) {
        let failed = streams.values
        streams.removeAll()
        for request in failed { request.finish(.failure(error)) }
        close()
    }

    func submit(_ request: ClientRequest) {
        guard let client else { return request.finish(.failure(.closed)) }
        let pseudo: HTTPHeaders = [
            (":method", request.method), (":scheme", client.scheme), (":authority", client.authority),
            (":path", request.path),
        ]
        let context = Unmanaged.passUnretained(request).toOpaque()
        let length = request.body.isEmpty ? nil : request.body.count
        let streamID =
            session?.submitRequest(
                leading: pseudo, headers: request.headers, contentLength: length,
                provider: request.body.isEmpty ? nil : DataProvider(source: context, read: readRequestBody),
                context: context) ?? -1
        guard streamID > 0 else {
            // Out of stream ids: this connection is spent; the request goes to a new one.
            if machine.drain() { client.connectionDraining(self) }
            client.retry(request)
            return
        }
        request.streamID = streamID
        request.connection = self
        streams[streamID] = request
        flush()
    }

    /// Gives up on a request (its timeout): the stream is reset and forgotten.
    func cancel(_ request: ClientRequest) {
        guard streams.removeValue(forKey: request.streamID) != nil, let session else { return }
        session.reset(request.streamID, .cancel)
        flush()
    }

    override func didClose() {
        connectTimer = nil
        let hadConnected = machine.closed()
        let lost = streams.values
        streams.removeAll()
        for request in lost {
            request.finish(.failure(hadConnected ? .connectionLost : .connectFailed("connection closed")))
        }
        client?.connectionClosed(self)
    }

    // MARK: From the nghttp2 callbacks

    fileprivate func request(_ streamID: Int32) -> ClientRequest? { streams[streamID] }

    fileprivate func goawayReceived() {
        if machine.drain() { client?.connectionDraining(self) }
    }

    fileprivate func bodyChunk(_ request: ClientRequest, _ chunk: UnsafeBufferPointer<UInt8>) {
        if let onData = request.onData { return onData(chunk) }
        guard request.responseBody.count + chunk.count <= client?.options.maxResponseBodyBytes ?? 0 else {
            cancel(request)
            request.finish(.failure(.responseTooLarge))
            return
        }
        request.responseBody.append(contentsOf: chunk)
    }

    fileprivate func streamClosed(_ streamID: Int32, errorCode: UInt32) {
        guard let request = streams.removeValue(forKey: streamID) else { return }
        if request.responseEnded {
            request.finish(
                .success(
                    HTTPClientResponse(
                        status: request.status, headers: request.responseHeaders, body: request.responseBody)))
        } else if errorCode == NGHTTP2_REFUSED_STREAM.rawValue, let client {
            client.retry(request)
        } else {
            request.finish(.failure(.streamReset(errorCode)))
        }
    }
}

// MARK: - nghttp2 callbacks: each checks its pointers and forwards to the connection.

private func connection(_ context: UnsafeMutableRawPointer?) -> ClientConnection? {
    context.map { Unmanaged<ClientConnection>.fromOpaque($0).takeUnretainedValue() }
}

private func readRequestBody(
    _: OpaquePointer?, _: Int32, _ buffer: UnsafeMutablePointer<UInt8>?, _ length: Int,
    _ flags: UnsafeMutablePointer<UInt32>?, _ source: UnsafeMutablePointer<nghttp2_data_source>?,
    _: UnsafeMutableRawPointer?
) -> Int {
    guard let buffer, let flags, let pointer = source?.pointee.ptr else {
        return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
    }
    let request = Unmanaged<ClientRequest>.fromOpaque(pointer).takeUnretainedValue()
    let count = min(length, request.body.count - request.bodySent)
    request.body.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress! + request.bodySent, count: count) }
    request.bodySent += count
    if request.bodySent == request.body.count { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
    return count
}

/// The client's nghttp2 callback table and options, shared by every client session.
final class ClientCallbacks: Sendable {
    static let shared = ClientCallbacks()
    let options = SessionOptions()
    let table = CallbackTable { callbacks in
        nghttp2_session_callbacks_set_on_header_callback(callbacks) {
            _, frame, name, nameLength, value, valueLength, _, context in
            guard let frame, let namePointer = name, let valuePointer = value,
                let request = connection(context)?.request(frame.streamID)
            else { return 0 }
            let name = UnsafeBufferPointer(start: namePointer, count: nameLength)
            let value = UnsafeBufferPointer(start: valuePointer, count: valueLength)
            if name.elementsEqual(":status".utf8) {
                // A 1xx interim response is replaced by the final one.
                request.status = Int(String(decoding: value, as: UTF8.self)) ?? 0
                request.responseHeaders = HTTPHeaders()
            } else {
                request.responseHeaders.append(name: name, value: value)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) {
            _, _, streamID, data, length, context in
            guard let data, let connection = connection(context), let request = connection.request(streamID) else {
                return 0
            }
            connection.bodyChunk(request, UnsafeBufferPointer(start: data, count: length))
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, context in
            guard let frame, let connection = connection(context) else { return 0 }
            if frame.type == NGHTTP2_GOAWAY.rawValue {
                connection.goawayReceived()
            } else if frame.endsStream, frame.isHeaders || frame.isData,
                let request = connection.request(frame.streamID)
            {
                request.responseEnded = true
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, errorCode, context in
            connection(context)?.streamClosed(streamID, errorCode: errorCode)
            return 0
        }
    }
}
