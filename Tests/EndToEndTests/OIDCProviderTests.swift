// approvald as an OpenID provider, against the real binary with curl: the discovery document under the configured
// issuer, the JWKS of the configured keys in order, the development key made once in the data directory and kept
// across a restart, and no provider at all without `[oidc]`.
import Crypto
import Foundation
import Glibc
import TestSupport
import Testing

@Suite struct OIDCProviderTests {
    static let issuer = "https://login.contoso.test"

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func discoveryAndTheKeySetNameTheConfiguredKeysInOrder() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-oidc-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let p256 = directory.appendingPathComponent("p256.pem").path
        let rsa = directory.appendingPathComponent("rsa.pem").path
        try P256PrivateKey().pem.write(toFile: p256, atomically: true, encoding: .utf8)
        try RSAPrivateKey(generatingBits: 2048).pem.write(toFile: rsa, atomically: true, encoding: .utf8)
        let broker = try ApprovaldProcess(
            extraConfig: brokerConfig + """

                [oidc]
                issuer = "\(Self.issuer)"
                [[oidc.signing_keys]]
                private_key = "\(p256)"
                [[oidc.signing_keys]]
                private_key = "\(rsa)"
                """)
        let discovery = try broker.curl("/.well-known/openid-configuration", ["-i"])
        #expect(discovery.status == 200)
        #expect(discovery.body.lowercased().contains("content-type: application/json"))
        #expect(discovery.body.lowercased().contains("cache-control: public, max-age=300"))
        let document = try json(String(discovery.body.split(separator: "\r\n\r\n", maxSplits: 1).last ?? ""))
        #expect(document["issuer"] as? String == Self.issuer)
        #expect(document["jwks_uri"] as? String == Self.issuer + "/oidc/jwks")
        #expect(document["id_token_signing_alg_values_supported"] as? [String] == ["ES256", "RS256"])
        let keys = try #require(try json(try broker.curl("/oidc/jwks").body)["keys"] as? [[String: Any]])
        #expect(keys.map { $0["kty"] as? String } == ["EC", "RSA"])
        #expect(keys.allSatisfy { ($0["x5c"] as? [String])?.count == 1 && ($0["kid"] as? String)?.count == 43 })
        #expect(try broker.curl("/oidc/jwks", ["-X", "POST"]).status == 405)
    }

    @Test(.disabled(if: testsRunOnRedis, "instances on Redis must be given their keys"))
    func theDevelopmentKeyIsMadeOnFirstRunAndKeptAcrossARestart() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-oidc-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let config = brokerConfig + "\n[oidc]\nissuer = \"\(Self.issuer)\"\n"
        var kid = ""
        do {
            let first = try ApprovaldProcess(extraConfig: config, dataDirectory: data)
            let keys = try #require(try json(try first.curl("/oidc/jwks").body)["keys"] as? [[String: Any]])
            #expect(keys.count == 1 && keys[0]["alg"] as? String == "RS256")
            kid = try #require(keys[0]["kid"] as? String)
            let log = try String(contentsOfFile: first.logPath, encoding: .utf8)
            #expect(log.contains("made a development signing key"))
            _ = first.stop()
        }
        let keyFile = data + "/oidc-signing-key.pem"
        #expect(try FileManager.default.attributesOfItem(atPath: keyFile)[.posixPermissions] as? Int == 0o600)
        let second = try ApprovaldProcess(extraConfig: config, dataDirectory: data)
        let keys = try #require(try json(try second.curl("/oidc/jwks").body)["keys"] as? [[String: Any]])
        #expect(keys.first?["kid"] as? String == kid)
        #expect(!(try String(contentsOfFile: second.logPath, encoding: .utf8)).contains("made a development"))
    }

    @Test func withoutTheSectionThereIsNoProvider() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        #expect(try broker.curl("/.well-known/openid-configuration").status == 404)
        #expect(try broker.curl("/oidc/jwks").status == 404)
    }
}
