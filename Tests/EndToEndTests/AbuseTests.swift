// Attacks that must not take the broker from everyone else, against the real binary: resets the client makes the
// server send ("MadeYouReset"), requests that never finish arriving, and responses a client never lets out. After
// each, a second client on a new connection is served within 2 s (10 s under a sanitizer).
import Foundation
import Glibc
import TestSupport
import Testing

/// Whether a client on a new connection gets `/healthz` answered within 2 s (10 s under a sanitizer). A stream
/// refused while the broker sheds load (REFUSED_STREAM: not processed) is sent again on the next stream, as HTTP/2
/// clients do.
func anotherClientIsServed(_ broker: ApprovaldProcess) throws -> Bool {
    // Under a sanitizer the broker works its way through the flood several times slower.
    let deadline = Date().addingTimeInterval(processesAreSanitized ? 10 : 2)
    let raw = try RawHTTP2Connection(port: broker.h2cPort)
    try raw.sendPreface()
    var stream: UInt32 = 1
    while deadline.timeIntervalSinceNow > 0 {
        try raw.sendFrame(
            type: Frame.headers, flags: Frame.endHeaders | Frame.endStream, stream: stream,
            payload: RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("GET", "/healthz")))
        while let frame = try? raw.readFrame(timeout: max(0.01, deadline.timeIntervalSinceNow)) {
            if frame.type == Frame.headers {
                let fields = raw.decodeHeaders(frame)  // every block, to keep HPACK in step
                if frame.streamID == stream { return fields.first { $0.name == ":status" }?.value == "200" }
            }
            if frame.type == Frame.rstStream && frame.streamID == stream {
                guard frame.errorCode == 7 else { return false }
                break
            }
            if frame.type == Frame.goaway { return false }
        }
        stream += 2
    }
    return false
}

/// A frame's 31-bit big-endian word at `offset` (GOAWAY's last stream id).
func word(_ payload: [UInt8], at offset: Int = 0) -> UInt32 {
    payload[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7fff_ffff
}

/// Ways to make the server reset a stream: each is a stream error the server must answer with RST_STREAM.
enum Provocation: String, CaseIterable, CustomTestStringConvertible {
    /// A WINDOW_UPDATE that takes the stream's send window past 2^31-1 (FLOW_CONTROL_ERROR).
    case windowOverflow
    /// A body longer than its content-length (PROTOCOL_ERROR, RFC 9113 §8.1.1).
    case bodyPastContentLength
    /// A connection-specific header field, which makes the request malformed (PROTOCOL_ERROR, RFC 9113 §8.2.2).
    case malformedHeader

    var testDescription: String { rawValue }

    /// The frames that provoke a reset of stream `id`, opened with `request`.
    /// `dispatched`: the request is complete before the provocation, so that its handler runs first (only a
    /// WINDOW_UPDATE can provoke a reset after that).
    func frames(
        _ id: UInt32, request: [(String, String)] = RawHTTP2Connection.request("POST", "/healthz"),
        dispatched: Bool = false
    )
        -> [UInt8]
    {
        switch self {
        case .windowOverflow:
            RawHTTP2Connection.frame(
                type: Frame.headers, flags: dispatched ? Frame.endHeaders | Frame.endStream : Frame.endHeaders,
                stream: id, payload: RawHTTP2Connection.headerBlock(request))
                + RawHTTP2Connection.frame(type: Frame.windowUpdate, stream: id, payload: [0x7f, 0xff, 0xff, 0xff])
        case .bodyPastContentLength:
            RawHTTP2Connection.frame(
                type: Frame.headers, flags: Frame.endHeaders, stream: id,
                payload: RawHTTP2Connection.headerBlock(request + [("content-length", "1")]))
                + RawHTTP2Connection.frame(type: Frame.data, flags: Frame.endStream, stream: id, payload: [1, 2])
        case .malformedHeader:
            RawHTTP2Connection.frame(
                type: Frame.headers, flags: Frame.endHeaders | Frame.endStream, stream: id,
                payload: RawHTTP2Connection.headerBlock(request + [("connection", "keep-alive")]))
        }
    }
}

/// What a connection saw after sending `count` provocations in one burst: the resets, then GOAWAY or not.
struct ResetFloodResult {
    var resets = 0
    var goaway: Frame?
    var answeredPing = false
}

func provoke(
    _ broker: ApprovaldProcess, _ provocation: Provocation, count: Int,
    request: [(String, String)] = RawHTTP2Connection.request("POST", "/healthz"), dispatched: Bool = false
) throws -> (RawHTTP2Connection, ResetFloodResult) {
    let raw = try RawHTTP2Connection(port: broker.h2cPort)
    try raw.sendPreface()
    var burst: [UInt8] = []
    for index in 0..<count {
        burst += provocation.frames(UInt32(2 * index + 1), request: request, dispatched: dispatched)
    }
    burst += RawHTTP2Connection.frame(type: Frame.ping, payload: [UInt8](repeating: 9, count: 8))
    // The server may close before the whole burst is in.
    try? raw.send(burst)
    // PING's answer may overtake the resets: read until GOAWAY, or until both are in, or a quiet second.
    var result = ResetFloodResult()
    while !(result.answeredPing && result.resets == count), let frame = try? raw.readFrame(timeout: 1) {
        if frame.type == Frame.rstStream { result.resets += 1 }
        if frame.type == Frame.ping && frame.flags == Frame.ack { result.answeredPing = true }
        if frame.type == Frame.goaway {
            result.goaway = frame
            break
        }
    }
    return (raw, result)
}

@Suite struct ProvokedResetTests {
    /// Below the budget the connection goes on; past it (a burst of 1,000, then 33/s), GOAWAY(ENHANCE_YOUR_CALM)
    /// and the connection closes, long before the flood's end.
    @Test(arguments: Provocation.allCases)
    func resetsTheClientProvokesAreBudgeted(provocation: Provocation) throws {
        let broker = try ApprovaldProcess()
        let (_, tolerated) = try provoke(broker, provocation, count: 900)
        #expect(tolerated.answeredPing && tolerated.goaway == nil && tolerated.resets == 900)

        let (flooding, flood) = try provoke(broker, provocation, count: 5000)
        // Cut off by the budget: GOAWAY(ENHANCE_YOUR_CALM) after the 1,000th reset. Or, when the client reads too
        // slowly for the resets to go out, by nghttp2's guard on queued resets (1,000), which ends the session
        // too; the GOAWAY may then be lost to the TCP reset of a socket closed with the flood still unread.
        if let goaway = flood.goaway {
            #expect(goaway.errorCode == 11)  // ENHANCE_YOUR_CALM
            #expect(flood.resets >= 1000, "resets before GOAWAY: \(flood.resets)")
            #expect(word(goaway.payload) < 2 * 2500)
        }
        #expect(flood.resets < 2500, "resets before the end: \(flood.resets)")
        #expect(flooding.closes(within: 5))
        #expect(try anotherClientIsServed(broker))
    }

    /// Signed long polls reset at once: each reaches its handler, so the budget is what bounds the requests one
    /// connection can start (it was 145,000 in 5 s, past any stream limit).
    @Test func signedLongPollsResetAtOnceAreBudgeted() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("poll-phone")
        #expect(try idp.register(phone, user: "paula").status == 201)
        let created = try idp.challenge("poll-1", user: "paula")
        let challengeID = try #require(created.json["challenge_id"] as? String)
        let path = "/v1/tenants/contoso/challenges/\(challengeID)?wait=30"
        let signature = String(idp.signature("GET", path, "").dropFirst("Approvald-Signature: ".count))
        let request = RawHTTP2Connection.request("GET", path, extra: [("approvald-signature", signature)])

        let (flooding, flood) = try provoke(broker, .windowOverflow, count: 5000, request: request, dispatched: true)
        #expect(flood.goaway?.errorCode == 11)
        #expect(flood.resets < 2500, "long polls reset before GOAWAY: \(flood.resets)")
        #expect(flooding.closes(within: 5))
        #expect(try anotherClientIsServed(broker))
        // The challenge is still there, pending, and a real long poll on it still ends when it does.
        let view = try idp.call("GET", "/v1/tenants/contoso/challenges/\(challengeID)")
        #expect(view.json["status"] as? String == "pending")
    }
}

@Suite struct RequestTimeoutTests {
    /// A HEADERS frame whose block never completes: the stream it opened does not keep the connection, which is
    /// idle and closed after the idle time (it was still open after 40 s).
    @Test func aHeaderBlockThatNeverCompletesDoesNotHoldTheConnection() throws {
        let broker = try ApprovaldProcess(
            extraConfig: """
                [http2]
                idle_timeout_seconds = 2
                """)
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface()
        let block = RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("GET", "/healthz"))
        let whole = RawHTTP2Connection.frame(
            type: Frame.headers, flags: Frame.endHeaders | Frame.endStream, stream: 1, payload: block)
        try raw.send(Array(whole.prefix(9 + block.count / 2)))
        let started = Date()
        let goaway = try raw.readFrame(timeout: 8) { $0.type == Frame.goaway }
        #expect(goaway?.errorCode == 0)
        #expect(raw.closes(within: 5))
        #expect(Date().timeIntervalSince(started) < 6)
        #expect(try anotherClientIsServed(broker))
    }

    /// A body that never ends is reset after `request_timeout_seconds`; the connection stays for other requests.
    @Test func aBodyThatNeverEndsIsResetAfterTheRequestTimeout() throws {
        let broker = try ApprovaldProcess(
            extraConfig: """
                [http2]
                request_timeout_seconds = 1
                """)
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface()
        try openStream(raw, 1)
        try raw.sendFrame(type: Frame.data, stream: 1, payload: [UInt8](repeating: 0x61, count: 100))
        let started = Date()
        let reset = try raw.readFrame(timeout: 5) { $0.type == Frame.rstStream || $0.type == Frame.goaway }
        let elapsed = Date().timeIntervalSince(started)
        #expect(reset?.type == Frame.rstStream && reset?.streamID == 1 && reset?.errorCode == 8)  // CANCEL
        #expect(elapsed >= 0.9 && elapsed < 3, "reset after \(elapsed) s")
        // The same connection still serves a request that arrives whole.
        try raw.sendFrame(
            type: Frame.headers, flags: Frame.endHeaders | Frame.endStream, stream: 3,
            payload: RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("GET", "/healthz")))
        #expect(try raw.readStatus(stream: 3) == 200)
        #expect(try anotherClientIsServed(broker))
    }

    /// The default is 10 s, and a timed-out request never reaches a handler.
    @Test func theDefaultRequestTimeoutIsTenSeconds() throws {
        let broker = try ApprovaldProcess()
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface()
        try openStream(raw, 1, path: "/metrics")
        let started = Date()
        let reset = try raw.readFrame(timeout: 15) { $0.type == Frame.rstStream || $0.type == Frame.headers }
        let elapsed = Date().timeIntervalSince(started)
        #expect(reset?.type == Frame.rstStream && reset?.errorCode == 8)
        #expect(elapsed >= 9.5 && elapsed < 12.5, "reset after \(elapsed) s")
    }
}

@Suite struct BufferedResponseTests {
    /// Opens `streams` requests for `path` on a connection that lets no response byte out (initial window 0).
    static func stall(
        _ broker: ApprovaldProcess, streams: Int, path: String = "/metrics"
    ) throws
        -> RawHTTP2Connection
    {
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface(settings: [(0x4, 0)])  // SETTINGS_INITIAL_WINDOW_SIZE = 0
        var burst: [UInt8] = []
        for index in 0..<streams {
            burst += RawHTTP2Connection.frame(
                type: Frame.headers, flags: Frame.endHeaders | Frame.endStream, stream: UInt32(2 * index + 1),
                payload: RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("GET", path)))
        }
        try raw.send(burst)
        return raw
    }

    /// Past the total, new streams are refused and the connections holding the most are closed; the broker keeps
    /// serving others.
    @Test func pastTheTotalNewStreamsAreRefusedAndTheHeaviestClosed() throws {
        let broker = try ApprovaldProcess(
            extraConfig: """
                [http2]
                max_buffered_connection_bytes = 262144
                max_buffered_bytes_total = 1048576
                """)
        var stalled: [RawHTTP2Connection] = []
        for _ in 0..<8 { stalled.append(try Self.stall(broker, streams: 128)) }
        // Each connection holds about its own bound; eight of them pass the total: some are closed.
        #expect(eventuallyBlocking(timeout: 10) { stalled.contains { $0.closes(within: 0.2) } })
        #expect(try anotherClientIsServed(broker))
        // One connection past its own bound (and alone: the total is far) gets REFUSED_STREAM for what it opens
        // next.
        stalled.removeAll()
        usleep(300_000)
        let heavy = try Self.stall(broker, streams: 60)
        usleep(300_000)
        try heavy.sendFrame(
            type: Frame.headers, flags: Frame.endHeaders | Frame.endStream, stream: 201,
            payload: RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("GET", "/metrics")))
        var refused: Frame?
        while refused == nil, let frame = try? heavy.readFrame(timeout: 5) {
            if frame.type == Frame.rstStream && frame.streamID == 201 { refused = frame }
        }
        #expect(refused?.errorCode == 7)  // REFUSED_STREAM
    }

    /// Ten rounds of 200 connections × 128 stalled `/metrics` responses, then disconnect: RSS comes back down each
    /// time and does not creep from round to round.
    @Test func stalledResponsesLeaveMemoryFlat() throws {
        let broker = try ApprovaldProcess()
        let baseline = broker.residentBytes()
        var after: [Int] = []
        var peaks: [Int] = []
        for _ in 0..<10 {
            var stalled: [RawHTTP2Connection] = []
            for _ in 0..<200 { stalled.append(try Self.stall(broker, streams: 128)) }
            #expect(try anotherClientIsServed(broker))
            peaks.append(broker.residentBytes())
            stalled.removeAll()
            // Closed connections are noticed and their memory handed back (a sanitizer holds it in quarantine).
            _ = eventuallyBlocking(timeout: processesAreSanitized ? 0.5 : 5) {
                broker.residentBytes() < baseline + 48 << 20
            }
            after.append(broker.residentBytes())
        }
        // Under a sanitizer, memory freed is held in quarantine and every block has redzones: RSS says nothing.
        guard !processesAreSanitized else { return }
        let mebibytes = { (bytes: [Int]) in bytes.map { $0 >> 20 } }
        let report = "baseline \(baseline >> 20) MiB, peaks \(mebibytes(peaks)), after \(mebibytes(after))"
        #expect(peaks.allSatisfy { $0 < baseline + 160 << 20 }, "\(report)")
        #expect(after.allSatisfy { $0 < baseline + 48 << 20 }, "\(report)")
        #expect(after.last! < after[1] + 16 << 20, "\(report)")
    }
}
