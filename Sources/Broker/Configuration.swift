// approvald's configuration: the TOML file, then APPROVALD_… environment variables over it.
import Core
import Crypto
import Foundation
import HTTP
import Logging
import OIDC
import Redis
import RedisStore
import Service
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
    public var http2 = HTTPServerLimits()
    /// APNs provider credentials (token-based): wake-ups to iOS devices. Nil: not configured.
    public var apns: APNsSettings?

    /// FCM HTTP v1 credentials: a Google service account of the Firebase project. Nil: not configured.
    public var fcm: FCMSettings?
    /// Callbacks to the verifiers.
    public var forwardTimeoutSeconds = 10.0
    public var forwardMaxInFlightPerVerifier = 64
    public var forwardCAFile: String?
    public var shutdownGraceSeconds = 10.0
    /// How often an open device event stream gets a `: keepalive` comment.
    public var streamKeepaliveSeconds = 25.0
    public var logLevel = Logger.Level.info
    public var logFormat = LogFormat.text
    /// One log line per request answered (method, route, status, duration, tenant).
    public var accessLog = false
    public var dataDirectory = "data"
    /// `[store] backend = "redis"`: the Redis store's settings; nil for the embedded store (SQLite).
    public var redis: RedisStore.Settings?
    /// The domain's tables are sized for this many devices and pending challenges at start, so that they do not
    /// grow (a rehash pauses the loop for tens of milliseconds at a few hundred thousand entries) while load ramps up.
    public var expectedDevices = 100_000
    /// The base URL phones reach the broker at, which activation URIs carry (`public_url`); nil: the first
    /// listener's, as bound.
    public var publicURL: String?
    /// The IdPs allowed to call the webhook, by key id (two keys may name one client: rotation).
    public var idpClients: [IdPClient] = []
    /// Policies from the file, by tenant; a policy stored through the API wins over them.
    public var tenantPolicies: [String: TenantPolicy] = [:]
    /// `[tenants.T.ciba]`: the tenants that are Keycloak's CIBA authentication channel.
    public var cibaChannels: [String: CIBASettings] = [:]
    /// `[oidc]`: approvald as an OpenID provider; nil when not configured.
    public var oidc: OIDCSettings?

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
        try TOMLGuard.check(text, source: source)
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

    /// The bytes of a key file the configuration names: a regular file of at most 1 MiB, or nil (a device, a
    /// pipe or a huge file is never read, so a mistyped path fails at once instead of blocking start-up).
    static func smallFile(_ path: String) -> [UInt8]? {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size <= 1 << 20 else { return nil }
        return FileManager.default.contents(atPath: path).map { Array($0) }
    }

    /// A Google service-account key file (JSON): the project, the account, its RSA key and token endpoint.
    private static func serviceAccount(_ path: String, at keyPath: String) throws -> FCMSettings {
        guard let data = smallFile(path).map({ Data($0) }),
            let account = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw ConfigError("\(keyPath): \(path) is not a readable JSON service-account file") }
        guard let project = account["project_id"] as? String, let email = account["client_email"] as? String,
            let key = account["private_key"] as? String, (try? RSAPrivateKey(pem: key)) != nil
        else {
            throw ConfigError("\(keyPath): \(path) needs project_id, client_email and an RSA private_key")
        }
        return FCMSettings(
            projectID: project, clientEmail: email, privateKeyID: account["private_key_id"] as? String ?? "",
            privateKeyPEM: key, tokenURL: account["token_uri"] as? String ?? "https://oauth2.googleapis.com/token")
    }

    private mutating func read(_ root: ConfigReader) throws {
        dataDirectory = try root.string("data_directory") ?? dataDirectory
        expectedDevices = try root.int("expected_devices", in: 0...100_000_000) ?? expectedDevices
        if let url = try root.string("public_url") {
            guard let parsed = URLComponents(string: url), ["http", "https"].contains(parsed.scheme),
                parsed.host?.isEmpty == false, parsed.query == nil, parsed.fragment == nil, parsed.user == nil,
                url.utf8.count <= 512
            else {
                throw ConfigError("public_url: \"\(url)\" is not an http:// or https:// base URL of at most 512 bytes")
            }
            publicURL = url
        }

        try readStore(try root.table("store"))
        try readOIDC(try root.table("oidc"))

        let log = try root.table("log")
        if let level = try log.string("level") {
            guard let parsed = Logger.Level(rawValue: level) else {
                throw ConfigError(
                    "log.level: \"\(level)\" is not one of "
                        + Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))
            }
            logLevel = parsed
        }
        if let format = try log.string("format") {
            guard let parsed = LogFormat(rawValue: format) else {
                throw ConfigError(
                    "log.format: \"\(format)\" is not one of "
                        + LogFormat.allCases.map(\.rawValue).joined(separator: ", "))
            }
            logFormat = parsed
        }
        accessLog = try log.bool("access") ?? accessLog
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

        let forwarding = try root.table("forwarding")
        forwardTimeoutSeconds = try forwarding.seconds("timeout_seconds", in: 0.1...600) ?? forwardTimeoutSeconds
        forwardMaxInFlightPerVerifier =
            try forwarding.int("max_in_flight_per_verifier", in: 1...10_000) ?? forwardMaxInFlightPerVerifier
        forwardCAFile = try forwarding.string("ca_file")
        try forwarding.rejectUnknownKeys()

        let push = try root.table("push")
        let apnsSection = try push.table("apns")
        if let keyFile = try apnsSection.string("key_file") {
            guard let pem = Self.smallFile(keyFile).map({ String(decoding: $0, as: UTF8.self) }),
                (try? P256PrivateKey(pem: pem)) != nil
            else { throw ConfigError("\(apnsSection.keyPath("key_file")): \(keyFile) is not a readable P-256 .p8 key") }
            guard let keyID = try apnsSection.string("key_id"), let teamID = try apnsSection.string("team_id") else {
                throw ConfigError("push.apns: key_id and team_id are required with key_file")
            }
            var settings = APNsSettings(privateKeyPEM: pem, keyID: keyID, teamID: teamID)
            settings.endpoint = try apnsSection.string("endpoint") ?? settings.endpoint
            guard settings.endpoint.hasPrefix("https://") || settings.endpoint.hasPrefix("http://") else {
                throw ConfigError("\(apnsSection.keyPath("endpoint")): an http:// or https:// origin is required")
            }
            settings.caFile = try apnsSection.string("ca_file")
            settings.keyFile = keyFile
            apns = settings
        }
        try apnsSection.rejectUnknownKeys()
        let fcmSection = try push.table("fcm")
        if let accountFile = try fcmSection.string("service_account_file") {
            fcm = try Self.serviceAccount(accountFile, at: fcmSection.keyPath("service_account_file"))
            fcm?.endpoint = try fcmSection.string("endpoint") ?? "https://fcm.googleapis.com"
            if let tokenURL = try fcmSection.string("token_endpoint") { fcm?.tokenURL = tokenURL }
            fcm?.caFile = try fcmSection.string("ca_file")
            fcm?.serviceAccountFile = accountFile
            for url in [fcm?.endpoint, fcm?.tokenURL].compactMap({ $0 })
            where !(url.hasPrefix("https://") || url.hasPrefix("http://")) {
                throw ConfigError("push.fcm: \(url) is not an http:// or https:// URL")
            }
        }
        try fcmSection.rejectUnknownKeys()
        try push.rejectUnknownKeys()

        let section = try root.table("http2")
        if let value = try section.int("max_concurrent_streams", in: 1...10_000) {
            http2.maxConcurrentStreams = UInt32(value)
        }
        http2.prefaceTimeoutSeconds =
            try section.seconds("preface_timeout_seconds", in: 0.1...600) ?? http2.prefaceTimeoutSeconds
        http2.idleTimeoutSeconds =
            try section.seconds("idle_timeout_seconds", in: 0.1...86_400) ?? http2.idleTimeoutSeconds
        http2.requestTimeoutSeconds =
            try section.seconds("request_timeout_seconds", in: 0.1...600) ?? http2.requestTimeoutSeconds
        http2.sendTimeoutSeconds =
            try section.seconds("send_timeout_seconds", in: 0.1...3600) ?? http2.sendTimeoutSeconds
        http2.maxBufferedResponseBytes =
            try section.int("max_buffered_response_bytes", in: 16_384...64 << 20) ?? http2.maxBufferedResponseBytes
        http2.maxBufferedConnectionBytes =
            try section.int("max_buffered_connection_bytes", in: 16_384...1 << 30) ?? http2.maxBufferedConnectionBytes
        http2.maxBufferedBytesTotal =
            try section.int("max_buffered_bytes_total", in: 1 << 20...1 << 40) ?? http2.maxBufferedBytesTotal
        guard http2.maxBufferedResponseBytes <= http2.maxBufferedConnectionBytes,
            http2.maxBufferedConnectionBytes <= http2.maxBufferedBytesTotal
        else {
            throw ConfigError(
                "http2: max_buffered_response_bytes ≤ max_buffered_connection_bytes ≤ max_buffered_bytes_total "
                    + "must hold")
        }
        shutdownGraceSeconds = try section.seconds("shutdown_grace_seconds", in: 0...600) ?? shutdownGraceSeconds
        streamKeepaliveSeconds =
            try section.seconds("stream_keepalive_seconds", in: 0.1...3600) ?? streamKeepaliveSeconds
        try section.rejectUnknownKeys()

        for entry in try root.tables("idp_clients") ?? [] {
            idpClients.append(try Self.idpClient(entry))
        }
        var keyIDs = Set<String>()
        for client in idpClients where !keyIDs.insert(client.keyID).inserted {
            throw ConfigError("idp_clients: key_id \"\(client.keyID)\" appears twice")
        }
        let tenants = try root.table("tenants")
        for tenantID in tenants.keys {
            guard (try? Validate.tenantID(tenantID)) != nil else {
                throw ConfigError("tenants.\(tenantID): a tenant id is 1-64 of a-z, 0-9 and -")
            }
            let tenant = try tenants.table(tenantID)
            cibaChannels[tenantID] = try Self.cibaChannel(tenant)
            tenantPolicies[tenantID] = try Self.policy(tenant)
        }
        try tenants.rejectUnknownKeys()
        try root.rejectUnknownKeys()
        // A new callback is its committer's for longer than one attempt to send it may take.
        if let held = redis?.committerHoldSeconds {
            redis?.committerHoldSeconds = max(held, forwardTimeoutSeconds + 5)
        }
    }

    /// `[store]` and `[store.redis]`; the Redis keys are checked whichever backend is chosen.
    private mutating func readStore(_ store: ConfigReader) throws {
        let backend = try store.string("backend") ?? "sqlite"
        let section = try store.table("redis")
        let url = try section.string("url").map { text in
            do { return try RedisURL(parsing: text) } catch {
                throw ConfigError("\(section.keyPath("url")): \(error)")
            }
        }
        let instanceID = try section.string("instance_id") ?? Self.defaultInstanceID()
        guard !instanceID.isEmpty, instanceID.utf8.count <= 128,
            instanceID.unicodeScalars.allSatisfy({ $0.value > 32 && $0.value < 127 })
        else { throw ConfigError("\(section.keyPath("instance_id")): 1-128 printable characters, no spaces") }
        let waitReplicas = try section.int("wait_replicas", in: 0...64) ?? 0
        let timeout = Double(try section.int("command_timeout_ms", in: 10...60_000) ?? 1000) / 1000
        let allowUnsafe = try section.bool("allow_unsafe_persistence") ?? false
        try section.rejectUnknownKeys()
        try store.rejectUnknownKeys()
        switch backend {
        case "sqlite": redis = nil
        case "redis":
            guard let url else { throw ConfigError("\(section.keyPath("url")): required with backend = \"redis\"") }
            var settings = RedisStore.Settings(url: url, instanceID: instanceID)
            settings.waitReplicas = waitReplicas
            settings.commandTimeoutSeconds = timeout
            settings.allowUnsafePersistence = allowUnsafe
            redis = settings
        default:
            throw ConfigError("\(store.keyPath("backend")): \"\(backend)\" is not one of sqlite, redis")
        }
    }

    /// The host name and the process id: unique among instances on one Redis unless configured otherwise.
    static func defaultInstanceID() -> String {
        "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
    }

    private static func idpClient(_ entry: ConfigReader) throws -> IdPClient {
        guard let keyID = try entry.string("key_id"), !keyID.isEmpty else {
            throw ConfigError("\(entry.keyPath("key_id")): required")
        }
        guard let secret = try entry.string("secret") else { throw ConfigError("\(entry.keyPath("secret")): required") }
        guard secret.utf8.count >= 32 else {
            throw ConfigError("\(entry.keyPath("secret")): at least 32 bytes are required, got \(secret.utf8.count)")
        }
        let tenants = try entry.strings("tenants") ?? []
        guard !tenants.isEmpty else {
            throw ConfigError("\(entry.keyPath("tenants")): at least one tenant is required")
        }
        for tenant in tenants where (try? Validate.tenantID(tenant)) == nil {
            throw ConfigError("\(entry.keyPath("tenants")): \"\(tenant)\" is not a tenant id (1-64 of a-z, 0-9 and -)")
        }
        guard let verifier = try entry.string("verifier_url"),
            verifier.hasPrefix("http://") || verifier.hasPrefix("https://")
        else { throw ConfigError("\(entry.keyPath("verifier_url")): an http:// or https:// URL is required") }
        var verifierProtocol: ClientProtocol?
        switch try entry.string("verifier_protocol") {
        case nil: break
        case "h2c" where verifier.hasPrefix("http://"): verifierProtocol = .h2
        case "http/1.1" where verifier.hasPrefix("http://"): verifierProtocol = .http1
        case let other?:
            throw ConfigError(
                "\(entry.keyPath("verifier_protocol")): \"\(other)\" is not one of \"h2c\" or \"http/1.1\" for an "
                    + "http:// verifier_url (https negotiates by ALPN)")
        }
        try entry.rejectUnknownKeys()
        return IdPClient(
            keyID: keyID, secret: Array(secret.utf8), tenants: Set(tenants), verifierURL: verifier,
            verifierProtocol: verifierProtocol)
    }

    /// A tenant policy's integer keys, as read and as `effectiveTOML` writes them.
    static let policyIntegers: [(key: String, field: WritableKeyPath<TenantPolicy, Int> & Sendable)] = [
        ("max_devices_per_user", \.maxDevicesPerUser), ("challenge_ttl_seconds", \.challengeTTLSeconds),
        ("choices", \.choices), ("max_pending_per_user", \.maxPendingPerUser),
        ("max_challenges_per_window", \.maxChallengesPerWindow), ("window_seconds", \.windowSeconds),
        ("lockout_seconds", \.lockoutSeconds),
    ]

    private static func policy(_ table: ConfigReader) throws -> TenantPolicy {
        var policy = TenantPolicy()
        policy.passwordless = try table.bool("passwordless") ?? policy.passwordless
        if let target = try table.string("target") {
            guard let parsed = TenantPolicy.Target(rawValue: target) else {
                throw ConfigError("\(table.keyPath("target")): \"\(target)\" is not all or selected")
            }
            policy.target = parsed
        }
        policy.users = Set(try table.strings("users") ?? [])
        for (key, field) in policyIntegers {
            if let value = try table.int(key, in: Int.min...Int.max) { policy[keyPath: field] = value }
        }
        do {
            try policy.validate()
        } catch {
            throw ConfigError("\(table.path).\(error.detail)")
        }
        try table.rejectUnknownKeys()
        return policy
    }
}
