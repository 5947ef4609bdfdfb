// Every hardening promise of the transport, against the real binary: body and header limits, stream limits,
// floods, malformed frames, silence, idleness, and running out of file descriptors.
import Foundation
import Glibc
import TestSupport
import Testing

/// A request whose body is still to come keeps its stream open.
func openStream(
    _ raw: RawHTTP2Connection, _ id: UInt32, path: String = "/healthz", extra: [(String, String)] = []
)
    throws
{
    try raw.sendFrame(
        type: Frame.headers, flags: Frame.endHeaders, stream: id,
        payload: RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("POST", path, extra: extra)))
}

/// Whether the server still answers a fresh client.
func stillServes(_ broker: ApprovaldProcess) throws -> Bool {
    try broker.curl("/healthz").status == 200
}

@Suite struct BodyAndHeaderLimitTests {
    @Test func bodiesOver16KiBGet413WithOrWithoutContentLength() throws {
        let broker = try ApprovaldProcess()
        let big = directoryFile(bytes: 16 * 1024 + 1)
        let exact = directoryFile(bytes: 16 * 1024)
        // curl declares content-length.
        #expect(try broker.curl("/healthz", ["--data-binary", "@\(big)"]).status == 413)
        #expect(try broker.curl("/healthz", ["--data-binary", "@\(big)"]).body.contains("\"code\":\"too_large\""))
        // Exactly 16 KiB is accepted (and reaches the route, which takes only GET).
        #expect(try broker.curl("/healthz", ["--data-binary", "@\(exact)"]).status == 405)

        // No content-length: the 413 comes as soon as the bytes pass the limit, before the request ends; then
        // RST_STREAM(NO_ERROR) tells the client to stop sending the rest.
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface()
        try openStream(raw, 1)
        try raw.sendFrame(type: Frame.data, stream: 1, payload: [UInt8](repeating: 0x61, count: 16_384))
        try raw.sendFrame(type: Frame.data, stream: 1, payload: [UInt8](repeating: 0x61, count: 10))
        #expect(try raw.readStatus(stream: 1) == 413)
        let reset = try raw.readFrame { $0.type == Frame.rstStream && $0.streamID == 1 }
        #expect(reset?.errorCode == 0)
    }

    @Test func aDeclaredLengthOver16KiBGets413BeforeTheBodyArrives() throws {
        let broker = try ApprovaldProcess()
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface()
        try openStream(raw, 1, extra: [("content-length", "1000000")])
        #expect(try raw.readStatus(stream: 1) == 413)
    }

    /// A content-length smaller than the body makes the request malformed (RFC 9113 §8.1.1): the stream is reset
    /// with PROTOCOL_ERROR at the first byte past the declared length, and nothing reaches a handler.
    @Test func aContentLengthThatUnderstatesTheBodyResetsTheStream() throws {
        let broker = try ApprovaldProcess()
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface()
        try openStream(raw, 1, extra: [("content-length", "10")])
        try raw.sendFrame(
            type: Frame.data, flags: Frame.endStream, stream: 1,
            payload: [UInt8](repeating: 0x61, count: 20_000 % 16_384))
        let reset = try raw.readFrame { $0.type == Frame.rstStream && $0.streamID == 1 }
        #expect(reset?.errorCode == 1)
        #expect(try stillServes(broker))
    }

    @Test func headerBlocksOver16KiBAreRefused() throws {
        let broker = try ApprovaldProcess()
        let large = String(repeating: "a", count: 17_000)
        let answer = try broker.curl("/healthz", ["-H", "x-large: \(large)"])
        #expect(answer.status == 431)
        #expect(answer.body.contains("\"code\":\"header_too_large\""))
        // Just under the limit is fine.
        #expect(try broker.curl("/healthz", ["-H", "x-large: \(String(repeating: "a", count: 15_000))"]).status == 200)
    }
}

@Suite struct FloodTests {
    @Test func streamsBeyondTheAdvertisedLimitAreRefused() throws {
        let broker = try ApprovaldProcess()
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface()
        // The server's SETTINGS must be acknowledged for its limit to bind.
        _ = try raw.readFrame { $0.type == Frame.settings && $0.flags & Frame.ack == 0 }
        try raw.sendFrame(type: Frame.settings, flags: Frame.ack)
        for index in 0..<129 { try openStream(raw, UInt32(2 * index + 1)) }
        // RFC 9113 §5.1.2 allows refusing the stream or ending the connection; nghttp2 does the latter once its
        // SETTINGS are acknowledged. Either way stream 257, the 129th, is not let in.
        let refused = try #require(try raw.readFrame { $0.type == Frame.rstStream || $0.type == Frame.goaway })
        if refused.type == Frame.rstStream {
            #expect(refused.streamID == 2 * 128 + 1)
            #expect(refused.errorCode == 7 || refused.errorCode == 1)  // REFUSED_STREAM or PROTOCOL_ERROR
        } else {
            let lastStream = refused.payload.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7fff_ffff
            #expect(lastStream == 2 * 127 + 1)
            #expect(refused.errorCode == 1)
        }
        #expect(try stillServes(broker))
    }

    /// nghttp2's reset limiter: a burst of 1,000 resets is tolerated, the next one ends the connection.
    @Test func aRapidResetFloodEndsTheConnection() throws {
        let broker = try ApprovaldProcess()
        func resetFlood(_ count: Int) throws -> RawHTTP2Connection {
            let raw = try RawHTTP2Connection(port: broker.h2cPort)
            try raw.sendPreface()
            var batch: [UInt8] = []
            for index in 0..<count {
                let id = UInt32(2 * index + 1)
                batch += RawHTTP2Connection.frame(
                    type: Frame.headers, flags: Frame.endHeaders, stream: id,
                    payload: RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("POST", "/healthz")))
                batch += RawHTTP2Connection.frame(type: Frame.rstStream, stream: id, payload: [0, 0, 0, 8])
            }
            try? raw.send(batch)
            return raw
        }
        let tolerated = try resetFlood(900)
        try tolerated.sendFrame(type: Frame.ping, payload: [UInt8](repeating: 7, count: 8))
        let pong = try tolerated.readFrame(timeout: 10) { $0.type == Frame.ping || $0.type == Frame.goaway }
        #expect(pong?.type == Frame.ping)

        let flood = try resetFlood(3000)
        let goaway = try #require(try flood.readFrame(timeout: 10) { $0.type == Frame.goaway })
        #expect(goaway.errorCode == 2)  // INTERNAL_ERROR, nghttp2's answer to a reset flood
        // Cut at the 1,001st reset, plus what the bucket refilled (33/s) while the flood arrived; far from its end.
        let lastStream = goaway.payload.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7fff_ffff
        #expect(lastStream >= 2 * 1000 + 1 && lastStream < 2 * 1500)
        #expect(flood.closes(within: 5))
        #expect(try stillServes(broker))
    }

    @Test func aContinuationFloodEndsTheConnection() throws {
        let broker = try ApprovaldProcess()
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface()
        let block = RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("GET", "/healthz"))
        try raw.sendFrame(type: Frame.headers, flags: Frame.endStream, stream: 1, payload: Array(block.prefix(4)))
        var flood: [UInt8] = []
        for _ in 0..<100 {
            flood += RawHTTP2Connection.frame(type: Frame.continuation, stream: 1, payload: [])
        }
        try? raw.send(flood)
        let goaway = try raw.readFrame(timeout: 10) { $0.type == Frame.goaway }
        #expect(goaway != nil && goaway?.errorCode != 0)
        #expect(raw.closes(within: 5))
        #expect(try stillServes(broker))
    }

    @Test(arguments: [
        ("DATA on stream 0", RawHTTP2Connection.frame(type: Frame.data, stream: 0, payload: [1, 2, 3])),
        ("SETTINGS of 5 bytes", RawHTTP2Connection.frame(type: Frame.settings, payload: [0, 1, 0, 0, 0])),
        ("WINDOW_UPDATE of 0", RawHTTP2Connection.frame(type: Frame.windowUpdate, payload: [0, 0, 0, 0])),
        ("PING of 3 bytes", RawHTTP2Connection.frame(type: Frame.ping, payload: [1, 2, 3])),
        (
            "an even stream id",
            RawHTTP2Connection.frame(
                type: Frame.headers, flags: Frame.endHeaders | Frame.endStream, stream: 2,
                payload: RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("GET", "/healthz")))
        ),
        (
            "a broken HPACK block",
            RawHTTP2Connection.frame(
                type: Frame.headers, flags: Frame.endHeaders | Frame.endStream, stream: 1,
                payload: [0xff, 0xff, 0xff, 0xff])
        ),
    ])
    func malformedFramesGetGOAWAYAndOthersAreUndisturbed(name: String, frame: [UInt8]) throws {
        let broker = try ApprovaldProcess()
        let bystander = try RawHTTP2Connection(port: broker.h2cPort)
        try bystander.sendPreface()
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface()
        try raw.send(frame)
        let goaway = try raw.readFrame { $0.type == Frame.goaway }
        #expect(goaway?.errorCode != nil && goaway?.errorCode != 0, "\(name)")
        #expect(raw.closes(within: 5), "\(name)")
        // The other connection still works.
        try bystander.sendFrame(
            type: Frame.headers, flags: Frame.endHeaders | Frame.endStream, stream: 1,
            payload: RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("GET", "/healthz")))
        #expect(try bystander.readStatus(stream: 1) == 200, "\(name)")
    }
}

@Suite struct SilenceAndIdleTests {
    static let fastTimers = """
        [http2]
        preface_timeout_seconds = 1
        idle_timeout_seconds = 1
        """

    @Test func noPrefaceWithinTheTimeoutClosesTheConnection() throws {
        let broker = try ApprovaldProcess(extraConfig: Self.fastTimers)
        let silent = try RawHTTP2Connection(port: broker.h2cPort)
        let partial = try RawHTTP2Connection(port: broker.h2cPort)
        try partial.send(Array(RawHTTP2Connection.preface.prefix(10)))
        let started = Date()
        #expect(silent.closes(within: 5))
        #expect(partial.closes(within: 5))
        #expect(Date().timeIntervalSince(started) >= 0.8)
    }

    @Test func theDefaultPrefaceTimeoutIsTenSeconds() throws {
        let broker = try ApprovaldProcess()
        let silent = try RawHTTP2Connection(port: broker.h2cPort)
        let started = Date()
        #expect(silent.closes(within: 15))
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed >= 9.5 && elapsed < 12)
    }

    @Test func aConnectionWithNoOpenStreamIsClosedAfterTheIdleTime() throws {
        let broker = try ApprovaldProcess(extraConfig: Self.fastTimers)
        let idle = try RawHTTP2Connection(port: broker.h2cPort)
        try idle.sendPreface()
        let goaway = try idle.readFrame(timeout: 5) { $0.type == Frame.goaway }
        #expect(goaway?.errorCode == 0)
        #expect(idle.closes(within: 5))
    }

    /// A stream whose request is complete and whose answer is under way keeps the connection; here the answer
    /// waits for flow-control window the client has not given yet.
    @Test func anOpenStreamKeepsTheConnection() throws {
        let broker = try ApprovaldProcess(extraConfig: Self.fastTimers)
        let busy = try RawHTTP2Connection(port: broker.h2cPort)
        try busy.sendPreface(settings: [(0x4, 0)])  // SETTINGS_INITIAL_WINDOW_SIZE = 0
        try busy.sendFrame(
            type: Frame.headers, flags: Frame.endHeaders | Frame.endStream, stream: 1,
            payload: RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("GET", "/metrics")))
        usleep(2_000_000)
        // Still there: a PING is answered.
        try busy.sendFrame(type: Frame.ping, payload: [1, 2, 3, 4, 5, 6, 7, 8])
        let pong = try busy.readFrame { $0.type == Frame.ping || $0.type == Frame.goaway }
        #expect(pong?.type == Frame.ping && pong?.flags == Frame.ack)
        // Once the answer is let out and the stream ends, the idle clock starts again.
        try busy.sendFrame(type: Frame.windowUpdate, stream: 1, payload: [0, 0x10, 0, 0])
        #expect(try busy.readFrame(timeout: 5) { $0.type == Frame.goaway } != nil)
    }
}

@Suite struct ResourceTests {
    /// With 40 descriptors, 60 connections exhaust them: accepting pauses (no busy loop), and resumes once
    /// connections close.
    @Test func runningOutOfDescriptorsPausesAcceptingWithoutSpinning() throws {
        let broker = try ApprovaldProcess(shellPrefix: "ulimit -n 40")
        var hogs: [RawHTTP2Connection] = []
        for _ in 0..<60 { hogs.append(try RawHTTP2Connection(port: broker.h2cPort)) }
        usleep(300_000)
        let before = broker.cpuSeconds()
        usleep(1_500_000)
        let spent = broker.cpuSeconds() - before
        #expect(spent < 0.3, "CPU seconds spent while out of descriptors: \(spent)")
        #expect(broker.log(tail: 50).contains("out of file descriptors"))
        hogs.removeAll()
        #expect(eventuallyBlocking(timeout: 10) { (try? stillServes(broker)) == true })
    }
}

/// A file of `bytes` bytes in the temporary directory.
func directoryFile(bytes: Int) -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-body-\(bytes)").path
    if !FileManager.default.fileExists(atPath: path) {
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 0x61, count: bytes))
    }
    return path
}
