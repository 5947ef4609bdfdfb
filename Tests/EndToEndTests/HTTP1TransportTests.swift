// HTTP/1.1 beside HTTP/2 on the real binary: curl over cleartext and TLS (ALPN http/1.1, and no ALPN), both
// protocols on one port at once, each strictness rule of API.md (Transport) on a raw socket — its status, then
// the connection closed — pipelining, Expect, slowloris and a client that never reads.
import Foundation
import TestSupport
import Testing

/// The answer's status code, from its status line.
private func status(_ answer: [UInt8]) -> Int? {
    let line = String(decoding: answer.prefix(while: { $0 != UInt8(ascii: "\r") }), as: UTF8.self)
    let parts = line.split(separator: " ")
    return parts.count >= 2 && parts[0] == "HTTP/1.1" ? Int(parts[1]) : nil
}

/// Sends `request` on a new connection and reads until the server closes it.
private func answerThenClose(_ broker: ApprovaldProcess, _ request: String) throws -> [UInt8] {
    let raw = try RawHTTP2Connection(port: broker.h2cPort)
    try raw.send(Array(request.utf8))
    return try raw.readToEnd(timeout: 10)
}

@Suite struct HTTP1TransportTests {
    @Test func curlOverCleartextAndTLSWithALPNOrNone() throws {
        let broker = try ApprovaldProcess()
        let plain = try runCommand(
            ["curl", "-sS", "-w", "%{http_code} %{http_version}", broker.h2cURL + "/healthz"])
        #expect(plain.stdout == "ok\n200 1.1")
        for flags in [["--http1.1"], ["--no-alpn"]] {
            let overTLS = try runCommand(
                ["curl", "-sS", "-v", "--cacert", broker.certificatePath, "-w", "%{http_code} %{http_version}"] + flags
                    + [broker.tlsURL + "/readyz"])
            #expect(overTLS.stdout == "ready\n200 1.1", "\(flags)")
        }
        // HEAD: the head and its length, no body.
        let head = try runCommand(["curl", "-sS", "-I", "--http1.1", broker.h2cURL + "/nope"])
        #expect(head.stdout.hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        #expect(head.stdout.contains("content-type: application/problem+json"))
    }

    @Test func anHTTP1AndAnHTTP2ClientOnOnePortAtOnce() throws {
        let broker = try ApprovaldProcess()
        let http1 = try RawHTTP2Connection(port: broker.h2cPort)
        try http1.send(Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        let first = http1.read { String(decoding: $0, as: UTF8.self).hasSuffix("ok\n") }
        #expect(first.map(status) == 200)
        let h2 = try RawHTTP2Connection(port: broker.h2cPort)
        try h2.sendPreface()
        try h2.sendFrame(
            type: 1, flags: 5, stream: 1,
            payload: RawHTTP2Connection.headerBlock(RawHTTP2Connection.request("GET", "/healthz")))
        #expect(try h2.readStatus(stream: 1) == 200)
        // Both stay open: the metrics count one of each (and the scrape's own connection).
        let metrics = try broker.curl("/metrics").body
        #expect(metrics.contains("approvald_http_connections{protocol=\"h2\"} 2"))
        #expect(metrics.contains("approvald_http_connections{protocol=\"http/1.1\"} 1"))
        try http1.send(Array("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(http1.read { String(decoding: $0, as: UTF8.self).hasSuffix("ready\n") }.map(status) == 200)
    }

    /// Each rule: the status, then the connection is closed — whatever the client still sends after.
    @Test func eachStrictnessRuleRefusesAndCloses() throws {
        let broker = try ApprovaldProcess()
        let cases: [(String, String, Int)] = [
            (
                "CL and TE",
                "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                400
            ),
            (
                "TE and CL",
                "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
                400
            ),
            (
                "TE not chunked", "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                400
            ),
            ("TE obfuscated", "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
            ("CL malformed", "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd", 400),
            (
                "CL conflicting",
                "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", 400
            ),
            ("obs-fold", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
            ("bare CR", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
            ("NUL", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n", 400),
            ("space before colon", "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
            (
                "head too large",
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + String(repeating: "a", count: 17_000) + "\r\n\r\n", 431
            ),
            (
                "bad chunk size",
                "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400
            ),
            (
                "chunk without CRLF",
                "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", 400
            ),
            ("body declared too large", "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 16385\r\n\r\n", 413),
            (
                "chunked body too large",
                "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4e20\r\n"
                    + String(repeating: "a", count: 20_000) + "\r\n0\r\n\r\n", 413
            ),
            ("no Host", "GET /healthz HTTP/1.1\r\n\r\n", 400),
            ("HTTP/2.0 request line", "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            (
                "unknown expectation", "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx",
                417
            ),
        ]
        for (name, request, expected) in cases {
            // A smuggled second request after the refused one must never be answered.
            let answer = try answerThenClose(broker, request + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(status(answer) == expected, "\(name)")
            let text = String(decoding: answer, as: UTF8.self)
            #expect(text.contains("connection: close\r\n") && text.contains("application/problem+json"), "\(name)")
            #expect(!text.contains("HTTP/1.1 200"), "\(name): the smuggled request is not answered")
        }
        #expect(try broker.curl("/healthz").status == 200)
    }

    @Test func pipelinedRequestsAreAnsweredInOrderAndConnectionCloseIsHonoured() throws {
        let broker = try ApprovaldProcess()
        let paths = ["/healthz", "/nope", "/readyz", "/metrics", "/healthz"]
        let requests = paths.enumerated().map { index, path in
            "GET \(path) HTTP/1.1\r\nHost: x\r\n" + (index == paths.count - 1 ? "Connection: close\r\n" : "") + "\r\n"
        }
        let answer = String(decoding: try answerThenClose(broker, requests.joined()), as: UTF8.self)
        let statuses = answer.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
        #expect(statuses == ["200", "404", "200", "200", "200"])
        #expect(answer.hasSuffix("ok\n"))
    }

    @Test func expectContinueIsAnsweredBeforeTheBody() throws {
        let broker = try ApprovaldProcess()
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.send(
            Array("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n".utf8))
        let interim = raw.read { String(decoding: $0, as: UTF8.self).hasSuffix("\r\n\r\n") }
        #expect(interim.map { String(decoding: $0, as: UTF8.self) } == "HTTP/1.1 100 Continue\r\n\r\n")
        try raw.send(Array("{}".utf8))
        #expect(raw.read { String(decoding: $0, as: UTF8.self).contains("}") }.map(status) == 405)
    }

    /// A head sent a byte a second is cut off at the request timeout, with 408, while other clients are served.
    @Test func slowlorisIsCutOffAtTheRequestTimeout() throws {
        let broker = try ApprovaldProcess(extraConfig: "[http2]\nrequest_timeout_seconds = 2\n")
        let slow = try RawHTTP2Connection(port: broker.h2cPort)
        let started = Date()
        var cutOff = false
        for byte in "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8 {
            guard (try? slow.send([byte])) != nil else { break }
            #expect(try broker.curl("/healthz").status == 200)
            if let answer = slow.read(timeout: 0.5, until: { String(decoding: $0, as: UTF8.self).contains("}") }) {
                #expect(status(answer) == 408)
                cutOff = true
                break
            }
        }
        #expect(cutOff)
        #expect(Date().timeIntervalSince(started) < 6)
        #expect(slow.closes(within: 5))
    }

    /// A client that sends requests and never reads is dropped once its answers stop leaving.
    @Test func aClientThatNeverReadsIsDropped() throws {
        let broker = try ApprovaldProcess(extraConfig: "[http2]\nsend_timeout_seconds = 1\n")
        let greedy = try RawHTTP2Connection(port: broker.h2cPort)
        greedy.setReceiveBuffer(bytes: 4096)
        greedy.setSendTimeout(seconds: 5)
        let request = Array(String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: 200).utf8)
        // Sends, never reading, until the server stops taking requests (its output over its mark, the sockets
        // full) and then drops the connection: a reset (or a broken pipe), not a send that merely timed out.
        let deadline = Date().addingTimeInterval(30)
        var failure = ""
        while Date() < deadline {
            do { try greedy.send(request) } catch {
                failure = "\(error)"
                break
            }
        }
        #expect(failure.hasSuffix("errno \(ECONNRESET)") || failure.hasSuffix("errno \(EPIPE)"), "\(failure)")
        #expect(
            eventuallyBlocking(timeout: 5) {
                (try? broker.curl("/metrics").body.contains("approvald_http_connections{protocol=\"http/1.1\"} 0"))
                    == true
            })
    }
}
