// Configuration parsing: defaults, every section, environment overrides, and errors that name the key.
import Crypto
import Foundation
import HTTP
import Service
import TestSupport
import Testing

@testable import Broker

@Suite struct ConfigurationParsingTests {
    @Test func anEmptyFileGivesTheDefaults() throws {
        let config = try Configuration.parse("")
        #expect(config.listeners == [Configuration.Listener(host: "127.0.0.1", port: 8080, tls: false)])
        #expect(config.http2.maxConcurrentStreams == 128)
        #expect(config.http2.maxRequestBodyBytes == 16 * 1024)
        #expect(config.http2.prefaceTimeoutSeconds == 10)
        #expect(config.shutdownGraceSeconds == 10)
        #expect(config.logLevel == .info)
        #expect(config.dataDirectory == "data")
        #expect(config.expectedDevices == 100_000)
    }

    @Test func readsEverySection() throws {
        let config = try Configuration.parse(
            """
            data_directory = "/var/lib/approvald"
            expected_devices = 2500000
            [log]
            level = "debug"
            [[listeners]]
            host = "::1"
            port = 9000
            [[listeners]]
            host = "0.0.0.0"
            port = 9443
            tls = true
            [tls]
            certificate = "c.pem"
            private_key = "k.pem"
            [http2]
            max_concurrent_streams = 64
            preface_timeout_seconds = 2.5
            idle_timeout_seconds = 30
            max_buffered_response_bytes = 65536
            max_buffered_connection_bytes = 131072
            max_buffered_bytes_total = 8388608
            request_timeout_seconds = 4.5
            shutdown_grace_seconds = 3
            """)
        #expect(config.dataDirectory == "/var/lib/approvald")
        #expect(config.expectedDevices == 2_500_000)
        #expect(config.logLevel == .debug)
        #expect(config.listeners.map(\.port) == [9000, 9443])
        #expect(config.listeners.map(\.tls) == [false, true])
        #expect(config.tlsCertificatePath == "c.pem" && config.tlsPrivateKeyPath == "k.pem")
        #expect(config.http2.maxConcurrentStreams == 64)
        #expect(config.http2.prefaceTimeoutSeconds == 2.5)
        #expect(config.http2.idleTimeoutSeconds == 30)
        #expect(config.http2.maxBufferedResponseBytes == 65536)
        #expect(config.http2.maxBufferedConnectionBytes == 131_072)
        #expect(config.http2.maxBufferedBytesTotal == 8_388_608)
        #expect(config.http2.requestTimeoutSeconds == 4.5)
        #expect(config.shutdownGraceSeconds == 3)
    }

    @Test func environmentOverridesWinEvenForAbsentSections() throws {
        let config = try Configuration.parse(
            "[[listeners]]\nport = 1\n",
            environment: [
                "APPROVALD_LISTENERS_0_PORT": "2", "APPROVALD_HTTP2_IDLE_TIMEOUT_SECONDS": "7.5",
                "APPROVALD_LOG_LEVEL": "error", "APPROVALD_DATA_DIRECTORY": "/tmp/x",
            ])
        #expect(config.listeners[0].port == 2)
        #expect(config.http2.idleTimeoutSeconds == 7.5)
        #expect(config.logLevel == .error)
        #expect(config.dataDirectory == "/tmp/x")
    }

    @Test(arguments: ["Config/approvald.toml", "Config/approvald.example.toml", "docker/approvald.toml"])
    func everyShippedConfigurationIsAccepted(path: String) throws {
        let text = try String(contentsOf: packageRoot.appendingPathComponent(path), encoding: .utf8)
        let config = try Configuration.parse(text, source: path)
        #expect(!config.listeners.isEmpty && !config.idpClients.isEmpty)
        #expect(config.redis == nil)
    }

    @Test func theStoreIsSQLiteUnlessRedisIsNamedWithItsSettingsAndOverrides() throws {
        #expect(try Configuration.parse("").redis == nil)
        let text = """
            [store]
            backend = "redis"
            [store.redis]
            url = "redis://:pw@10.0.0.5:6380/2"
            instance_id = "east-1"
            wait_replicas = 1
            command_timeout_ms = 250
            """
        let redis = try #require(try Configuration.parse(text).redis)
        #expect(redis.url.host == "10.0.0.5" && redis.url.port == 6380 && redis.url.database == 2)
        #expect(redis.instanceID == "east-1" && redis.waitReplicas == 1 && redis.commandTimeoutSeconds == 0.25)
        // A new callback is left to the instance that ended its challenge for longer than one attempt may take.
        #expect(redis.committerHoldSeconds == 15)
        let slowVerifier = try #require(try Configuration.parse(text + "\n[forwarding]\ntimeout_seconds = 30").redis)
        #expect(slowVerifier.committerHoldSeconds == 35)
        #expect(!redis.allowUnsafePersistence)
        let overridden = try #require(
            try Configuration.parse(
                "",
                environment: [
                    "APPROVALD_STORE_BACKEND": "redis", "APPROVALD_STORE_REDIS_URL": "redis://127.0.0.1",
                    "APPROVALD_STORE_REDIS_ALLOW_UNSAFE_PERSISTENCE": "true",
                ]
            ).redis)
        #expect(overridden.url.port == 6379 && overridden.allowUnsafePersistence)
        #expect(overridden.instanceID == Configuration.defaultInstanceID())
    }

    @Test(arguments: [
        ("port = 1", "port: unknown key"),
        ("[store]\nbackend = \"mongo\"", "store.backend: \"mongo\" is not one of sqlite, redis"),
        ("[store]\nbackend = \"redis\"", "store.redis.url: required with backend = \"redis\""),
        ("[store]\nbackend = \"redis\"\n[store.redis]\nurl = \"http://x\"", "store.redis.url:"),
        (
            "[store]\nbackend = \"redis\"\n[store.redis]\nurl = \"redis://x\"\ncommand_timeout_ms = 5",
            "store.redis.command_timeout_ms: 5 is outside 10...60000"
        ),
        ("[store.redis]\nport = 1", "store.redis.port: unknown key"),
        ("[http2]\nshutdown_grace_seconds = -1", "http2.shutdown_grace_seconds: -1.0 is outside 0.0...600.0"),
        ("[http2]\nmax_concurrent_streams = 1.5", "http2.max_concurrent_streams: expected an integer"),
        ("[http2]\nrequest_timeout_seconds = 0", "http2.request_timeout_seconds: 0.0 is outside 0.1...600.0"),
        // The TOML parser would abort the process on these (found by fuzzing).
        ("[ü]", "line 1: a table name must start with a letter, digit, _, - or a quote"),
        ("port = 1\n  [[ \u{FFFD}listeners]]", "line 2: a table name must start with a letter, digit, _, - or a quote"),
        ("[log]\n[*[listeners]]", "line 2: a table name must start with a letter, digit, _, - or a quote"),
        ("[[[listeners]]", "line 1: a table name must start with a letter, digit, _, - or a quote"),
        ("[\u{05A4}e]x\n", "line 1: a table name must start with a letter, digit, _, - or a quote"),
        ("[\nport = 1", "line 1: a table name must start with a letter, digit, _, - or a quote"),
        ("x = [}]", "line 1: expected a value or ']', saw '}'"),
        ("# a comment ]\nx = [\n  1, # a value\n  } ]", "line 4: expected a value or ']', saw '}'"),
        ("x = { a = [ } ] }", "line 1: expected a value or ']', saw '}'"),
        ("x = [\u{2028}]", "line 1: a Unicode line separator (U+2028) is not allowed"),
        ("x = \"\"\"\na\n\"\"\"\ny = [1,\u{85}]", "line 4: a Unicode line separator (U+85) is not allowed"),
        ("[]", "tables with blank bare keys are explicitly prohibited"),
        (
            "[http2]\nmax_buffered_connection_bytes = 65536",
            "http2: max_buffered_response_bytes ≤ max_buffered_connection_bytes ≤ max_buffered_bytes_total must hold"
        ),
        ("listeners = 3", "listeners: expected an array of tables"),
        ("[[listeners]]\ntls = \"yes\"", "listeners[0].tls: expected true or false"),
        ("[[listeners]]\nport = 1\ncolour = 2", "listeners[0].colour: unknown key"),
        ("log = 1", "log: expected a table"),
        ("listeners = []", "listeners: at least one listener is needed"),
        ("expected_devices = -1", "expected_devices: -1 is outside 0...100000000"),
        ("public_url = \"ftp://approve.example\"", "public_url: \"ftp://approve.example\" is not an http://"),
        ("public_url = \"https://approve.example/?tenant=x\"", "public_url:"),
        ("public_url = \"https://user@approve.example\"", "public_url:"),
        ("public_url = \"https:///path\"", "public_url:"),
        ("public_url = \"https://approve.example/\(String(repeating: "a", count: 500))\"", "of at most 512 bytes"),
    ])
    func errorsNameTheKey(text: String, message: String) {
        #expect {
            try Configuration.parse(text, source: "test.toml")
        } throws: { error in
            "\(error)".hasPrefix("test.toml: ") && "\(error)".contains(message)
        }
    }

    @Test func aBadEnvironmentValueNamesTheVariable() {
        #expect {
            try Configuration.parse("", environment: ["APPROVALD_HTTP2_MAX_CONCURRENT_STREAMS": "many"])
        } throws: { error in
            "\(error)".contains(
                "APPROVALD_HTTP2_MAX_CONCURRENT_STREAMS (for http2.max_concurrent_streams): expected an integer")
        }
    }

    @Test func aSyntaxErrorSaysWhere() {
        #expect {
            try Configuration.parse("a = \n", source: "broken.toml")
        } throws: { error in
            "\(error)".hasPrefix("broken.toml: ") && "\(error)".contains("line 1")
        }
    }
}

@Suite struct IdPClientAndTenantConfigurationTests {
    static let client = """
        [[idp_clients]]
        key_id = "contoso-1"
        secret = "at least thirty-two bytes of secret, for tests"
        tenants = ["contoso", "fabrikam"]
        verifier_url = "https://idp.example/results"
        """

    @Test func readsForwardingAndAPNsSettings() throws {
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("AuthKey-\(UUID()).p8").path
        defer { try? FileManager.default.removeItem(atPath: keyFile) }
        try P256PrivateKey().pem.write(toFile: keyFile, atomically: true, encoding: .utf8)
        let config = try Configuration.parse(
            """
            [forwarding]
            timeout_seconds = 2.5
            max_in_flight_per_verifier = 16
            [push.apns]
            key_file = "\(keyFile)"
            key_id = "ABC123DEFG"
            team_id = "TEAM123456"
            endpoint = "https://api.sandbox.push.apple.com"
            """)
        #expect(config.forwardTimeoutSeconds == 2.5 && config.forwardMaxInFlightPerVerifier == 16)
        let apns = try #require(config.apns)
        #expect(apns.keyID == "ABC123DEFG" && apns.teamID == "TEAM123456")
        #expect(apns.endpoint == "https://api.sandbox.push.apple.com" && apns.privateKeyPEM.contains("PRIVATE KEY"))
        #expect(try Configuration.parse("").apns == nil)
        for (text, message) in [
            ("[push.apns]\nkey_file = \"/nonexistent.p8\"", "push.apns.key_file: /nonexistent.p8 is not a readable"),
            ("[push.apns]\nkey_file = \"\(keyFile)\"", "push.apns: key_id and team_id are required"),
            ("[push.fcm]\nx = 1", "push.fcm.x: unknown key"),
            ("[push.fcm]\nservice_account_file = \"/nonexistent.json\"", "is not a readable JSON service-account"),
            // A device is never read (/dev/zero would never end), nor a directory.
            ("[push.apns]\nkey_file = \"/dev/zero\"", "push.apns.key_file: /dev/zero is not a readable"),
            ("[push.fcm]\nservice_account_file = \"/tmp\"", "/tmp is not a readable JSON service-account"),
            ("[forwarding]\nmax_in_flight_per_verifier = 0", "forwarding.max_in_flight_per_verifier"),
        ] {
            #expect {
                try Configuration.parse(text, source: "test.toml")
            } throws: { error in
                "\(error)".contains(message)
            }
        }
    }

    @Test func theEffectiveConfigurationReadsBackAsTheSameWithEverySecretMasked() throws {
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("AuthKey-\(UUID()).p8").path
        defer { try? FileManager.default.removeItem(atPath: keyFile) }
        try P256PrivateKey().pem.write(toFile: keyFile, atomically: true, encoding: .utf8)
        let secret = #"a "quoted" \ secret that is at least 32 bytes long"#
        let config = try Configuration.parse(
            """
            data_directory = "/var/lib/approvald"
            [store]
            backend = "redis"
            [store.redis]
            url = "redis://:hunter2-redis-password@redis.internal:6380/2"
            instance_id = "approvald-7"
            command_timeout_ms = 250
            [log]
            format = "json"
            access = true
            level = "warning"
            [[listeners]]
            host = "0.0.0.0"
            port = 9443
            tls = true
            [tls]
            certificate = "c.pem"
            private_key = "k.pem"
            [http2]
            preface_timeout_seconds = 2.5
            [forwarding]
            ca_file = "/etc/ca.pem"
            [push.apns]
            key_file = "\(keyFile)"
            key_id = "ABC123DEFG"
            team_id = "TEAM123456"
            [[idp_clients]]
            key_id = "contoso-2026"
            secret = '\(secret)'
            tenants = ["contoso", "adatum"]
            verifier_url = "https://idp.example/results"
            [tenants.contoso]
            target = "selected"
            users = ["b@contoso.com", "a@contoso.com"]
            lockout_seconds = 60
            """)
        let effective = config.effectiveTOML
        #expect(!effective.contains("hunter2") && !effective.contains("quoted") && !effective.contains("PRIVATE KEY"))
        #expect(effective.contains("url = \"redis://:***@redis.internal:6380/2\""))
        #expect(effective.contains("secret = \"(masked)\"\ntenants = [\"adatum\", \"contoso\"]"))
        #expect(effective.contains("[log]\nlevel = \"warning\"\nformat = \"json\"\naccess = true\n"))
        #expect(effective.contains("preface_timeout_seconds = 2.5\nidle_timeout_seconds = 300\n"))
        // With the secret put back, the printed configuration is read as the one printed.
        let unmasked = effective.replacingOccurrences(
            of: "\"\(Configuration.maskedSecret)\"", with: "'\(secret)'")
        let again = try Configuration.parse(unmasked, source: "effective")
        #expect(again.effectiveTOML == effective)
        #expect(again.idpClients == config.idpClients && again.tenantPolicies == config.tenantPolicies)
        #expect(again.apns?.privateKeyPEM == config.apns?.privateKeyPEM && again.logFormat == .json && again.accessLog)
        #expect(try Configuration.parse("").effectiveTOML == Configuration().effectiveTOML)
        // Strings that need escaping in TOML (quotes, backslashes, control characters and DEL) read back as they were.
        let withPublicURL = try Configuration.parse("public_url = \"https://approve.example:8443/broker\"")
        #expect(withPublicURL.publicURL == "https://approve.example:8443/broker")
        #expect(try Configuration.parse(withPublicURL.effectiveTOML).publicURL == withPublicURL.publicURL)
        var escaped = Configuration()
        escaped.dataDirectory = "/srv/\"a\"\\b\tc\u{1}d\u{7F}é"
        #expect(try Configuration.parse(escaped.effectiveTOML).dataDirectory == escaped.dataDirectory)
        #expect {
            try Configuration.parse("[log]\nformat = \"xml\"")
        } throws: { error in
            "\(error)".contains("log.format: \"xml\" is not one of text, json")
        }
    }

    @Test func readsClientsAndTenantPolicies() throws {
        let config = try Configuration.parse(
            Self.client + """

                [tenants.contoso]
                passwordless = false
                target = "selected"
                users = ["alice@contoso.com"]
                choices = 4
                """)
        #expect(config.idpClients.count == 1)
        #expect(config.idpClients[0].keyID == "contoso-1")
        #expect(config.idpClients[0].tenants == ["contoso", "fabrikam"])
        #expect(config.idpClients[0].secret == Array("at least thirty-two bytes of secret, for tests".utf8))
        let policy = try #require(config.tenantPolicies["contoso"])
        #expect(!policy.passwordless && policy.target == .selected && policy.users == ["alice@contoso.com"])
        #expect(policy.choices == 4 && policy.maxPendingPerUser == 1)
    }

    /// https verifiers negotiate by ALPN; http ones speak HTTP/1.1 unless told h2c; anything else is refused.
    @Test func theVerifierProtocolFollowsTheSchemeUnlessH2cIsAsked() throws {
        #expect(try Configuration.parse(Self.client).idpClients[0].verifierProtocol == .negotiated)
        let plain = Self.client.replacingOccurrences(of: "https://idp.example", with: "http://idp.example")
        #expect(try Configuration.parse(plain).idpClients[0].verifierProtocol == .http1)
        #expect(try Configuration.parse(plain + "\nverifier_protocol = \"h2c\"").idpClients[0].verifierProtocol == .h2)
        #expect(
            try Configuration.parse(plain + "\nverifier_protocol = \"http/1.1\"").idpClients[0].verifierProtocol
                == .http1)
        for (text, refused) in [(Self.client, "h2c"), (plain, "h2"), (plain, "spdy")] {
            #expect {
                try Configuration.parse(text + "\nverifier_protocol = \"\(refused)\"")
            } throws: { error in
                "\(error)".contains("verifier_protocol") && "\(error)".contains("\"\(refused)\"")
            }
        }
    }

    /// What the guard against the TOML parser's aborts looks for is left alone inside strings and comments.
    @Test func bracesAndCommasInStringsAndCommentsAreNotRefused() throws {
        let config = try Configuration.parse(
            Self.client + """

                [tenants.contoso] # [} ,}
                target = "selected"
                users = ["a}@contoso.com", # [} ,}
                  '''b,}@contoso.com''', "c\\"}@contoso.com", ]
                # [}
                """)
        let policy = try #require(config.tenantPolicies["contoso"])
        #expect(policy.users == ["a}@contoso.com", "b,}@contoso.com", "c\"}@contoso.com"])
    }

    @Test(arguments: [
        (
            client.replacingOccurrences(of: "at least thirty-two bytes of secret, for tests", with: "short"),
            "idp_clients[0].secret: at least 32 bytes are required, got 5"
        ),
        (
            client.replacingOccurrences(of: "verifier_url = \"https://idp.example/results\"", with: ""),
            "idp_clients[0].verifier_url: an http:// or https:// URL is required"
        ),
        (
            client.replacingOccurrences(of: "https://idp.example/results", with: "ftp://idp.example"),
            "idp_clients[0].verifier_url: an http:// or https:// URL is required"
        ),
        (
            client.replacingOccurrences(of: "tenants = [\"contoso\", \"fabrikam\"]", with: "tenants = []"),
            "idp_clients[0].tenants: at least one tenant is required"
        ),
        (
            client.replacingOccurrences(of: "\"fabrikam\"", with: "\"Fabrikam\""),
            "idp_clients[0].tenants: \"Fabrikam\" is not a tenant id"
        ),
        (client.replacingOccurrences(of: "key_id = \"contoso-1\"", with: ""), "idp_clients[0].key_id: required"),
        (client + "\n" + client, "idp_clients: key_id \"contoso-1\" appears twice"),
        (client + "\ncolour = 1", "idp_clients[0].colour: unknown key"),
        ("[tenants.contoso]\nchoices = 1", "tenants.contoso.choices must be within 2...10"),
        ("[tenants.contoso]\ntarget = \"some\"", "tenants.contoso.target: \"some\" is not all or selected"),
        ("[tenants.contoso]\nusers = [\"a\", 3]", "tenants.contoso.users: expected a list of strings"),
        ("[tenants.Contoso]\nchoices = 3", "tenants.Contoso: a tenant id is 1-64 of a-z, 0-9 and -"),
        ("[tenants.contoso]\nlockout = 5", "tenants.contoso.lockout: unknown key"),
    ])
    func mistakesAreNamed(text: String, message: String) {
        #expect {
            try Configuration.parse(text, source: "c.toml")
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test func theEnvironmentOverridesAClientsSecret() throws {
        let config = try Configuration.parse(
            Self.client,
            environment: ["APPROVALD_IDP_CLIENTS_0_SECRET": "a rotated secret of at least thirty-two bytes"])
        #expect(config.idpClients[0].secret == Array("a rotated secret of at least thirty-two bytes".utf8))
    }
}
