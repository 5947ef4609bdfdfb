// `[tenants.T.ciba]`: every key read, every refusal naming its key, the printed configuration reading back, the
// tenant's policy keys beside it, and a key file read (or refused) at start.
import Foundation
import Logging
import OIDC
import Testing

@testable import Broker

@Suite struct CIBAConfigurationTests {
    static let full = """
        [tenants.contoso]
        max_pending_per_user = 2
        [tenants.contoso.ciba]
        callback_url = "https://sso.example.com/realms/acme/protocol/openid-connect/ext/ciba/auth/callback"
        issuer = "https://sso.example.com/realms/acme"
        jwks_url = "https://sso.example.com/realms/acme/protocol/openid-connect/certs"
        [tenants.fabrikam.ciba]
        callback_url = "http://keycloak:8080/realms/fab/protocol/openid-connect/ext/ciba/auth/callback"
        issuer = "http://keycloak:8080/realms/fab"
        jwks_file = "/etc/approvald/fab-realm.json"
        """

    @Test func readsEachTenantsChannelBesideItsPolicy() throws {
        let config = try Configuration.parse(Self.full)
        #expect(
            config.cibaChannels["contoso"]
                == CIBASettings(
                    callbackURL: "https://sso.example.com/realms/acme/protocol/openid-connect/ext/ciba/auth/callback",
                    issuer: "https://sso.example.com/realms/acme",
                    keys: .url("https://sso.example.com/realms/acme/protocol/openid-connect/certs")))
        #expect(config.cibaChannels["fabrikam"]?.keys == .file("/etc/approvald/fab-realm.json"))
        #expect(config.tenantPolicies["contoso"]?.maxPendingPerUser == 2)
        let reread = try Configuration.parse(config.effectiveTOML)
        #expect(reread.cibaChannels == config.cibaChannels && reread.tenantPolicies == config.tenantPolicies)
        #expect(try Configuration.parse("[tenants.contoso]\npasswordless = true").cibaChannels.isEmpty)
    }

    @Test(arguments: [
        (
            "[tenants.t.ciba]\nissuer = \"https://k.example/realms/r\"\njwks_url = \"https://k.example/c\"",
            "tenants.t.ciba.callback_url: required"
        ),
        (
            "[tenants.t.ciba]\ncallback_url = \"https://k.example/cb\"\njwks_url = \"https://k.example/c\"",
            "tenants.t.ciba.issuer: required"
        ),
        (
            "[tenants.t.ciba]\ncallback_url = \"ftp://k.example/cb\"\nissuer = \"https://k.example/realms/r\"",
            "tenants.t.ciba.callback_url: \"ftp://k.example/cb\" is not an http:// or https:// URL"
        ),
        (
            "[tenants.t.ciba]\ncallback_url = \"https://k.example/cb\"\nissuer = \"https://k.example/realms/r\"",
            "tenants.t.ciba: one of jwks_url and jwks_file is required"
        ),
        (
            "[tenants.t.ciba]\ncallback_url = \"https://k.example/cb\"\nissuer = \"https://k.example/realms/r\"\njwks_url = \"https://k.example/c\"\njwks_file = \"k.json\"",
            "tenants.t.ciba: one of jwks_url and jwks_file is required"
        ),
        (
            "[tenants.t.ciba]\ncallback_url = \"https://k.example/cb\"\nissuer = \"https://k.example/realms/r\"\njwks_url = \"https://k.example/c\"\nrealm = \"r\"",
            "tenants.t.ciba.realm: unknown key"
        ),
        ("[tenants.t]\nciba = 1", "tenants.t.ciba: expected a table"),
    ])
    func errorsNameTheKey(text: String, message: String) {
        #expect {
            try Configuration.parse(text, source: "test.toml")
        } throws: { error in
            "\(error)".hasPrefix("test.toml: ") && "\(error)".contains(message)
        }
    }

    @Test func aKeyFileIsReadAtStartAndABadOneStopsIt() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-ciba-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("realm.json").path
        let sources: [String: IssuerKeySource] = ["fabrikam": .file(file), "contoso": .url("https://k.example/c")]
        let setting = { (tenant: String) in "tenants.\(tenant).ciba.jwks_file" }
        #expect {
            try Broker.issuerKeyFiles(sources, setting: setting)
        } throws: { "\($0)" == "tenants.fabrikam.ciba.jwks_file: cannot read \(file)" }
        try #"{"keys":[]}"#.write(toFile: file, atomically: true, encoding: .utf8)
        #expect {
            try Broker.issuerKeyFiles(sources, setting: setting)
        } throws: { "\($0)".contains("is not a JWK Set with an RSA or P-256 signing key") }
        try generatorKeySet.write(toFile: file, atomically: true, encoding: .utf8)
        let read = try Broker.issuerKeyFiles(sources, setting: setting)
        #expect(read.keys.sorted() == ["fabrikam"] && read["fabrikam"]?.count == 1)
    }
}

/// A JWK Set with one P-256 signing key (the x and y of a point on the curve: the generator).
private let generatorKeySet = """
    {"keys":[{"kty":"EC","crv":"P-256","kid":"k1","use":"sig",
    "x":"axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY","y":"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"}]}
    """
