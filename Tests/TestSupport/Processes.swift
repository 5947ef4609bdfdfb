// Running the real approvald binary and external tools (curl, nghttp, h2load), every wait bounded.
import Foundation
import Glibc

public struct CommandResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public let timedOut: Bool
}

/// The environment of a process a test starts: the test's own, with `extra` on top. Under `make sanitize` the
/// broker's sanitizer options differ from the test runner's (leaks are checked in the broker, not in test
/// fixtures): `APPROVALD_CHILD_ASAN_OPTIONS` becomes the child's `ASAN_OPTIONS`.
public func childEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
    var environment = ProcessInfo.processInfo.environment
    if let options = environment["APPROVALD_CHILD_ASAN_OPTIONS"] { environment["ASAN_OPTIONS"] = options }
    return environment.merging(extra) { $1 }
}

/// Whether the processes under test run under a sanitizer (`make sanitize`): their memory figures are then the
/// sanitizer's, not theirs.
public let processesAreSanitized = ProcessInfo.processInfo.environment["APPROVALD_SANITIZED"] == "1"

/// Runs `arguments` (the first is looked up on PATH), kills it after `timeout` seconds.
public func runCommand(
    _ arguments: [String], timeout: Double = 30, environment: [String: String]? = nil, input: Data? = nil
) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.environment = childEnvironment(environment ?? [:])
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-cmd-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    // Files, not pipes: a chatty child never blocks on a full pipe while we wait for it.
    let out = directory.appendingPathComponent("out"), err = directory.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    _ = FileManager.default.createFile(atPath: err.path, contents: nil)
    let outHandle = try FileHandle(forWritingTo: out), errHandle = try FileHandle(forWritingTo: err)
    process.standardOutput = outHandle
    process.standardError = errHandle
    let stdin = Pipe()
    process.standardInput = stdin
    // The parent's ends, closed here: Foundation keeps them open as long as it keeps the Process, and a test process
    // that ran a thousand commands held thousands of descriptors (Process.run crashed past about 1,350).
    defer {
        try? outHandle.close()
        try? errHandle.close()
        try? stdin.fileHandleForReading.close()
    }
    try process.run()
    if let input { stdin.fileHandleForWriting.write(input) }
    try? stdin.fileHandleForWriting.close()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    let timedOut = process.isRunning
    if timedOut {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
    return CommandResult(
        status: process.terminationStatus, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "", timedOut: timedOut)
}

/// The package root, found from this file's path.
public let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The approvald binary: $APPROVALD_BIN, or the debug build in this package.
public var approvaldBinary: String {
    ProcessInfo.processInfo.environment["APPROVALD_BIN"]
        ?? packageRoot.appendingPathComponent(".build/debug/approvald").path
}

public struct ApprovaldError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// The store the end-to-end suite runs against: the embedded one, or with APPROVALD_TEST_STORE=redis a Redis of
/// each broker's own, so that the contract is checked on both.
public let storeUnderTest = ProcessInfo.processInfo.environment["APPROVALD_TEST_STORE"] ?? "sqlite"
public let testsRunOnRedis = storeUnderTest == "redis"

/// How the tests' curl calls reach the plain listener.
public enum CleartextProtocol: String, CaseIterable, Sendable {
    /// h2c with prior knowledge.
    case h2c
    case http1 = "http/1.1"

    public var curlFlag: String { self == .h2c ? "--http2-prior-knowledge" : "--http1.1" }
}

/// Runs `process`, a server that writes the port it bound to `portFile` once it listens, and returns that port; a
/// server that has not written it within 10 s is killed, and `name` says which in the error.
public func startServer(_ process: Process, portFile: String, name: String) throws -> Int {
    try process.run()
    let deadline = Date().addingTimeInterval(10)
    while !FileManager.default.fileExists(atPath: portFile) && Date() < deadline { usleep(20_000) }
    guard let text = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(text) else {
        kill(process.processIdentifier, SIGKILL)
        throw ApprovaldError(description: "\(name) did not start")
    }
    return port
}

/// A running approvald with its own configuration and data in a temporary directory.
public final class ApprovaldProcess: @unchecked Sendable {
    /// What the curl helpers speak on the plain listener (`curl(_:_:)`, and the end-to-end tests' participants).
    public var cleartextProtocol = CleartextProtocol.h2c
    public let directory: URL
    /// The Redis it stores in, when the suite runs on Redis.
    public let redis: RedisServer?
    public let process = Process()
    public private(set) var h2cPort = 0
    public private(set) var tlsPort = 0
    public var certificatePath: String { directory.appendingPathComponent("cert.pem").path }
    public var logPath: String { directory.appendingPathComponent("approvald.log").path }

    /// Starts approvald with an h2c and a TLS listener on free ports, plus `extraConfig` TOML appended, and waits
    /// (bounded) for it to report ready. `shellPrefix` runs it through `sh -c` (for `ulimit`).
    /// - Parameter dataDirectory: where the store lives; pass the same one to a second process to test a restart.
    /// - Parameter redis: the Redis to store in (a new one of its own when the suite runs on Redis and none is given).
    /// - Parameter cleartextPort: the plain listener's port (0: a free one); a restart's, to be found where clients
    ///   left it.
    public init(
        extraConfig: String = "", environment: [String: String] = [:], shellPrefix: String? = nil,
        dataDirectory: String? = nil, redis: RedisServer? = nil, cleartextPort: Int = 0
    ) throws {
        self.redis = try redis ?? (testsRunOnRedis ? RedisServer() : nil)
        let store = self.redis.map { "[store]\nbackend = \"redis\"\n[store.redis]\nurl = \"\($0.url)\"\n" } ?? ""
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificate = try runCommand(
            [
                approvaldBinary, "dev-cert", "--certificate", certificatePath, "--private-key",
                directory.appendingPathComponent("key.pem").path,
            ])
        guard certificate.status == 0 else {
            throw ApprovaldError(description: "dev-cert failed: \(certificate.stderr)")
        }
        let config = """
            data_directory = "\(dataDirectory ?? directory.appendingPathComponent("data").path)"
            [log]
            level = "debug"
            [[listeners]]
            host = "127.0.0.1"
            port = \(cleartextPort)
            [[listeners]]
            host = "127.0.0.1"
            port = 0
            tls = true
            [tls]
            certificate = "\(certificatePath)"
            private_key = "\(directory.appendingPathComponent("key.pem").path)"
            \(store)
            \(extraConfig)
            """
        let configPath = directory.appendingPathComponent("approvald.toml").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let readyFile = directory.appendingPathComponent("ready.json").path
        let arguments = ["serve", "--config", configPath, "--ready-file", readyFile]
        if let shellPrefix {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "\(shellPrefix); exec \"$0\" \"$@\"", approvaldBinary] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: approvaldBinary)
            process.arguments = arguments
        }
        process.environment = childEnvironment(environment)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let logFile = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = logFile
        process.standardError = logFile
        try process.run()
        guard
            eventuallyBlocking(
                timeout: 30, { FileManager.default.fileExists(atPath: readyFile) || !process.isRunning }),
            process.isRunning
        else {
            throw ApprovaldError(description: "approvald did not become ready: \(log(tail: 20))")
        }
        struct Ready: Decodable {
            struct Listener: Decodable { let port: Int; let tls: Bool }
            let listeners: [Listener]
        }
        let ready = try JSONDecoder().decode(Ready.self, from: Data(contentsOf: URL(fileURLWithPath: readyFile)))
        h2cPort = ready.listeners.first { !$0.tls }?.port ?? 0
        tlsPort = ready.listeners.first { $0.tls }?.port ?? 0
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    public var h2cURL: String { "http://127.0.0.1:\(h2cPort)" }
    public var tlsURL: String { "https://localhost:\(tlsPort)" }

    /// Sends `signal` and waits (bounded) for the exit; nil if it did not exit in time.
    public func stop(signal: Int32 = SIGTERM, timeout: Double = 15) -> Int32? {
        kill(process.processIdentifier, signal)
        guard eventuallyBlocking(timeout: timeout, { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }

    /// The last lines the process logged.
    public func log(tail lines: Int) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// CPU seconds (user + system) the process has used so far, from /proc.
    public func cpuSeconds() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
            let end = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The process's resident set size in bytes, from /proc (0 once it has gone).
    public func residentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes * 1024
    }

    /// GET over the plain listener with curl; returns status and body.
    public func curl(_ path: String, _ extra: [String] = []) throws -> (status: Int, body: String) {
        let result = try runCommand(
            ["curl", "-sS", cleartextProtocol.curlFlag, "--max-time", "10", "-w", "\n%{http_code}"] + extra + [
                h2cURL + path
            ])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }
}
