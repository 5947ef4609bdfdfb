// HTTP/1.1 without a socket: the request parser and each strictness rule of API.md (Transport), what the server
// writes, how a cleartext connection's first bytes classify it, and the connection's lifecycle.
import TestSupport
import Testing

@testable import HTTP

private func parser(maxHead: Int = 16_384, maxBody: Int = 16_384) -> HTTP1RequestParser {
    HTTP1RequestParser(maxHeadBytes: maxHead, maxBodyBytes: maxBody)
}

/// Feeds `text` in pieces of `pieceSize` bytes (going on to the next request after each, as the connection does)
/// and returns the outcomes that were not `.needMore`. The parser keeps the last request.
private func parse(
    _ text: String, pieceSize: Int = .max, into parser: HTTP1RequestParser = parser()
) -> [HTTP1RequestParser
    .Outcome]
{
    var outcomes: [HTTP1RequestParser.Outcome] = []
    var rest = Array(text.utf8)[...]
    while !rest.isEmpty {
        if outcomes.last == .message { parser.nextRequest() }
        let piece = Array(rest.prefix(pieceSize))
        let (consumed, outcome) = piece.withUnsafeBufferPointer { parser.parse($0) }
        rest = rest.dropFirst(consumed)
        if outcome != .needMore { outcomes.append(outcome) }
        if case .refused = outcome { break }
        if consumed == 0 && outcome == .needMore { break }
    }
    return outcomes
}

private func refusal(_ text: String, pieceSize: Int = .max) -> EarlyRefusal? {
    for outcome in parse(text, pieceSize: pieceSize) {
        if case .refused(let refusal) = outcome { return refusal }
    }
    return nil
}

private func isMalformed(_ refusal: EarlyRefusal?) -> Bool {
    if case .malformed = refusal { return true }
    return false
}

@Suite struct HTTP1ParserTests {
    @Test func aRequestWithABodyInOnePieceAndByteByByte() {
        let text =
            "POST /v1/x?a=b HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        for size in [Int.max, 1, 7] {
            let reader = parser()
            var seen: [HTTP1RequestParser.Outcome] = []
            var rest = Array(text.utf8)[...]
            while !rest.isEmpty {
                let piece = Array(rest.prefix(size))
                let (consumed, outcome) = piece.withUnsafeBufferPointer { reader.parse($0) }
                rest = rest.dropFirst(consumed)
                if outcome != .needMore { seen.append(outcome) }
            }
            #expect(seen == [.head, .message], "pieces of \(size)")
            #expect(reader.head?.method == "POST" && reader.head?.path == "/v1/x?a=b")
            #expect(reader.head?.fields[field: "content-type"] == "application/json")
            #expect(reader.head?.keepAlive == true && reader.head?.expectsContinue == false)
            #expect(reader.body == Array("{}".utf8))
        }
    }

    @Test func pipelinedRequestsComeOneAtATime() {
        let reader = parser()
        let text = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        let bytes = Array(text.utf8)
        var (consumed, outcome) = bytes.withUnsafeBufferPointer { reader.parse($0) }
        #expect(outcome == .head)
        var offset = consumed
        (consumed, outcome) = bytes[offset...].withUnsafeBufferPointer { reader.parse($0) }
        #expect(outcome == .message && reader.head?.path == "/a")
        offset += consumed
        // Stopped after the first request: the second waits until the parser is told to go on.
        #expect(offset < bytes.count)
        #expect(bytes[offset...].withUnsafeBufferPointer { reader.parse($0) } == (0, .needMore))
        reader.nextRequest()
        #expect(parse(String(decoding: bytes[offset...], as: UTF8.self), into: reader) == [.head, .message])
        #expect(reader.head?.path == "/b" && reader.head?.keepAlive == false)
    }

    @Test func chunkedBodiesAreJoinedAndTrailersDropped() {
        let reader = parser()
        let text =
            "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
        for size in [Int.max, 1, 5] {
            reader.nextRequest()
            #expect(parse(text, pieceSize: size, into: reader) == [.head, .message], "pieces of \(size)")
            #expect(reader.body == Array("abcde".utf8))
            #expect(reader.head?.fields[field: "x-trailer"] == nil)
        }
    }

    @Test func keepAliveFollowsTheVersionAndConnection() {
        for (text, keepAlive) in [
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        ] {
            let reader = parser()
            _ = parse(text, into: reader)
            #expect(reader.head?.keepAlive == keepAlive, "\(text)")
        }
    }

    @Test func absoluteFormBecomesAPathAndUpgradeIsServedAsHTTP1() {
        let reader = parser()
        #expect(
            parse("GET http://broker:8080/healthz?x=1 HTTP/1.1\r\nHost: broker\r\n\r\n", into: reader) == [
                .head, .message,
            ])
        #expect(reader.head?.path == "/healthz?x=1")
        reader.nextRequest()
        let upgrade =
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            + "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"
        #expect(parse(upgrade, into: reader) == [.head, .message, .head, .message])
        #expect(reader.head?.path == "/next")
    }

    @Test func expectContinueIsSeenAndOtherExpectationsRefused() {
        let reader = parser()
        _ = parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n", into: reader)
        #expect(reader.head?.expectsContinue == true)
        #expect(
            refusal("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\nx") == .expectationFailed)
    }

    // MARK: Each strictness rule

    @Test func contentLengthWithTransferEncodingIsRefused() {
        let text = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        #expect(isMalformed(refusal(text)))
        let reversed = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
        #expect(isMalformed(refusal(reversed)))
    }

    @Test func transferEncodingsOtherThanChunkedAreRefused() {
        for coding in ["gzip", "gzip, chunked", "chunked, gzip", "identity", "chunked\r\nTransfer-Encoding: chunked"] {
            let text = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \(coding)\r\n\r\n0\r\n\r\n"
            #expect(isMalformed(refusal(text)), "\(coding)")
        }
        #expect(isMalformed(refusal("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")))
        #expect(refusal("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n") == nil)
    }

    @Test func malformedOrConflictingContentLengthIsRefused() {
        for value in ["3x", "-1", "3, 3", "0x10", "", "99999999999999999999999"] {
            #expect(
                isMalformed(refusal("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \(value)\r\n\r\nabc")), "\(value)")
        }
        #expect(isMalformed(refusal("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")))
        #expect(isMalformed(refusal("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc")))
    }

    @Test func obsoleteLineFoldingIsRefused() {
        #expect(refusal("GET / HTTP/1.1\r\nHost: x\r\nFoo: a\r\n b\r\n\r\n") == .malformed("obsolete line folding"))
        #expect(
            refusal("GET / HTTP/1.1\r\nHost: x\r\nFoo: a\r\n\tb\r\n\r\n", pieceSize: 1)
                == .malformed("obsolete line folding"))
    }

    @Test func bareCROrNULInTheHeadIsRefused() {
        // Some http-parser finds first (its words), the rest the head's own scan.
        for text in [
            "GET / HTTP/1.1\r\nHost: x\r\nFoo: a\rb\r\n\r\n", "GET /\r HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\rHost: x\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\nFoo: a\u{0}b\r\n\r\n",
            "GET /\u{0} HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\nFoo: a\r\r\n\r\n",
        ] {
            #expect(isMalformed(refusal(text)), "\(text.debugDescription)")
            #expect(isMalformed(refusal(text, pieceSize: 1)), "\(text.debugDescription), byte by byte")
        }
        var scanner = HeadScanner()
        #expect(scanner.scan(UnsafeBufferPointer(start: nil, count: 0)) == nil)
        for (text, violation) in [
            ("a\rb", "a bare CR in the request head"), ("a\u{0}", "a NUL in the request head"),
            ("a\r\n b", "obsolete line folding"),
        ] {
            var scanner = HeadScanner()
            #expect(Array(text.utf8).withUnsafeBufferPointer { scanner.scan($0) } == violation)
        }
    }

    @Test func whitespaceBeforeAColonIsRefused() {
        #expect(isMalformed(refusal("GET / HTTP/1.1\r\nHost: x\r\nFoo : a\r\n\r\n")))
        #expect(isMalformed(refusal("GET / HTTP/1.1\r\nHost: x\r\nFoo\t: a\r\n\r\n")))
        #expect(isMalformed(refusal("GET / HTTP/1.1\r\nHost : x\r\n\r\n")))
    }

    @Test func aHeadOverTheLimitIs431WhateverThePieces() {
        let big = "GET / HTTP/1.1\r\nHost: x\r\nFoo: " + String(repeating: "a", count: 17_000) + "\r\n\r\n"
        #expect(refusal(big) == .headerBlockTooLarge(limit: 16_384))
        #expect(refusal(big, pieceSize: 1000) == .headerBlockTooLarge(limit: 16_384))
        let manyFields = "GET / HTTP/1.1\r\nHost: x\r\n" + String(repeating: "A: b\r\n", count: 3000) + "\r\n"
        #expect(refusal(manyFields) == .headerBlockTooLarge(limit: 16_384))
        // Just under the limit is fine.
        let fits = "GET / HTTP/1.1\r\nHost: x\r\nFoo: " + String(repeating: "a", count: 16_000) + "\r\n\r\n"
        #expect(refusal(fits) == nil)
    }

    @Test func badChunkFramingIsRefused() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        for body in ["zz\r\n", "5\r\nhelloXY0\r\n\r\n", "5\rX\nhello\r\n0\r\n\r\n", "ffffffffffffffffff\r\n", "-1\r\n"]
        {
            #expect(isMalformed(refusal(head + body)), "\(body.debugDescription)")
            #expect(isMalformed(refusal(head + body, pieceSize: 1)), "\(body.debugDescription), byte by byte")
        }
    }

    @Test func bodiesOverTheLimitAre413() {
        #expect(refusal("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16385\r\n\r\n") == .bodyTooLarge(limit: 16_384))
        let chunk = String(repeating: "a", count: 10_000)
        let chunked =
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2710\r\n\(chunk)\r\n2710\r\n\(chunk)\r\n0\r\n\r\n"
        #expect(refusal(chunked) == .bodyTooLarge(limit: 16_384))
        #expect(refusal(chunked, pieceSize: 999) == .bodyTooLarge(limit: 16_384))
    }

    @Test func hostIsRequiredOnceInHTTP11AndTheVersionIs1x() {
        #expect(isMalformed(refusal("GET / HTTP/1.1\r\n\r\n")))
        #expect(isMalformed(refusal("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")))
        #expect(refusal("GET / HTTP/1.0\r\n\r\n") == nil)
        #expect(refusal("GET / HTTP/2.0\r\nHost: x\r\n\r\n") == .versionNotSupported)
        #expect(refusal("GET / HTTP/1.2\r\nHost: x\r\n\r\n") == .versionNotSupported)
        #expect(isMalformed(refusal("GET foo HTTP/1.1\r\nHost: x\r\n\r\n")))
        #expect(isMalformed(refusal("\u{16}\u{3}\u{1} hello\r\n\r\n")))
    }
}

@Suite struct HTTP1WireTests {
    @Test func aHeadWithItsFramingAndNoFieldThatCouldSplitIt() {
        let headers: HTTPHeaders = [
            ("content-type", "text/plain"), ("x-evil", "a\r\nset-cookie: b"), ("content-length", "99"),
            ("connection", "keep-alive"), ("bad name", "x"), ("x-ok", "fine"),
        ]
        let head = String(
            decoding: HTTP1Wire.head(status: 201, headers: headers, framing: .contentLength(5), keepAlive: false),
            as: UTF8.self)
        #expect(
            head
                == "HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\nx-ok: fine\r\ncontent-length: 5\r\n"
                + "connection: close\r\n\r\n")
        let streamed = String(
            decoding: HTTP1Wire.head(status: 200, headers: [:], framing: .chunked, keepAlive: true), as: UTF8.self)
        #expect(streamed == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        let untilClose = String(
            decoding: HTTP1Wire.head(status: 200, headers: [:], framing: .untilClose, keepAlive: false), as: UTF8.self)
        #expect(untilClose == "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
        #expect(
            String(decoding: HTTP1Wire.chunk(Array(repeating: 0x61, count: 26)), as: UTF8.self) == "1a\r\n"
                + String(repeating: "a", count: 26) + "\r\n")
        #expect(HTTP1Wire.hasNoContent(204) && HTTP1Wire.hasNoContent(304) && !HTTP1Wire.hasNoContent(200))
    }

    @Test func firstBytesClassifyACleartextConnection() {
        let preface = ProtocolDetection.preface
        #expect(ProtocolDetection.classify(preface) == .http2)
        #expect(ProtocolDetection.classify(preface + Array("more".utf8)) == .http2)
        #expect(ProtocolDetection.classify(preface.prefix(10)) == .undecided)
        #expect(ProtocolDetection.classify([UInt8]()) == .undecided)
        #expect(ProtocolDetection.classify(Array("GET / HTTP/1.1\r\n".utf8)) == .http1)
        #expect(ProtocolDetection.classify(Array("PRI * HTTP/1.1\r\n".utf8)) == .http1)
        #expect(ProtocolDetection.classify(Array("POST".utf8)) == .http1)
    }
}

private let http1Timeouts = HTTP1ConnectionStateMachine.Timeouts(idle: 300, request: 10)

private func check<Value: Equatable>(
    _ actual: Value, _ expected: Value, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual == expected, sourceLocation: sourceLocation)
}

@Suite struct HTTP1ConnectionStateMachineTests {
    @Test func aRequestIsHandledThenTheConnectionWaitsForTheNext() {
        var connection = HTTP1ConnectionStateMachine(timeouts: http1Timeouts, now: 0)
        check(connection.start(), .armTimer(seconds: 10))
        #expect(connection.readsRequests)
        check(connection.requestReceived(), .dispatch)
        #expect(connection.state == .handling && !connection.readsRequests)
        // Nothing of the next request is read while this one is with its handler.
        connection.requestBegan(now: 1)
        #expect(connection.state == .handling)
        let (keepAlive, then) = connection.responded(requestKeepsAlive: true)
        #expect(keepAlive && then == .readNext)
        #expect(connection.state == .idle)
        // The pass ends idle: the idle timer, once.
        check(connection.readEnded(now: 2), .armIdleTimer(seconds: 300))
        check(connection.readEnded(now: 3), .none)
        connection.requestBegan(now: 5)
        #expect(connection.state == .receiving(since: 5))
        // The pass ends with the request still arriving: its timer, for what is left of its time, once.
        check(connection.readEnded(now: 6), .armTimer(seconds: 9))
        check(connection.readEnded(now: 7), .none)
    }

    @Test func manyRequestsInOnePassCostOneTimerAndAnEarlyIdleTimerIsArmedAgain() {
        var connection = HTTP1ConnectionStateMachine(timeouts: http1Timeouts, now: 0)
        _ = connection.start()
        for _ in 0..<32 {
            _ = connection.requestReceived()
            _ = connection.responded(requestKeepsAlive: true)
            connection.requestBegan(now: 1)
        }
        _ = connection.requestReceived()
        _ = connection.responded(requestKeepsAlive: true)
        check(connection.readEnded(now: 1), .armIdleTimer(seconds: 300))
        // More requests later; the idle timer armed at 1 fires at 301, 100 s after the last pass ended.
        connection.requestBegan(now: 200)
        _ = connection.requestReceived()
        _ = connection.responded(requestKeepsAlive: true)
        check(connection.readEnded(now: 201), .none)
        check(connection.timerFired(now: 301), .armTimer(seconds: 200))
        check(connection.timerFired(now: 501), .close)
    }

    @Test func aRequestThatTakesTooLongIs408ThenTheConnectionLingersAndCloses() {
        var connection = HTTP1ConnectionStateMachine(timeouts: http1Timeouts, now: 0)
        _ = connection.start()
        // A timer that fires before the request's deadline is armed again for what is left of it.
        check(connection.timerFired(now: 4), .armTimer(seconds: 6))
        check(connection.timerFired(now: 10), .refuse(.requestTimeout(seconds: 10)))
        #expect(connection.discardsInput)
        check(connection.outputDrained(), .shutWrite(lingerSeconds: 2))
        check(connection.outputDrained(), .none)
        check(connection.timerFired(now: 12), .close)
        #expect(connection.state == .closed)
    }

    @Test func anIdleConnectionClosesQuietly() {
        var connection = HTTP1ConnectionStateMachine(timeouts: http1Timeouts, now: 0)
        _ = connection.requestReceived()
        _ = connection.responded(requestKeepsAlive: true)
        _ = connection.readEnded(now: 1)
        check(connection.timerFired(now: 301), .close)
    }

    @Test func aRefusalOrConnectionCloseEndsTheConnection() {
        var refused = HTTP1ConnectionStateMachine(timeouts: http1Timeouts, now: 0)
        check(refused.requestRefused(.headerBlockTooLarge(limit: 1)), .refuse(.headerBlockTooLarge(limit: 1)))
        check(refused.requestReceived(), .none)
        // Until its answer is written, no earlier deadline closes it.
        check(refused.timerFired(now: 10), .none)
        var closing = HTTP1ConnectionStateMachine(timeouts: http1Timeouts, now: 0)
        _ = closing.requestReceived()
        let (keepAlive, then) = closing.responded(requestKeepsAlive: false)
        #expect(!keepAlive && then == .none)
        #expect(closing.state == .closing(writeShut: false))
        // A handler's second answer is nothing.
        check(closing.responded(requestKeepsAlive: true).keepAlive, false)
    }

    @Test func aStreamedResponseOwnsTheConnectionUntilItEnds() {
        var connection = HTTP1ConnectionStateMachine(timeouts: http1Timeouts, now: 0)
        check(connection.streamStarted(), false)
        _ = connection.requestReceived()
        check(connection.streamStarted(), true)
        #expect(connection.discardsInput && !connection.readsRequests)
        check(connection.timerFired(now: 10), .none)
        check(connection.readEnded(now: 10), .none)
        check(connection.streamEnded(), .endStream)
        check(connection.outputDrained(), .shutWrite(lingerSeconds: 2))
    }

    @Test func shutdownClosesIdleConnectionsAndMakesTheRequestUnderWayTheLast() {
        var idle = HTTP1ConnectionStateMachine(timeouts: http1Timeouts, now: 0)
        check(idle.shutdownRequested(), .close)
        var handling = HTTP1ConnectionStateMachine(timeouts: http1Timeouts, now: 0)
        _ = handling.requestReceived()
        check(handling.shutdownRequested(), .none)
        check(handling.responded(requestKeepsAlive: true).keepAlive, false)
        check(handling.shutdownGraceEnded(), .close)
        var streaming = HTTP1ConnectionStateMachine(timeouts: http1Timeouts, now: 0)
        _ = streaming.requestReceived()
        _ = streaming.streamStarted()
        check(streaming.shutdownRequested(), .endStream)
    }

    @Test func readingResumesOnceTheOutputHasDrained() {
        var connection = HTTP1ConnectionStateMachine(timeouts: http1Timeouts, now: 0)
        _ = connection.requestReceived()
        _ = connection.responded(requestKeepsAlive: true)
        check(connection.outputDrained(), .readNext)
    }
}

@Suite struct HTTP1StreamedResponseTests {
    /// A body streamed over time is chunked for HTTP/1.1, and for HTTP/1.0 (which knows no chunks) ends with the
    /// connection; either way the connection closes after it.
    @Test(arguments: [
        ("1.1", "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n3\r\nend\r\n0\r\n\r\n"), ("1.0", "abcdefghijklmnopqrstuvwxyzend"),
    ])
    func aStreamedBodyIsChunkedOrEndsWithTheConnection(version: String, body: String) async throws {
        let fixture = try await ServerFixture { _, responder in
            responder.startStream(status: 200, headers: [("content-type", "text/event-stream")])
            responder.write(Array("abcdefghijklmnopqrstuvwxyz".utf8))
            responder.write(Array("end".utf8))
            responder.endStream()
        }
        let raw = try RawHTTP2Connection(port: fixture.port)
        try raw.send(Array("GET /events HTTP/\(version)\r\nHost: x\r\n\r\n".utf8))
        let answer = String(decoding: try raw.readToEnd(timeout: 5), as: UTF8.self)
        let framing = version == "1.1" ? "transfer-encoding: chunked\r\n" : "connection: close\r\n"
        #expect(answer == "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\(framing)\r\n\(body)")
    }
}

@Suite struct HTTP1ClientTests {
    /// Sends GETs one after another on one HTTP/1.1 client for `peer`, each once the one before has its result.
    private func results(
        _ paths: [String], to peer: ScriptedPeer
    ) async throws -> [Result<HTTPClientResponse, HTTPClientError>] {
        let thread = try LoopThread()
        defer { thread.stop() }
        return try await thread.wait { done in
            // swift-format-ignore: NeverUseForceTry
            let client = try! HTTP1Client(
                loop: thread.loop, origin: "http://127.0.0.1:\(peer.port)", tls: nil, options: HTTPClientOptions())
            var results: [Result<HTTPClientResponse, HTTPClientError>] = []
            func next() {
                guard results.count < paths.count else { return done(results) }
                client.send(method: "GET", path: paths[results.count]) { result in
                    results.append(result)
                    next()
                }
            }
            next()
        }
    }

    @Test func aMalformedAnswerFailsTheRequest() async throws {
        let peer = try ScriptedPeer(connections: [[.answer("garbage\r\n\r\n")]])
        let result = try await results(["/"], to: peer)[0]
        guard case .failure(.malformedResponse) = result else {
            Issue.record("expected malformedResponse, got \(result)")
            return
        }
    }

    /// The kept connection is closed under the second request before any answer: it is sent again on a new
    /// connection, once.
    @Test func aRequestOnAKeptConnectionFoundClosedIsSentAgainOnANewOne() async throws {
        let peer = try ScriptedPeer(connections: [
            [.answer("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none"), .closeAfterRequest],
            [.answer("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntwo")],
        ])
        let answers = try await results(["/one", "/two"], to: peer).map { try $0.get().body }
        #expect(answers == [Array("one".utf8), Array("two".utf8)])
        #expect(peer.acceptedConnections == 2)
    }

    /// Found closed again on the new connection, the request fails rather than going round.
    @Test func aRequestIsSentAgainOnlyOnce() async throws {
        let peer = try ScriptedPeer(connections: [
            [.answer("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none"), .closeAfterRequest], [.closeAfterRequest],
        ])
        let outcomes = try await results(["/one", "/two"], to: peer)
        #expect(outcomes[0].status == 200)
        #expect(outcomes[1].error == .connectionLost)
    }

    @Test func aBodyWithoutALengthEndsWithTheConnectionAndAnInterimAnswerIsSkipped() async throws {
        let peer = try ScriptedPeer(connections: [
            [.answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-a: b \r\n\r\nuntil the end")]
        ])
        let response = try #require(try await results(["/"], to: peer)[0].response)
        #expect(response.body == Array("until the end".utf8))
        #expect(response.headers[field: "x-a"] == "b")
    }

    @Test func aConnectionRefusedFailsFast() async throws {
        // Bound and closed at once: nothing listens on the port.
        let port = try ScriptedPeer(connections: []).port
        let thread = try LoopThread()
        defer { thread.stop() }
        let result: Result<HTTPClientResponse, HTTPClientError> = try await thread.wait { done in
            // swift-format-ignore: NeverUseForceTry
            let client = try! HTTP1Client(
                loop: thread.loop, origin: "http://127.0.0.1:\(port)", tls: nil, options: HTTPClientOptions())
            client.send(method: "GET", path: "/") { result in
                done(result)
                _ = client
            }
        }
        guard case .failure(.connectFailed) = result else {
            Issue.record("expected connectFailed, got \(result)")
            return
        }
    }
}
