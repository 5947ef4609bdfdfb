// Starting and stopping the real binary: signals drain gracefully, bad configuration stops start-up with a
// message that names the key, environment variables override the file.
import Foundation
import Glibc
import TestSupport
import Testing

@Suite struct SignalTests {
    @Test(arguments: [SIGTERM, SIGINT])
    func aSignalSendsGOAWAYAndExitsZero(signal: Int32) throws {
        let broker = try ApprovaldProcess()
        let open = try RawHTTP2Connection(port: broker.h2cPort)
        try open.sendPreface()
        _ = try open.readFrame { $0.type == Frame.settings }
        #expect(broker.stop(signal: signal) == 0)
        let goaway = try open.readFrame(timeout: 5) { $0.type == Frame.goaway }
        #expect(goaway?.errorCode == 0)
        #expect(broker.log(tail: 5).contains("stopped"))
    }

    /// A request in flight when the signal comes is answered before the process exits.
    @Test func requestsInFlightAreAnsweredBeforeExit() throws {
        let broker = try ApprovaldProcess()
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface()
        try openStream(raw, 1, path: "/nope")  // its body is still to come
        usleep(200_000)
        kill(broker.process.processIdentifier, SIGTERM)
        usleep(200_000)
        #expect(broker.process.isRunning)  // waiting for the open stream
        try raw.sendFrame(type: Frame.data, flags: Frame.endStream, stream: 1, payload: Array("{}".utf8))
        #expect(try raw.readStatus(stream: 1) == 404)
        #expect(eventuallyBlocking(timeout: 10) { !broker.process.isRunning })
        #expect(broker.process.terminationStatus == 0)
    }

    @Test func theGraceTimeIsBounded() throws {
        let broker = try ApprovaldProcess(extraConfig: "[http2]\nshutdown_grace_seconds = 1")
        let raw = try RawHTTP2Connection(port: broker.h2cPort)
        try raw.sendPreface()
        try openStream(raw, 1)  // never finished
        usleep(200_000)
        let started = Date()
        #expect(broker.stop(signal: SIGTERM, timeout: 10) == 0)
        #expect(Date().timeIntervalSince(started) < 5)
    }
}

@Suite struct ConfigurationTests {
    func start(config: String, environment: [String: String] = [:]) throws -> CommandResult {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "approvald-bad-\(UUID().uuidString).toml")
        try config.write(to: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: path) }
        return try runCommand([approvaldBinary, "serve", "--config", path.path], timeout: 20, environment: environment)
    }

    @Test(arguments: [
        ("[http2]\nidle_timeout_seconds = \"soon\"", "http2.idle_timeout_seconds: expected a number of seconds"),
        ("[http2]\nmax_concurrent_streams = 0", "http2.max_concurrent_streams: 0 is outside 1...10000"),
        ("[http2]\nidle_timeuot_seconds = 5", "http2.idle_timeuot_seconds: unknown key"),
        ("[[listeners]]\nport = 99999", "listeners[0].port: 99999 is outside 0...65535"),
        ("[[listeners]]\nport = 0\ntls = true", "a TLS listener needs tls.certificate and tls.private_key"),
        ("[log]\nlevel = \"loud\"", "log.level: \"loud\" is not one of"),
        ("[http2\n", "config"),
    ])
    func badConfigurationStopsStartUpNamingTheKey(config: String, message: String) throws {
        let result = try start(config: config)
        #expect(result.status == 78, "\(result.stderr)")
        #expect(result.stderr.contains("configuration error"))
        #expect(result.stderr.contains(message), "\(result.stderr)")
    }

    @Test func aMissingFileIsNamed() throws {
        let result = try runCommand([approvaldBinary, "serve", "--config", "/nonexistent/approvald.toml"])
        #expect(result.status == 78)
        #expect(result.stderr.contains("/nonexistent/approvald.toml"))
    }

    @Test func environmentVariablesOverrideTheFile() throws {
        let broken = try start(
            config: "[[listeners]]\nport = 0\n", environment: ["APPROVALD_HTTP2_IDLE_TIMEOUT_SECONDS": "abc"])
        #expect(broken.status == 78)
        #expect(broken.stderr.contains("APPROVALD_HTTP2_IDLE_TIMEOUT_SECONDS"))
        // A working override: the idle timeout from the environment closes an idle connection in about a second.
        let broker = try ApprovaldProcess(environment: ["APPROVALD_HTTP2_IDLE_TIMEOUT_SECONDS": "1"])
        let idle = try RawHTTP2Connection(port: broker.h2cPort)
        try idle.sendPreface()
        #expect(try idle.readFrame(timeout: 5) { $0.type == Frame.goaway } != nil)
    }

    @Test func aPortInUseIsReported() throws {
        let first = try ApprovaldProcess()
        let result = try start(config: "[[listeners]]\nhost = \"127.0.0.1\"\nport = \(first.h2cPort)\n")
        #expect(result.status != 0)
        #expect(result.stderr.contains("cannot listen on 127.0.0.1:\(first.h2cPort)"))
    }

    /// `serve --check-config` reads, checks and prints; it never listens or opens a store.
    @Test func checkConfigPrintsTheEffectiveConfigurationOrExits78() throws {
        for name in ["Config/approvald.toml", "Config/approvald.example.toml", "docker/approvald.toml"] {
            let path = packageRoot.appendingPathComponent(name).path
            let result = try runCommand(
                [approvaldBinary, "serve", "--check-config", "--config", path], timeout: 20,
                environment: ["APPROVALD_HTTP2_IDLE_TIMEOUT_SECONDS": "42"])
            #expect(result.status == 0, "\(name): \(result.stderr)")
            #expect(result.stdout.hasPrefix("# approvald ") && result.stdout.contains("idle_timeout_seconds = 42\n"))
            let secrets = result.stdout.components(separatedBy: "\nsecret = ").count - 1
            #expect(
                secrets > 0 && secrets == result.stdout.components(separatedBy: "\nsecret = \"(masked)\"\n").count - 1)
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-check-\(UUID()).toml")
        try "[log]\nformat = \"yaml\"\n".write(to: directory, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: directory) }
        let refused = try runCommand([approvaldBinary, "serve", "--check-config", "--config", directory.path])
        #expect(refused.status == 78 && refused.stdout.isEmpty)
        #expect(refused.stderr.contains("log.format: \"yaml\" is not one of text, json"))
    }

    @Test func theShippedConfigurationsParse() throws {
        for name in ["Config/approvald.toml", "Config/approvald.example.toml", "docker/approvald.toml"] {
            let path = packageRoot.appendingPathComponent(name).path
            // Port 0 everywhere, so the check never collides with a running broker; TLS files from dev-cert.
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "approvald-cfg-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let cert = directory.appendingPathComponent("cert.pem").path,
                key = directory.appendingPathComponent("key.pem").path
            #expect(
                try runCommand([approvaldBinary, "dev-cert", "--certificate", cert, "--private-key", key]).status == 0)
            let ready = directory.appendingPathComponent("ready.json").path
            let process = Process()
            process.executableURL = URL(fileURLWithPath: approvaldBinary)
            process.arguments = ["serve", "--config", path, "--ready-file", ready]
            process.environment = childEnvironment([
                "APPROVALD_LISTENERS_0_PORT": "0", "APPROVALD_LISTENERS_1_PORT": "0",
                "APPROVALD_TLS_CERTIFICATE": cert, "APPROVALD_TLS_PRIVATE_KEY": key,
                "APPROVALD_DATA_DIRECTORY": directory.appendingPathComponent("data").path,
            ])
            process.standardError = FileHandle.nullDevice
            try process.run()
            #expect(eventuallyBlocking(timeout: 20) { FileManager.default.fileExists(atPath: ready) }, "\(name)")
            kill(process.processIdentifier, SIGTERM)
            #expect(eventuallyBlocking(timeout: 15) { !process.isRunning })
            #expect(process.terminationStatus == 0, "\(name)")
        }
    }
}

@Suite struct AccessLogTests {
    /// In the text format too, a request's line names the route's template and the tenant, never the raw path.
    @Test func anAccessLineNamesTheRouteTemplateNotThePath() throws {
        let broker = try ApprovaldProcess(environment: ["APPROVALD_LOG_ACCESS": "true"])
        #expect(try broker.curl("/v1/tenants/contoso/users/bob%40example.com/devices").status == 401)
        #expect(try broker.curl("/nothing/here?user=bob@example.com").status == 404)
        #expect(
            eventuallyBlocking {
                let log = broker.log(tail: 50)
                return log.contains(
                    "method=GET route=/v1/tenants/{tenant}/users/{user_id}/devices status=401 tenant=contoso "
                        + "[Service] request")
                    && log.contains("method=GET route=unmatched status=404 [Service] request")
            })
        #expect(!broker.log(tail: 50).contains("example.com"))
    }
}

@Suite struct VersionTests {
    /// `--version` and `approvald_build_info` name the same build: the version and commit the Makefile baked in
    /// (Sources/CBuildInfo/generated/build_info.h, when the binary was built by make).
    @Test func theVersionOnTheCommandLineIsTheOneOnMetrics() throws {
        let result = try runCommand([approvaldBinary, "--version"], timeout: 10)
        #expect(result.status == 0)
        let line = result.stdout.trimmingCharacters(in: .newlines)
        let match = try #require(line.wholeMatch(of: /approvald (\S+) \(([0-9a-z.-]+)\)/))
        let (version, commit) = (String(match.1), String(match.2))
        let header = packageRoot.appendingPathComponent("Sources/CBuildInfo/generated/build_info.h").path
        if let baked = try? String(contentsOfFile: header, encoding: .utf8) {
            #expect(
                baked.contains("APPROVALD_VERSION \"\(version)\"") && baked.contains("APPROVALD_COMMIT \"\(commit)\""))
        }
        let broker = try ApprovaldProcess()
        let metrics = try broker.curl("/metrics").body
        #expect(metrics.contains("# TYPE approvald_build_info gauge\n"))
        #expect(metrics.contains("approvald_build_info{version=\"\(version)\",commit=\"\(commit)\"} 1\n"))
    }
}

@Suite struct DevCertTests {
    @Test func writesAPairThatCurlTrustsAndRefusesToOverwrite() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "approvald-devcert-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let cert = directory.appendingPathComponent("tls/cert.pem").path,
            key = directory.appendingPathComponent("tls/key.pem").path
        let first = try runCommand([approvaldBinary, "dev-cert", "--certificate", cert, "--private-key", key])
        #expect(first.status == 0)
        let attributes = try FileManager.default.attributesOfItem(atPath: key)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let again = try runCommand([approvaldBinary, "dev-cert", "--certificate", cert, "--private-key", key])
        #expect(again.status != 0)
        #expect(again.stderr.contains("--force"))
        let text = try runCommand(["openssl", "x509", "-in", cert, "-noout", "-text"]).stdout
        #expect(text.contains("DNS:localhost"))
        #expect(text.contains("IP Address:127.0.0.1"))
        #expect(text.contains("ASN1 OID: prime256v1"))
    }
}
