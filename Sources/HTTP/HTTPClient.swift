// A client for one origin, whichever protocol it speaks: HTTP/2 (H2Client, many requests on one connection), a
// pool of persistent HTTP/1.1 connections (HTTP1Client), or over TLS whichever the server picks by ALPN
// (NegotiatingClient).
import EventLoop
import Logging

/// The protocol a client speaks to its origin.
public enum ClientProtocol: String, Sendable, Equatable {
    /// h2 over TLS (ALPN h2), or h2c with prior knowledge.
    case h2
    /// HTTP/1.1, over TLS (ALPN http/1.1) or in cleartext.
    case http1 = "http/1.1"
    /// TLS only: h2 or http/1.1, as the server chooses by ALPN (h2 preferred).
    case negotiated
}

/// Sends requests to one origin; completions run on the loop, exactly once each.
/// Implementations are loop-bound (`@unchecked Sendable`): hand them to other threads only to use them through
/// `EventLoop.execute`.
public protocol HTTPClient: AnyObject, Sendable {
    /// With `onData`, the response body is streamed: each chunk goes to `onData` as it arrives (no size limit),
    /// and the response given to `completion` has an empty body. The handle withdraws the request.
    @discardableResult
    func send(
        method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutSeconds: Double?,
        onData: ((UnsafeBufferPointer<UInt8>) -> Void)?,
        completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void
    ) -> HTTPRequestHandle
    /// Fails what is outstanding with `.closed` and closes the connections.
    func close()
}

extension HTTPClient {
    /// A request with the client's own timeout and a response read whole.
    public func send(
        method: String, path: String, headers: HTTPHeaders = [], body: [UInt8] = [],
        completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void
    ) {
        send(
            method: method, path: path, headers: headers, body: body, timeoutSeconds: nil, onData: nil,
            completion: completion)
    }
}

/// How H2Client and HTTP1Client take a request: refused once closed, else handed to the client's dispatch.
protocol RequestTaking: AnyObject {
    var loop: EventLoop { get }
    var isClosed: Bool { get }
    /// Onto a connection, or in line for one.
    func dispatch(_ request: ClientRequest)
    /// Back from its connection before its response (timed out, or cancelled), ending it with `error`.
    func withdraw(_ request: ClientRequest, _ error: HTTPClientError)
}

extension RequestTaking {
    func take(_ request: ClientRequest) -> HTTPRequestHandle {
        loop.assertInLoop()
        guard !isClosed else {
            request.finish(.failure(.closed))
            return HTTPRequestHandle(nil)
        }
        dispatch(request)
        return HTTPRequestHandle(request)
    }
}

/// A request sent, which its sender may withdraw before it completes: an event stream it no longer reads shares its
/// connection with others. Loop-bound, like its client.
public final class HTTPRequestHandle: @unchecked Sendable {
    private weak var request: ClientRequest?

    init(_ request: ClientRequest?) { self.request = request }

    /// Ends the request now unless it has completed: its completion gets `.cancelled`, and the server sees an
    /// HTTP/2 stream reset (CANCEL) or, on HTTP/1.1, its connection closed.
    public func cancel() { request?.cancel() }

    /// The request sent again in its place (on another protocol) is the one withdrawn from now on.
    func follow(_ retried: HTTPRequestHandle) { request = retried.request }
}

/// A client for `origin` (`http://host:port` or `https://host:port`; `tls` is required for https) that speaks
/// `clientProtocol`; `.negotiated` needs https.
public func makeHTTPClient(
    loop: EventLoop, origin: String, tls: TLSClientContext?, speaking clientProtocol: ClientProtocol,
    options: HTTPClientOptions = HTTPClientOptions(), logger: Logger
) throws -> any HTTPClient {
    switch clientProtocol {
    case .h2:
        return try H2Client(loop: loop, origin: origin, tls: tls, options: options, logger: logger)
    case .http1:
        return try HTTP1Client(loop: loop, origin: origin, tls: tls, options: options)
    case .negotiated:
        guard origin.hasPrefix("https://") else {
            throw HTTPClientError.connectFailed("only https negotiates the protocol by ALPN: \(origin)")
        }
        return try NegotiatingClient(loop: loop, origin: origin, tls: tls, options: options, logger: logger)
    }
}

/// Over TLS, offers h2 and http/1.1 by ALPN and speaks what the server chose: HTTP/2 on one connection, or from
/// the first answer of http/1.1 on, a pool of HTTP/1.1 connections (the requests that learnt it are sent there).
///
/// `@unchecked Sendable`: confined to its loop's thread.
final class NegotiatingClient: HTTPClient, @unchecked Sendable {
    private let h2: H2Client
    private let http1: HTTP1Client
    private var serverChoseHTTP1 = false

    init(loop: EventLoop, origin: String, tls: TLSClientContext?, options: HTTPClientOptions, logger: Logger) throws {
        h2 = try H2Client(loop: loop, origin: origin, tls: tls, options: options, logger: logger)
        h2.alpnOffer = .either
        http1 = try HTTP1Client(loop: loop, origin: origin, tls: tls, options: options)
    }

    func send(
        method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutSeconds: Double?,
        onData: ((UnsafeBufferPointer<UInt8>) -> Void)?,
        completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void
    ) -> HTTPRequestHandle {
        guard !serverChoseHTTP1 else {
            return http1.send(
                method: method, path: path, headers: headers, body: body, timeoutSeconds: timeoutSeconds,
                onData: onData, completion: completion)
        }
        let handle = HTTPRequestHandle(nil)
        handle.follow(
            h2.send(
                method: method, path: path, headers: headers, body: body, timeoutSeconds: timeoutSeconds,
                onData: onData
            ) { [self] result in
                guard case .failure(.peerChoseHTTP1) = result else { return completion(result) }
                // Nothing of the request went out: the connection ended at the handshake.
                serverChoseHTTP1 = true
                handle.follow(
                    http1.send(
                        method: method, path: path, headers: headers, body: body, timeoutSeconds: timeoutSeconds,
                        onData: onData, completion: completion))
            })
        return handle
    }

    func close() {
        h2.close()
        http1.close()
    }
}
