// `[oidc]`: every key read, every refusal naming its key, the printed configuration reading back with the client
// secrets masked, and the development signing key kept in the data directory across starts.
import Crypto
import Foundation
import Logging
import OIDC
import Testing

@testable import Broker

@Suite struct OIDCConfigurationTests {
    static let full = """
        [oidc]
        issuer = "https://login.example.com/approvald"
        [[oidc.signing_keys]]
        private_key = "/etc/approvald/oidc-1.pem"
        [[oidc.signing_keys]]
        private_key = "/etc/approvald/oidc-0.pem"
        [[oidc.clients]]
        client_id = "webapp"
        client_secret = "a client secret of at least thirty-two bytes"
        redirect_uris = ["https://app.example.com/callback", "http://127.0.0.1:5000/cb"]
        tenant = "contoso"
        [[oidc.clients]]
        client_id = "entra"
        redirect_uris = ["https://login.microsoftonline.com/common/federation/externalauthprovider"]
        tenant = "contoso"
        hint_issuer = "https://login.microsoftonline.com/tid/v2.0"
        hint_jwks_url = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
        user_claim = "preferred_username"
        """

    @Test func readsTheIssuerKeysAndClients() throws {
        let oidc = try #require(try Configuration.parse(Self.full).oidc)
        #expect(oidc.issuer == "https://login.example.com/approvald")
        #expect(oidc.signingKeyFiles == ["/etc/approvald/oidc-1.pem", "/etc/approvald/oidc-0.pem"])
        #expect(oidc.clients.map(\.clientID) == ["webapp", "entra"])
        let webapp = try #require(oidc.client("webapp"))
        #expect(webapp.clientSecret == Array("a client secret of at least thirty-two bytes".utf8))
        #expect(webapp.redirectURIs.count == 2 && webapp.tenant == "contoso" && webapp.hintTrust == nil)
        let entra = try #require(oidc.client("entra"))
        #expect(entra.clientSecret == nil)
        #expect(
            entra.hintTrust
                == HintTrust(
                    issuer: "https://login.microsoftonline.com/tid/v2.0",
                    keys: .url("https://login.microsoftonline.com/common/discovery/v2.0/keys"),
                    userClaim: "preferred_username"))
        #expect(try Configuration.parse("").oidc == nil)
    }

    @Test func thePrintedConfigurationReadsBackWithTheSecretsMasked() throws {
        let config = try Configuration.parse(Self.full)
        let effective = config.effectiveTOML
        #expect(!effective.contains("thirty-two bytes"))
        #expect(effective.contains("client_id = \"webapp\"\nclient_secret = \"(masked)\"\n"))
        let unmasked = effective.replacingOccurrences(
            of: "\"\(Configuration.maskedSecret)\"", with: "\"a client secret of at least thirty-two bytes\"")
        #expect(try Configuration.parse(unmasked).oidc == config.oidc)
    }

    @Test(arguments: [
        ("[[oidc.clients]]\nclient_id = \"a\"", "oidc.issuer: required with [oidc]"),
        ("[oidc]\nissuer = \"https://login.example.com/\"", "oidc.issuer: \"https://login.example.com/\" is not"),
        ("[oidc]\nissuer = \"ftp://login.example.com\"", "oidc.issuer:"),
        ("[oidc]\nissuer = \"https://login.example.com?x=1\"", "oidc.issuer:"),
        ("[oidc]\nissuer = \"https://l.example\"\ncolour = 1", "oidc.colour: unknown key"),
        (
            "[oidc]\nissuer = \"https://l.example\"\n[[oidc.signing_keys]]\npath = \"k\"",
            "oidc.signing_keys[0].private_key: required"
        ),
        (
            "[oidc]\nissuer = \"https://l.example\"\n[[oidc.clients]]\nredirect_uris = [\"https://a.example/cb\"]\ntenant = \"t\"",
            "oidc.clients[0].client_id: required"
        ),
        (
            "[oidc]\nissuer = \"https://l.example\"\n[[oidc.clients]]\nclient_id = \"a\"\nclient_secret = \"short\"\nredirect_uris = [\"https://a.example/cb\"]\ntenant = \"t\"",
            "oidc.clients[0].client_secret: at least 32 bytes"
        ),
        (
            "[oidc]\nissuer = \"https://l.example\"\n[[oidc.clients]]\nclient_id = \"a\"\ntenant = \"t\"",
            "oidc.clients[0].redirect_uris: at least one"
        ),
        (
            "[oidc]\nissuer = \"https://l.example\"\n[[oidc.clients]]\nclient_id = \"a\"\nredirect_uris = [\"http://app.example/cb\"]\ntenant = \"t\"",
            "\"http://app.example/cb\" is not an https:// URL"
        ),
        (
            "[oidc]\nissuer = \"https://l.example\"\n[[oidc.clients]]\nclient_id = \"a\"\nredirect_uris = [\"https://app.example/cb#x\"]\ntenant = \"t\"",
            "without a fragment"
        ),
        (
            "[oidc]\nissuer = \"https://l.example\"\n[[oidc.clients]]\nclient_id = \"a\"\nredirect_uris = [\"https://a.example/cb\"]\ntenant = \"Not A Tenant\"",
            "oidc.clients[0].tenant: a tenant id"
        ),
        (
            "[oidc]\nissuer = \"https://l.example\"\n[[oidc.clients]]\nclient_id = \"a\"\nredirect_uris = [\"https://a.example/cb\"]\ntenant = \"t\"\nhint_issuer = \"https://i.example\"",
            "hint_issuer and user_claim are required"
        ),
        (
            "[oidc]\nissuer = \"https://l.example\"\n[[oidc.clients]]\nclient_id = \"a\"\nredirect_uris = [\"https://a.example/cb\"]\ntenant = \"t\"\nhint_issuer = \"https://i.example\"\nuser_claim = \"upn\"",
            "one of hint_jwks_url and hint_jwks_file is required"
        ),
        (
            "[oidc]\nissuer = \"https://l.example\"\n[[oidc.clients]]\nclient_id = \"a\"\nredirect_uris = [\"https://a.example/cb\"]\ntenant = \"t\"\n[[oidc.clients]]\nclient_id = \"a\"\nredirect_uris = [\"https://a.example/cb\"]\ntenant = \"t\"",
            "client_id \"a\" is given twice"
        ),
        (
            "[store]\nbackend = \"redis\"\n[store.redis]\nurl = \"redis://r\"\n[oidc]\nissuer = \"https://l.example\"",
            "oidc.signing_keys: instances on a shared store must sign with the same keys"
        ),
    ])
    func errorsNameTheKey(text: String, message: String) {
        #expect {
            try Configuration.parse(text, source: "test.toml")
        } throws: { error in
            "\(error)".hasPrefix("test.toml: ") && "\(error)".contains(message)
        }
    }

    /// Without a configured key, the first start makes an RSA key in the data directory (mode 0600) and later
    /// starts use it, so that tokens and the published kid outlive a restart; a configured key is read as given.
    @Test func theDevelopmentKeyIsMadeOnceAndConfiguredKeysAreReadInOrder() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-oidc-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = OIDCSettings(issuer: "https://login.example.com", signingKeyFiles: [], clients: [])
        let logger = Logger(label: "test")
        let first = try Broker.signingKeys(settings, dataDirectory: directory, logger: logger)
        let path = directory + "/" + Broker.developmentKeyFile
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600 && first.map(\.algorithm) == [.rs256])
        let again = try Broker.signingKeys(settings, dataDirectory: directory, logger: logger)
        #expect(again.map(\.keyID) == first.map(\.keyID))

        let p256 = directory + "/p256.pem"
        try P256PrivateKey().pem.write(toFile: p256, atomically: true, encoding: .utf8)
        let configured = OIDCSettings(issuer: settings.issuer, signingKeyFiles: [p256, path], clients: [])
        let keys = try Broker.signingKeys(configured, dataDirectory: directory, logger: logger)
        #expect(keys.map(\.algorithm) == [.es256, .rs256] && keys[1].keyID == first[0].keyID)
        let missing = OIDCSettings(issuer: settings.issuer, signingKeyFiles: [directory + "/none.pem"], clients: [])
        #expect(throws: ConfigError.self) { try Broker.signingKeys(missing, dataDirectory: directory, logger: logger) }
    }
}
