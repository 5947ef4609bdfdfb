// A redis-server of the test's own: a free port on 127.0.0.1, a temporary directory, AOF with `appendfsync always`
// (acknowledged means durable, as in production), killed and restarted on the same files when a test says so.
import Foundation
import Glibc
import Locking

public final class RedisServer: Sendable {
    public let port: Int
    public let directory: String
    private let password: String?
    private let replicaOf: Int?
    private let process = Locked<Process?>(nil)

    /// Starts a server; a port taken between choosing and binding it is chosen again (three tries).
    public static func start(password: String? = nil) async throws -> RedisServer {
        try await offThePool { try RedisServer(password: password) }
    }

    /// Blocks while the server starts: from async code, use `start(password:)`.
    /// - Parameter primary: a server this one replicates (`--replicaof`).
    public init(password: String? = nil, replicating primary: RedisServer? = nil) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-redis-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.password = password
        replicaOf = primary?.port
        var chosen = 0
        for _ in 0..<3 {
            chosen = try freeLoopbackPort()
            if try Self.launch(
                port: chosen, directory: directory, password: password, replicaOf: replicaOf, into: process)
            {
                break
            }
            chosen = 0
        }
        guard chosen != 0 else {
            let log = (try? String(contentsOfFile: directory + "/redis.log", encoding: .utf8)) ?? ""
            throw TestFailure(description: "redis-server did not start: \(log)")
        }
        port = chosen
    }

    deinit {
        signal(SIGKILL, wait: true)
        try? FileManager.default.removeItem(atPath: directory)
    }

    public var url: String { "redis://\(password.map { ":\($0)@" } ?? "")127.0.0.1:\(port)" }

    public var log: String { (try? String(contentsOfFile: directory + "/redis.log", encoding: .utf8)) ?? "" }

    /// `kill -9`: what was not yet in the AOF is lost, as in a crash.
    public func kill() async throws { try await offThePool { self.stop() } }

    /// `kill()` for blocking tests.
    @available(*, noasync, message: "use kill()")
    public func stop() { signal(SIGKILL, wait: true) }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, as with a host that vanished.
    public func freeze() { signal(SIGSTOP, wait: false) }
    public func thaw() { signal(SIGCONT, wait: false) }

    /// Starts the server again on the same port and files.
    public func restart() async throws { try await offThePool { try self.restartBlocking() } }

    /// `restart()` for blocking tests.
    @available(*, noasync, message: "use restart()")
    public func restartBlocking() throws {
        guard try Self.launch(port: port, directory: directory, password: password, replicaOf: replicaOf, into: process)
        else {
            throw TestFailure(description: "redis-server did not restart: \(log)")
        }
    }

    /// Runs redis-cli against the server and returns its output, trimmed.
    public func cli(_ arguments: [String]) async throws -> String {
        let command = ["redis-cli", "-p", String(port)] + (password.map { ["-a", $0, "--no-auth-warning"] } ?? [])
        let result = try await offThePool { try runCommand(command + arguments, timeout: 10) }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func signal(_ signal: Int32, wait: Bool) {
        process.withLock { running in
            guard let process = running, process.isRunning else { return }
            Glibc.kill(process.processIdentifier, signal)
            if wait {
                process.waitUntilExit()
                running = nil
            }
        }
    }

    private static func launch(
        port: Int, directory: String, password: String?, replicaOf: Int?, into slot: Locked<Process?>
    ) throws -> Bool {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments =
            [
                "redis-server", "--port", String(port), "--bind", "127.0.0.1", "--dir", directory,
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
                "--logfile", directory + "/redis.log", "--enable-debug-command", "yes",
            ] + (password.map { ["--requirepass", $0] } ?? [])
            + (replicaOf.map { ["--replicaof", "127.0.0.1", String($0)] } ?? [])
        try server.run()
        slot.withLock { $0 = server }
        let ready = eventuallyBlocking(timeout: 10) {
            guard server.isRunning else { return true }
            let ping = try? runCommand(
                ["redis-cli", "-p", String(port)] + (password.map { ["-a", $0, "--no-auth-warning"] } ?? [])
                    + ["PING"], timeout: 5)
            return ping?.stdout.contains("PONG") == true
        }
        return ready && server.isRunning
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
public func freeLoopbackPort() throws -> Int {
    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socket >= 0 else { throw TestFailure(description: "socket() failed") }
    defer { close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            bind(socket, raw, length) == 0 && getsockname(socket, raw, &length) == 0
        }
    }
    guard bound else { throw TestFailure(description: "bind() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}
