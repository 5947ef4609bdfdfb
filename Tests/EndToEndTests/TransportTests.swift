// The real binary over real clients: curl (h2c prior knowledge, TLS with ALPN), nghttp, and the project's own
// HTTP/2 client, on the operations routes (HTTP/1.1: HTTP1TransportTests).
import Foundation
import HTTP
import Logging
import TestSupport
import Testing

@Suite struct TransportTests {
    @Test func curlOverH2cWithPriorKnowledge() throws {
        let broker = try ApprovaldProcess()
        let result = try runCommand(
            [
                "curl", "-sS", "--http2-prior-knowledge", "-w", "%{http_code} %{http_version}",
                broker.h2cURL + "/healthz",
            ])
        #expect(result.stdout == "ok\n200 2")
        #expect(try broker.curl("/readyz").status == 200)
    }

    @Test func curlOverTLSNegotiatesH2ByALPN() throws {
        let broker = try ApprovaldProcess()
        let result = try runCommand(
            [
                "curl", "-sS", "-v", "--cacert", broker.certificatePath, "-w", "%{http_code} %{http_version}",
                broker.tlsURL + "/healthz",
            ])
        #expect(result.stdout == "ok\n200 2")
        #expect(
            result.stderr.contains("ALPN: server accepted h2")
                || result.stderr.contains("ALPN, server accepted to use h2"))
        #expect(result.stderr.contains("TLSv1.3") || result.stderr.contains("TLSv1.2"))
        // Without trusting the development certificate, curl refuses it.
        let untrusted = try runCommand(["curl", "-sS", broker.tlsURL + "/healthz"])
        #expect(untrusted.status == 60)
    }

    /// With the system's OpenSSL defaults lifted on both sides, only the server's own minimum can refuse 1.1.
    @Test func tlsRefusesVersionsBelow1_2() throws {
        let broker = try ApprovaldProcess(environment: ["OPENSSL_CONF": "/dev/null"])
        func handshake(_ version: String) throws -> String {
            try runCommand(
                [
                    "openssl", "s_client", "-connect", "127.0.0.1:\(broker.tlsPort)", version, "-cipher",
                    "DEFAULT@SECLEVEL=0",
                ],
                timeout: 10, environment: ["OPENSSL_CONF": "/dev/null"], input: Data()
            ).stdout
        }
        #expect(try handshake("-tls1_2").contains("New, TLSv1.2, Cipher is"))
        let old = try runCommand(
            [
                "openssl", "s_client", "-connect", "127.0.0.1:\(broker.tlsPort)", "-tls1_1", "-cipher",
                "DEFAULT@SECLEVEL=0",
            ],
            timeout: 10, environment: ["OPENSSL_CONF": "/dev/null"], input: Data())
        #expect(old.stderr.contains("alert protocol version"))
        #expect(old.stdout.contains("New, (NONE), Cipher is (NONE)"))
    }

    @Test func nghttpSeesTheServersSettings() throws {
        let broker = try ApprovaldProcess()
        let result = try runCommand(["nghttp", "-v", "-n", broker.h2cURL + "/healthz"])
        #expect(result.status == 0)
        let serverSettings = result.stdout.components(separatedBy: "recv SETTINGS frame").dropFirst().first ?? ""
        #expect(serverSettings.contains("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):128]"))
        #expect(serverSettings.contains("[SETTINGS_MAX_HEADER_LIST_SIZE(0x06):16384]"))
        #expect(result.stdout.contains(":status: 200"))
    }

    @Test func nghttpOverTLS() throws {
        let broker = try ApprovaldProcess()
        // nghttp does not verify certificates; it shows the ALPN outcome.
        let result = try runCommand(["nghttp", "-v", "-n", broker.tlsURL + "/readyz"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("The negotiated protocol: h2"))
        #expect(result.stdout.contains(":status: 200"))
    }

    @Test func unknownRoutesAndMethodsGetProblemDocuments() throws {
        let broker = try ApprovaldProcess()
        let missing = try broker.curl("/nope")
        #expect(missing.status == 404)
        #expect(missing.body.contains("\"code\":\"not_found\""))
        let wrongMethod = try broker.curl("/healthz", ["-X", "POST"])
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.body.contains("\"status\":405"))
    }

    @Test func metricsExposeRequestsAndProcessGauges() throws {
        let broker = try ApprovaldProcess()
        for _ in 0..<3 { _ = try broker.curl("/healthz") }
        _ = try broker.curl("/nope")
        let metrics = try broker.curl("/metrics")
        #expect(metrics.status == 200)
        let samples = Dictionary(
            metrics.body.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line -> (String, Double)? in
                let parts = line.split(separator: " ")
                return parts.count == 2 ? (String(parts[0]), Double(parts[1]) ?? -1) : nil
            }, uniquingKeysWith: { $1 })
        #expect(samples["approvald_http_requests_total{code=\"200\"}"] == 3)
        #expect(samples["approvald_http_requests_total{code=\"404\"}"] == 1)
        #expect((samples["process_resident_memory_bytes"] ?? 0) > 1_000_000)
        #expect((samples["process_open_fds"] ?? 0) >= 4)
        let started = samples["process_start_time_seconds"] ?? 0
        #expect(abs(started - Date().timeIntervalSince1970) < 600)
        #expect(metrics.body.contains("# TYPE approvald_http_requests_total counter"))
    }

    @Test func theProjectsClientOverH2cAndTLS() async throws {
        let broker = try ApprovaldProcess()
        // Stopped and joined before the loop and its clients are released.
        let thread = try LoopThread()
        defer { thread.stop() }
        let loop = thread.loop
        let logger = Logger(label: "e2e")
        let certificate = broker.certificatePath
        for origin in [broker.h2cURL, broker.tlsURL] {
            let statuses: [Int] = try await withCheckedThrowingContinuation { continuation in
                loop.execute {
                    do {
                        let tls = origin.hasPrefix("https") ? try TLSClientContext(caFile: certificate) : nil
                        let client = try H2Client(loop: loop, origin: origin, tls: tls, logger: logger)
                        var statuses: [Int] = []
                        for path in ["/healthz", "/readyz", "/metrics", "/missing"] {
                            client.send(method: "GET", path: path, timeoutSeconds: 10) { result in
                                statuses.append((try? result.get().status) ?? -1)
                                if statuses.count == 4 {
                                    continuation.resume(returning: statuses.sorted())
                                    client.close()
                                }
                            }
                        }
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
            }
            #expect(statuses == [200, 200, 200, 404], "\(origin)")
        }
    }
}
