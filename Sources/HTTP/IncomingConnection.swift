// A connection whose protocol is not known yet: TLS says it by ALPN once the handshake is done; in cleartext the
// first bytes do (HTTP/2's connection preface, or anything else: HTTP/1.1). Then the bufferevent, with what has
// arrived in it, goes to an HTTP/2 or an HTTP/1.1 connection, and this one is done.
import CLibevent
import COpenSSL
import EventLoop
import Glibc

/// The protocols a server connection speaks.
public enum HTTPProtocol: String, CaseIterable, Sendable {
    case h2
    case http1 = "http/1.1"
}

/// What the server keeps of every connection, whatever it speaks: for the metrics, shedding and shutdown.
protocol ServedConnection: AnyObject {
    /// nil while the protocol is not known yet.
    var httpProtocol: HTTPProtocol? { get }
    /// Response bytes not yet handed to the socket.
    var bufferedResponseBytes: Int { get }
    var closed: Bool { get }
    /// Reads what has already arrived, once the server holds the connection.
    func begin()
    /// Shutdown begins: answer what is under way, take nothing new.
    func drain()
    /// The shutdown grace is over.
    func graceEnded()
    func close()
}

/// How the first bytes of a cleartext connection classify it.
enum ProtocolDetection: Equatable {
    case undecided
    case http2
    case http1

    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// The HTTP/2 preface, whole, is h2c with prior knowledge; a prefix of it may still become it; anything else
    /// is HTTP/1.1.
    static func classify(_ start: some Collection<UInt8>) -> ProtocolDetection {
        guard start.prefix(preface.count).elementsEqual(preface.prefix(start.count)) else { return .http1 }
        return start.count >= preface.count ? .http2 : .undecided
    }
}

/// `@unchecked Sendable`: confined to its server's loop thread.
final class IncomingConnection: ServedConnection, @unchecked Sendable {
    unowned(unsafe) let server: HTTPServer
    private var bufferEvent: OpaquePointer?
    private let isSecure: Bool
    private var timer: LoopTimer?

    var httpProtocol: HTTPProtocol? { nil }
    var bufferedResponseBytes: Int { 0 }
    var closed: Bool { bufferEvent == nil }
    func begin() {}

    /// Waits on `bufferEvent` (a TLS one still handshaking, or a plain one) for what decides the protocol; a client
    /// that says nothing within the preface timeout is closed.
    init(server: HTTPServer, bufferEvent: OpaquePointer, isSecure: Bool) {
        self.server = server
        self.bufferEvent = bufferEvent
        self.isSecure = isSecure
        bufferevent_setcb(bufferEvent, onReadable, nil, onEvent, Unmanaged.passUnretained(self).toOpaque())
        timer = server.loop.schedule(after: server.limits.prefaceTimeoutSeconds) { [unowned self] in close() }
        bufferevent_enable(bufferEvent, Int16(EV_READ | EV_WRITE))
    }

    deinit {
        if let bufferEvent { bufferevent_free(bufferEvent) }
    }

    fileprivate func readable() {
        guard !isSecure, let bufferEvent, let input = bufferevent_get_input(bufferEvent) else { return }
        var start = [UInt8](repeating: 0, count: ProtocolDetection.preface.count)
        let available = max(0, Int(evbuffer_copyout(input, &start, start.count)))
        switch ProtocolDetection.classify(start.prefix(available)) {
        case .undecided: break
        case .http2: handOver(to: .h2)
        case .http1: handOver(to: .http1)
        }
    }

    fileprivate func event(_ what: Int16) {
        if what & Int16(BEV_EVENT_CONNECTED) != 0 {
            // The TLS handshake is done: h2 if the client chose it, HTTP/1.1 otherwise (http/1.1, or no ALPN).
            guard let bufferEvent, let session = bufferevent_openssl_get_ssl(bufferEvent) else { return close() }
            handOver(to: negotiatedProtocol(session) == "h2" ? .h2 : .http1)
        } else if what & Int16(BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT) != 0 {
            close()
        }
    }

    private func handOver(to httpProtocol: HTTPProtocol) {
        guard let bufferEvent else { return }
        self.bufferEvent = nil
        timer = nil
        server.classified(self, as: httpProtocol, bufferEvent: bufferEvent, isSecure: isSecure)
    }

    func drain() { close() }
    func graceEnded() { close() }

    func close() {
        timer = nil
        guard let bufferEvent else { return }
        self.bufferEvent = nil
        bufferevent_free(bufferEvent)
        server.connectionClosed(self)
    }
}

private func withConnection(_ context: UnsafeMutableRawPointer?, _ body: (IncomingConnection) -> Void) {
    guard let context else { return }
    body(Unmanaged<IncomingConnection>.fromOpaque(context).takeUnretainedValue())
}

private func onReadable(_: OpaquePointer?, _ context: UnsafeMutableRawPointer?) {
    withConnection(context) { $0.readable() }
}
private func onEvent(_: OpaquePointer?, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    withConnection(context) { $0.event(what) }
}
