// approvald's configuration: the TOML file, then APPROVALD_… environment variables over it.
import Foundation
import H2
import Logging
import TOMLKit

public struct Configuration: Sendable {
    public struct Listener: Sendable, Equatable {
        public var host: String
        public var port: Int
        public var tls: Bool

        public init(host: String, port: Int, tls: Bool) {
            self.host = host
            self.port = port
            self.tls = tls
        }
    }

    public var listeners: [Listener] = [Listener(host: "127.0.0.1", port: 8080, tls: false)]
    /// PEM certificate chain and key for TLS listeners.
    public var tlsCertificatePath: String?
    public var tlsPrivateKeyPath: String?
    public var http2 = H2ServerLimits()
    public var shutdownGraceSeconds = 10.0
    public var logLevel = Logger.Level.info
    public var dataDirectory = "data"

    public init() {}

    /// Reads `path`; every environment variable `APPROVALD_<SECTION>_<KEY>` overrides its key.
    public static func load(
        path: String, environment: [String: String] = ProcessInfo.processInfo.environment
    )
        throws -> Configuration
    {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError("\(path): cannot read the file (\(error.localizedDescription))")
        }
        return try parse(text, source: path, environment: environment)
    }

    public static func parse(
        _ text: String, source: String = "config", environment: [String: String] = [:]
    ) throws
        -> Configuration
    {
        let document: TOMLTable
        do {
            document = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError("\(source): \(error.description) (\(error.source.begin.debugDescription))")
        }
        var config = Configuration()
        let root = ConfigReader(table: document, path: "", environment: environment)
        do {
            try config.read(root)
        } catch let error as ConfigError {
            throw ConfigError("\(source): \(error.description)")
        }
        return config
    }

    private mutating func read(_ root: ConfigReader) throws {
        dataDirectory = try root.string("data_directory") ?? dataDirectory

        let log = try root.table("log")
        if let level = try log.string("level") {
            guard let parsed = Logger.Level(rawValue: level) else {
                throw ConfigError(
                    "log.level: \"\(level)\" is not one of "
                        + Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))
            }
            logLevel = parsed
        }
        try log.rejectUnknownKeys()

        if let entries = try root.tables("listeners") {
            guard !entries.isEmpty else { throw ConfigError("listeners: at least one listener is needed") }
            listeners = try entries.map { entry in
                let listener = Listener(
                    host: try entry.string("host") ?? "127.0.0.1", port: try entry.int("port", in: 0...65535) ?? 8080,
                    tls: try entry.bool("tls") ?? false)
                try entry.rejectUnknownKeys()
                return listener
            }
        }

        let tls = try root.table("tls")
        tlsCertificatePath = try tls.string("certificate")
        tlsPrivateKeyPath = try tls.string("private_key")
        try tls.rejectUnknownKeys()
        if listeners.contains(where: \.tls) && (tlsCertificatePath == nil || tlsPrivateKeyPath == nil) {
            throw ConfigError("tls: a TLS listener needs tls.certificate and tls.private_key")
        }

        let section = try root.table("http2")
        if let value = try section.int("max_concurrent_streams", in: 1...10_000) {
            http2.maxConcurrentStreams = UInt32(value)
        }
        http2.prefaceTimeoutSeconds =
            try section.seconds("preface_timeout_seconds", in: 0.1...600) ?? http2.prefaceTimeoutSeconds
        http2.idleTimeoutSeconds =
            try section.seconds("idle_timeout_seconds", in: 0.1...86_400) ?? http2.idleTimeoutSeconds
        http2.maxBufferedResponseBytes =
            try section.int("max_buffered_response_bytes", in: 16_384...64 << 20) ?? http2.maxBufferedResponseBytes
        shutdownGraceSeconds = try section.seconds("shutdown_grace_seconds", in: 0...600) ?? shutdownGraceSeconds
        try section.rejectUnknownKeys()
        try root.rejectUnknownKeys()
    }
}
