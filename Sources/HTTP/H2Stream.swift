// One HTTP/2 request stream on the server: gathers the request from nghttp2's callbacks, then answers it as its
// handler says (HTTPResponder).
import CNghttp2

/// `@unchecked Sendable`: confined to the server's loop thread.
final class H2Stream: HTTPResponder, @unchecked Sendable {
    /// Cleared when the stream closes: everything after that is a no-op.
    private var connection: ServerConnection?
    let streamID: Int32

    private var fields = HTTPHeaders()
    private var body: [UInt8] = []
    private var headerBytes = 0
    private var declaredLength: Int?
    private var machine: StreamStateMachine

    private var outgoing: [UInt8] = []
    private var sent = 0
    /// nghttp2 was told the streamed body has nothing more for now, and must be told when it has.
    private var deferred = false

    /// The connection's list of open streams: the older link owns, the newer one does not (no cycle).
    var olderStream: H2Stream?
    unowned(unsafe) var newerStream: H2Stream?

    /// Whether the stream is still in its connection's list (the newest, or linked to a newer one).
    func isLinked(newest: H2Stream?) -> Bool { newerStream != nil || newest === self }

    init(connection: ServerConnection, streamID: Int32, now: Double) {
        self.connection = connection
        self.streamID = streamID
        machine = StreamStateMachine(now: now)
        super.init()
    }

    /// Whether the request is still arriving (or was reset for taking too long): such a stream is no activity.
    var isArriving: Bool { machine.isArriving }

    /// When the request began arriving, while it is arriving and not yet timed out.
    var arrivingSince: Double? { machine.arrivingSince }

    override public var isOpen: Bool { connection != nil && (machine.canAnswer || machine.isStreamOpen) }

    /// Whether the response is a body streamed over time that has not ended.
    var isStreaming: Bool { machine.isStreamOpen }

    /// Carries out what the stream's machine decided; a request that stops arriving counts as activity.
    private func perform(_ action: StreamStateMachine.Action, wasArriving: Bool) {
        if wasArriving && !machine.isArriving { connection?.requestSettled() }
        if case .reset(let code) = action { connection?.reset(streamID, code) }
    }

    /// The request timer: resets the request if it began arriving at or before `expiredBefore`.
    func requestTimerFired(expiredBefore: Double) {
        perform(machine.requestTimerFired(expiredBefore: expiredBefore), wasArriving: true)
    }

    // MARK: Receiving the request

    func receiveHeader(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        guard machine.canAnswer, let connection else { return }
        headerBytes += name.count + value.count + 32
        guard headerBytes <= connection.maxHeaderBlockBytes else {
            fields = HTTPHeaders()
            return
        }
        fields.append(name: name, value: value)
        // nghttp2 has validated the names (lowercase, pseudo-headers first and known ones only): match on length
        // and a byte instead of making Strings of them.
        switch name.count {
        case 5 where name[0] == UInt8(ascii: ":"): path = String(decoding: value, as: UTF8.self)  // :path
        case 7 where name[0] == UInt8(ascii: ":") && name[1] == UInt8(ascii: "m"):
            method = String(decoding: value, as: UTF8.self)  // :method
        case 14 where name.elementsEqual("content-length".utf8): declaredLength = decimal(value)
        default: break
        }
    }

    /// A non-negative decimal (nghttp2 has checked content-length's syntax); nil past Int.max.
    private func decimal(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        var value = 0
        for byte in bytes {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            let (scaled, overflow) = value.multipliedReportingOverflow(by: 10)
            guard !overflow else { return nil }
            value = scaled + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    func headersComplete() {
        guard machine.canAnswer, let connection else { return }
        if headerBytes > connection.maxHeaderBlockBytes {
            refuse(.headerBlockTooLarge(limit: connection.maxHeaderBlockBytes))
        } else if let declaredLength, declaredLength > connection.maxRequestBodyBytes {
            refuse(.bodyTooLarge(limit: connection.maxRequestBodyBytes))
        }
    }

    func receiveBody(_ chunk: UnsafeBufferPointer<UInt8>) {
        guard machine.canAnswer, let connection else { return }
        guard body.count + chunk.count <= connection.maxRequestBodyBytes else {
            body = []
            refuse(.bodyTooLarge(limit: connection.maxRequestBodyBytes))
            return
        }
        body.append(contentsOf: chunk)
    }

    func requestComplete() {
        let wasArriving = machine.isArriving
        let action = machine.requestEnded()
        perform(action, wasArriving: wasArriving)
        guard action == .dispatch, let connection else { return }
        let request = HTTPRequest(method: method, path: path, fields: fields, body: body)
        fields = HTTPHeaders()
        body = []
        connection.server.handler(request, self)
    }

    private func refuse(_ refusal: EarlyRefusal) {
        guard let server = connection?.server else { return }
        respond(server.earlyRefusal(refusal))
    }

    // MARK: Answering

    @discardableResult
    override public func respond(_ response: HTTPResponse) -> Bool {
        guard let connection else { return false }
        let wasArriving = machine.isArriving
        guard machine.respond() == .submit else { return false }
        perform(.submit, wasArriving: wasArriving)
        outgoing = response.body
        bufferedChanged(by: outgoing.count)
        submit(status: response.status, headers: response.headers, length: response.body.count, on: connection)
        return true
    }

    @discardableResult
    override public func startStream(status: Int, headers: HTTPHeaders) -> Bool {
        guard let connection, machine.startStream() == .submit else { return false }
        submit(status: status, headers: headers, length: nil, on: connection)
        return true
    }

    /// A client that has left more than `maxBufferedResponseBytes` unread on the stream, or
    /// `maxBufferedConnectionBytes` on its connection, is reset rather than buffered without bound.
    @discardableResult
    override public func write(_ bytes: [UInt8]) -> Bool {
        guard let connection, machine.isStreamOpen else { return false }
        outgoing.append(contentsOf: bytes)
        bufferedChanged(by: bytes.count)
        let overflowing =
            outgoing.count - sent > connection.maxBufferedResponseBytes
            || connection.bufferedResponseBytes > connection.maxBufferedConnectionBytes
        let action = machine.wrote(overflowing: overflowing)
        guard action == .none else {
            perform(action, wasArriving: false)
            return false
        }
        resume(connection)
        return true
    }

    override public func endStream() {
        guard let connection, machine.isStreamOpen else { return }
        machine.endStream()
        resume(connection)
    }

    private func resume(_ connection: ServerConnection) {
        if deferred {
            deferred = false
            connection.session?.resumeData(streamID)
        }
        connection.flush()
    }

    private func submit(status: Int, headers: HTTPHeaders, length: Int?, on connection: ServerConnection) {
        connection.server.onResponse?(status, self)
        let provider =
            length == 0 ? nil : DataProvider(source: Unmanaged.passUnretained(self).toOpaque(), read: readResponseBody)
        connection.session?.submitResponse(
            streamID, status: status, headers: headers, contentLength: length, provider: provider)
        connection.flush()
    }

    /// nghttp2 asks for the next DATA payload: copy what is queued, or defer until more is written.
    fileprivate func read(
        into buffer: UnsafeMutablePointer<UInt8>, capacity: Int, flags: UnsafeMutablePointer<UInt32>
    )
        -> Int
    {
        let count = min(capacity, outgoing.count - sent)
        if count > 0 {
            outgoing.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress! + sent, count: count) }
            sent += count
            bufferedChanged(by: -count)
        }
        if sent == outgoing.count {
            if machine.isEnding {
                flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                // A response that ends before its request did (413, 431) is followed by RST_STREAM(NO_ERROR), as
                // RFC 9113 §8.1 allows, so the client stops sending the rest. Submitted once this last DATA frame
                // is out: a reset submitted while nghttp2 packs the frame can discard the response.
                if machine.lastDataSentNeedsReset() { connection?.resetAfterSending(streamID) }
            } else if count == 0 {
                deferred = true
                return Int(NGHTTP2_ERR_DEFERRED.rawValue)
            }
            // Everything queued has gone out: give the memory back instead of growing a long-lived stream.
            outgoing.removeAll(keepingCapacity: false)
            sent = 0
        }
        return count
    }

    /// Unsent bytes are counted by the connection (and the server), which bound them.
    private func bufferedChanged(by delta: Int) {
        connection?.bufferedResponseBytesChanged(by: delta)
    }

    func closed() {
        bufferedChanged(by: sent - outgoing.count)
        machine.closed()
        connection = nil
        outgoing = []
        sent = 0
        exchangeClosed()
    }
}

private func readResponseBody(
    _: OpaquePointer?, _: Int32, _ buffer: UnsafeMutablePointer<UInt8>?, _ length: Int,
    _ flags: UnsafeMutablePointer<UInt32>?, _ source: UnsafeMutablePointer<nghttp2_data_source>?,
    _: UnsafeMutableRawPointer?
) -> Int {
    guard let buffer, let flags, let pointer = source?.pointee.ptr else {
        return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
    }
    // Borrowed: the connection's list holds the stream while nghttp2 serialises its data.
    return Unmanaged<H2Stream>.fromOpaque(pointer)._withUnsafeGuaranteedRef {
        $0.read(into: buffer, capacity: length, flags: flags)
    }
}
