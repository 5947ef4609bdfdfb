// Recovery at start: the embedded store is read in the background while the broker already answers probes (a
// Redis store has nothing to read back).
import Foundation
import Glibc
import TestSupport
import Testing

@Suite struct RecoveryTests {
    @Test(.disabled(if: testsRunOnRedis, "the Redis store keeps nothing to recover"))
    func readyzIsUnavailableUntilALargeStoreIsRecovered() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent(
            "approvald-recovery-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: data) }
        // A first run makes the schema and a device.
        do {
            let first = try ApprovaldProcess(extraConfig: brokerConfig, dataDirectory: data)
            #expect(
                try IdP(broker: first).register(try SimulatedDevice("phone-1"), user: "alice@contoso.com").status == 201
            )
            #expect(first.stop() == 0)
        }
        // 300,000 users, each with a copy of that device and a pending challenge far from expiry.
        let expires = Int64(Date().timeIntervalSince1970 * 1000) + 3_600_000
        let insert = """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
            INSERT INTO devices SELECT 'device-' || i, tenant_id, 'user-' || i, public_key, push_provider, push_token,
                push_topic, display_name, created_at, NULL FROM devices, n WHERE device_id = 'phone-1';
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
            INSERT INTO challenges (challenge_id, tenant_id, request_id, user_id, number, ttl_seconds, context, choices,
                devices, created_at, expires_at, status)
            SELECT 'ch_' || printf('%022d', i), 'contoso', 'r' || i, 'user-' || i, 42, NULL, '{}', '17,42,88',
                'device-' || i, \(expires - 600_000), \(expires), 'pending' FROM n;
            """
        let filled = try runCommand(["sqlite3", data + "/approvald.sqlite3", insert], timeout: 120)
        #expect(filled.status == 0, "\(filled.stderr)")

        // Start again without waiting for readiness; learn the port from the log.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "approvald-recovery-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("approvald.toml").path
        try "data_directory = \"\(data)\"\n[[listeners]]\nhost = \"127.0.0.1\"\nport = 0\n\(brokerConfig)"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let log = directory.appendingPathComponent("log").path
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: approvaldBinary)
        process.arguments = ["serve", "--config", config]
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try process.run()
        defer {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
        var port = 0
        #expect(
            eventuallyBlocking(timeout: 30) {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                guard let range = text.range(of: "address=127.0.0.1:") else { return false }
                port = Int(text[range.upperBound...].prefix { $0.isNumber }) ?? 0
                return port > 0
            })
        func status(_ path: String) throws -> Int {
            let result = try runCommand(
                [
                    "curl", "-s", "-o", "/dev/null", "--http2-prior-knowledge", "--max-time", "10", "-w",
                    "%{http_code}",
                    "http://127.0.0.1:\(port)\(path)",
                ])
            return Int(result.stdout) ?? 0
        }
        #expect(try status("/healthz") == 200)
        #expect(try status("/readyz") == 503)
        #expect(try status("/v1/tenants/contoso/policy") == 503)
        #expect(eventuallyBlocking(timeout: 120) { (try? status("/readyz")) == 200 })
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("challenges=300000") && text.contains("pending=300000"))
        let metrics = try runCommand(["curl", "-s", "--http2-prior-knowledge", "http://127.0.0.1:\(port)/metrics"])
            .stdout
        #expect(metrics.contains("approvald_pending_challenges 300000"))
        #expect(metrics.contains("approvald_queue_depth 300000"))
    }
}
