// Results to a verifier that speaks only HTTP/1.1 (Tests/Tools/http1-verifier, Python's http.server, as a Flask or
// Express verifier would): over http:// by default, and over https:// where it answers ALPN with http/1.1 only;
// every result arrives signed, across a verifier outage and a kill -9 of the broker, on reused connections.
import Foundation
import TestSupport
import Testing

/// The verifier as a child process, recording what it receives in a file.
private final class HTTP1Verifier {
    let process = Process()
    let record: URL

    init(port: Int, in directory: URL, tls: (certificate: String, key: String)?) throws {
        record = directory.appendingPathComponent("verifier-\(UUID().uuidString).jsonl")
        _ = FileManager.default.createFile(atPath: record.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments =
            [
                "python3", packageRoot.appendingPathComponent("Tests/Tools/http1-verifier").path, "--port", "\(port)",
                "--key-id", "test-idp", "--secret", "a test secret that is at least thirty-two bytes", "--record",
                record.path,
            ] + (tls.map { ["--tls-certificate", $0.certificate, "--tls-private-key", $0.key] } ?? [])
        let log = directory.appendingPathComponent("verifier.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: log)
        process.standardError = process.standardOutput
        try process.run()
    }

    deinit {
        // SIGKILL: a child of Foundation's Process may have SIGTERM blocked.
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Every callback received so far.
    var received: [[String: Any]] {
        ((try? String(contentsOf: record, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    var keys: Set<String> { Set(received.compactMap { $0["idempotency_key"] as? String }) }
}

@Suite struct HTTP1VerifierTests {
    @Test(arguments: [false, true])
    func everyResultReachesAnHTTP1OnlyVerifierAcrossAnOutageAndAKill(overTLS: Bool) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "approvald-http1-verifier-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let certificate = directory.appendingPathComponent("verifier-cert.pem").path
        let key = directory.appendingPathComponent("verifier-key.pem").path
        #expect(
            try runCommand([approvaldBinary, "dev-cert", "--certificate", certificate, "--private-key", key]).status
                == 0
        )
        // A port that is free now: nothing answers there until the verifier comes up on it.
        let probe = try RecordingServer()
        let port = probe.port
        probe.stop()
        let url = overTLS ? "https://localhost:\(port)/approvald/results" : "http://127.0.0.1:\(port)/approvald/results"
        let config =
            brokerConfiguration(verifierURL: url) + (overTLS ? "\n[forwarding]\nca_file = \"\(certificate)\"\n" : "")
        let data = directory.appendingPathComponent("data").path
        var broker = try ApprovaldProcess(extraConfig: config, dataDirectory: data)
        var idp = IdP(broker: broker)
        var ended = try (0..<3).map { try idp.cancelledSignIn($0) }
        // The verifier is down: the results wait, retried.
        #expect(resultsAreRetried(broker, count: 3))
        #expect(broker.stop(signal: SIGKILL) != nil)

        broker = try ApprovaldProcess(extraConfig: config, dataDirectory: data, redis: broker.redis)
        idp = IdP(broker: broker)
        let verifier = try HTTP1Verifier(port: port, in: directory, tls: overTLS ? (certificate, key) : nil)
        #expect(eventuallyBlocking(timeout: 20) { verifier.keys == Set(ended) })
        // Now up: the next results go out at once, on the connections the pool keeps.
        ended += try (3..<8).map { try idp.cancelledSignIn($0) }
        #expect(eventuallyBlocking(timeout: 10) { verifier.keys == Set(ended) })
        let received = verifier.received
        #expect(received.allSatisfy { $0["valid"] as? Bool == true && $0["version"] as? String == "HTTP/1.1" })
        #expect(received.allSatisfy { ($0["result"] as? [String: Any])?["outcome"] as? String == "cancelled" })
        let connections = Set(received.compactMap { $0["client_port"] as? Int })
        #expect(connections.count < received.count, "\(connections.count) connections for \(received.count) results")
        #expect(
            eventuallyBlocking {
                (try? broker.curl("/metrics").body.contains("approvald_forward_queue_depth 0")) == true
            })
    }

    /// `verifier_protocol = "h2c"` keeps an http:// verifier on HTTP/2 with prior knowledge.
    @Test func h2cStaysAvailableForAnHTTPVerifier() throws {
        let verifier = try RecordingServer()
        defer { verifier.stop() }
        let config = brokerConfiguration(verifierURL: verifier.url).replacingOccurrences(
            of: "verifier_url = \"\(verifier.url)\"",
            with: "verifier_url = \"\(verifier.url)\"\nverifier_protocol = \"h2c\"")
        let broker = try ApprovaldProcess(extraConfig: config)
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("h2c-phone")
        #expect(try idp.register(phone, user: "h2c@contoso.com").status == 201)
        let created = try idp.challenge("signin-h2c", user: "h2c@contoso.com")
        let challengeID = try #require(created.json["challenge_id"] as? String)
        #expect(try idp.call("DELETE", "/v1/tenants/contoso/challenges/\(challengeID)").status == 200)
        #expect(eventuallyBlocking { verifier.received.count == 1 })
        #expect(verifier.received.first?.headers["idempotency-key"] == challengeID)
        #expect(verifier.protocols == [.h2])
    }
}
