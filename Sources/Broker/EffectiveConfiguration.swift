// The configuration as it is in effect — the file, its defaults and the environment's overrides — written back as
// TOML with every secret masked: what `approvald serve --check-config` prints. Parsed again (with the secrets put
// back), it gives the same configuration.
import Core
import Foundation
import JSONText
import Service

extension Configuration {
    /// Stands for a secret, which is never printed.
    public static let maskedSecret = "(masked)"

    public var effectiveTOML: String {
        var toml = TOMLWriter()
        toml.key("data_directory", .string(dataDirectory))
        toml.key("expected_devices", .integer(expectedDevices))
        if let publicURL { toml.key("public_url", .string(publicURL)) }

        toml.table("store")
        toml.key("backend", .string(redis == nil ? "sqlite" : "redis"))
        if let redis {
            toml.table("store.redis")
            // RedisURL's description masks the password.
            toml.key("url", .string(redis.url.description))
            toml.key("instance_id", .string(redis.instanceID))
            toml.key("wait_replicas", .integer(redis.waitReplicas))
            toml.key("command_timeout_ms", .integer(Int((redis.commandTimeoutSeconds * 1000).rounded())))
            toml.key("allow_unsafe_persistence", .bool(redis.allowUnsafePersistence))
        }

        toml.table("log")
        toml.key("level", .string(logLevel.rawValue))
        toml.key("format", .string(logFormat.rawValue))
        toml.key("access", .bool(accessLog))

        for listener in listeners {
            toml.arrayTable("listeners")
            toml.key("host", .string(listener.host))
            toml.key("port", .integer(listener.port))
            toml.key("tls", .bool(listener.tls))
        }
        if tlsCertificatePath != nil || tlsPrivateKeyPath != nil {
            toml.table("tls")
            toml.key("certificate", tlsCertificatePath.map(TOMLWriter.Value.string))
            toml.key("private_key", tlsPrivateKeyPath.map(TOMLWriter.Value.string))
        }

        toml.table("http2")
        toml.key("max_concurrent_streams", .integer(Int(http2.maxConcurrentStreams)))
        toml.key("preface_timeout_seconds", .seconds(http2.prefaceTimeoutSeconds))
        toml.key("idle_timeout_seconds", .seconds(http2.idleTimeoutSeconds))
        toml.key("max_buffered_response_bytes", .integer(http2.maxBufferedResponseBytes))
        toml.key("max_buffered_connection_bytes", .integer(http2.maxBufferedConnectionBytes))
        toml.key("max_buffered_bytes_total", .integer(http2.maxBufferedBytesTotal))
        toml.key("request_timeout_seconds", .seconds(http2.requestTimeoutSeconds))
        toml.key("stream_keepalive_seconds", .seconds(streamKeepaliveSeconds))
        toml.key("shutdown_grace_seconds", .seconds(shutdownGraceSeconds))

        toml.table("forwarding")
        toml.key("timeout_seconds", .seconds(forwardTimeoutSeconds))
        toml.key("max_in_flight_per_verifier", .integer(forwardMaxInFlightPerVerifier))
        toml.key("ca_file", forwardCAFile.map(TOMLWriter.Value.string))

        if let apns {
            toml.table("push.apns")
            toml.key("key_file", apns.keyFile.map(TOMLWriter.Value.string))
            toml.key("key_id", .string(apns.keyID))
            toml.key("team_id", .string(apns.teamID))
            toml.key("endpoint", .string(apns.endpoint))
            toml.key("ca_file", apns.caFile.map(TOMLWriter.Value.string))
        }
        if let fcm {
            toml.table("push.fcm")
            toml.key("service_account_file", fcm.serviceAccountFile.map(TOMLWriter.Value.string))
            toml.key("endpoint", .string(fcm.endpoint))
            toml.key("token_endpoint", .string(fcm.tokenURL))
            toml.key("ca_file", fcm.caFile.map(TOMLWriter.Value.string))
        }

        for client in idpClients {
            toml.arrayTable("idp_clients")
            toml.key("key_id", .string(client.keyID))
            toml.key("secret", .string(Self.maskedSecret))
            toml.key("tenants", .strings(client.tenants.sorted()))
            toml.key("verifier_url", .string(client.verifierURL))
        }

        for (tenantID, policy) in tenantPolicies.sorted(by: { $0.key < $1.key }) {
            toml.table("tenants.\(tenantID)")
            toml.key("passwordless", .bool(policy.passwordless))
            toml.key("target", .string(policy.target.rawValue))
            toml.key("users", .strings(policy.users.sorted()))
            for (key, field) in Self.policyIntegers { toml.key(key, .integer(policy[keyPath: field])) }
            writeCIBA(of: tenantID, into: &toml)
        }
        writeOIDC(into: &toml)
        return toml.text
    }
}

/// Writes a TOML document key by key: root keys first, then tables in the order given.
struct TOMLWriter {
    enum Value {
        case string(String)
        case integer(Int)
        case seconds(Double)
        case bool(Bool)
        case strings([String])

        var text: String {
            switch self {
            case .string(let value): Self.quoted(value)
            case .integer(let value): String(value)
            // Whole seconds as an integer (as the example file writes them), others as a decimal.
            case .seconds(let value): value == value.rounded() ? String(Int(value)) : String(value)
            case .bool(let value): String(value)
            case .strings(let values): "[" + values.map(Self.quoted).joined(separator: ", ") + "]"
            }
        }

        /// A TOML basic string. Its escapes are JSON's (quotes, backslashes, control characters), and it must escape
        /// DEL too, which JSON leaves as it is.
        static func quoted(_ value: String) -> String {
            jsonString(value).replacingOccurrences(of: "\u{7F}", with: "\\u007F")
        }
    }

    private(set) var text = ""

    /// `key = value`; nothing for nil (an unset optional key).
    mutating func key(_ name: String, _ value: Value?) {
        guard let value else { return }
        text += "\(name) = \(value.text)\n"
    }

    mutating func table(_ name: String) { text += "\n[\(name)]\n" }

    mutating func arrayTable(_ name: String) { text += "\n[[\(name)]]\n" }
}
