// What the server fuzz targets share: one connection's bytes through the real server over an in-memory bufferevent
// pair (no socket). The server reads it all, answers what it can, and the connection is closed and freed; then
// nothing of it may be left. Handlers answer at once, stream a body, or hold the request until the connection goes.
import CLibevent
import EventLoop
import Logging

@testable import HTTP

private let loop: EventLoop = {
    // swift-format-ignore: NeverUseForceTry
    try! EventLoop()
}()
nonisolated(unsafe) private var held: [HTTPResponder] = []
private let server: HTTPServer = {
    var logger = Logger(label: "fuzz")
    logger.logLevel = .critical
    var limits = HTTPServerLimits()
    limits.maxBufferedResponseBytes = 16_384
    limits.maxBufferedConnectionBytes = 65_536
    return HTTPServer(loop: loop, limits: limits, logger: logger) { request, responder in
        switch request.pathOnly {
        case "/stream":
            responder.startStream(status: 200, headers: ["content-type": "text/event-stream"])
            responder.write(Array(repeating: UInt8(ascii: "x"), count: request.body.count * 64))
        case "/hold":
            held.append(responder)
        default:
            responder.respond(HTTPResponse(status: 200, headers: ["x-method": request.method], body: request.body))
        }
    }
}()

/// Runs the loop until nothing is left to do now (bounded: a connection may keep itself busy).
private func settle() {
    for _ in 0..<64 {
        guard event_base_loop(loop.base, Int32(EVLOOP_NONBLOCK)) == 0 else { return }
    }
}

/// Serves `input` (after `prefix`) as everything one client sends on one connection, then checks the server let go
/// of it all.
public func serveOneConnection(_ input: UnsafeBufferPointer<UInt8>, prefix: [UInt8] = []) {
    var pair: [OpaquePointer?] = [nil, nil]
    guard bufferevent_pair_new(loop.base, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue), &pair) == 0,
        let serverEnd = pair[0], let clientEnd = pair[1]
    else { return }
    server.serve(bufferEvent: serverEnd)
    bufferevent_enable(clientEnd, Int16(EV_READ | EV_WRITE))
    if !prefix.isEmpty { bufferevent_write(clientEnd, prefix, prefix.count) }
    bufferevent_write(clientEnd, input.baseAddress, input.count)
    settle()
    for responder in held { responder.respond(HTTPResponse(status: 204)) }
    held.removeAll()
    settle()
    if let input = bufferevent_get_input(clientEnd) { evbuffer_drain(input, evbuffer_get_length(input)) }
    settle()
    // The client goes: flushed as finished, the pair tells the server's end EOF, and the server closes and
    // frees it.
    bufferevent_flush(clientEnd, Int16(EV_WRITE), BEV_FINISHED)
    bufferevent_free(clientEnd)
    settle()
    precondition(server.connectionCount == 0, "a connection outlived its client")
    precondition(server.bufferedResponseBytes == 0, "unsent bytes counted after every connection closed")
}
