// The handler's handle on one request, whichever protocol carried it: answer at once, later (the connection may
// be gone by then, which is safe), or as a body streamed over time. H2Stream and HTTP1Exchange carry it out.

import EventLoop

/// `@unchecked Sendable`: confined to the server's loop thread; hand it to other threads only to bring it back
/// through `EventLoop.execute`.
public class HTTPResponder: @unchecked Sendable {
    /// The request's method and path (with its query), as received.
    var method = ""
    var path = ""
    /// When the request began (`preciseMonotonicSeconds`).
    public let openedAt = preciseMonotonicSeconds()
    /// Set once the exchange has closed.
    private var hasClosed = false

    init() {}

    /// Called once when the exchange closes for any reason: response sent, client reset or gone, connection closed.
    /// Set on an exchange that has already closed, it is called at once: a handler that registers the exchange
    /// somewhere (a long poll, a device stream) after its client left does not leave it registered.
    public var onClose: (() -> Void)? {
        didSet {
            guard hasClosed, let onClose else { return }
            self.onClose = nil
            onClose()
        }
    }

    public var requestMethod: String { method }
    public var requestPath: String { path }

    /// Whether the exchange can still carry a response.
    public var isOpen: Bool { false }

    /// Sends a complete response. Returns false when the exchange is gone or has already been answered.
    @discardableResult
    public func respond(_ response: HTTPResponse) -> Bool { false }

    /// Sends the response head and keeps the exchange open for `write(_:)` until `endStream()` or the client
    /// leaves (`onClose`). Returns false when the exchange is gone or has already been answered.
    @discardableResult
    public func startStream(status: Int, headers: HTTPHeaders) -> Bool { false }

    /// Queues bytes on a streamed response. Returns false when the exchange is gone; a client that leaves too much
    /// unread is dropped rather than buffered without bound.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool { false }

    /// Ends a streamed response after what is queued.
    public func endStream() {}

    /// The transport is done with the exchange: `onClose` runs, once.
    final func exchangeClosed() {
        hasClosed = true
        let onClose = onClose
        self.onClose = nil
        onClose?()
    }
}
