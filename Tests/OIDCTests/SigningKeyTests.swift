// The provider's signing keys, checked with code that is not theirs: the kid is the RFC 7638 thumbprint computed
// here from the JWK's own members, the x5c certificate is read by the openssl command and certifies the key, and a
// token's RS256 or ES256 signature verifies with `openssl dgst` against the public key the JWK publishes.
import Crypto
import Foundation
import JSONText
import OIDC
import TestSupport
import Testing

@Suite struct SigningKeyTests {
    func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-jwk-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// RFC 7638 §3: the required members in lexicographic order, no whitespace, SHA-256, base64url.
    func thumbprint(_ jwk: JSONValue) throws -> String {
        let members: [String] = jwk["kty"]?.string == "RSA" ? ["e", "kty", "n"] : ["crv", "kty", "x", "y"]
        let canonical =
            "{"
            + (try members.map { name in "\"\(name)\":\"\(try #require(jwk[name]?.string))\"" }).joined(
                separator: ",") + "}"
        return Base64URL.encode(SHA256.hash(Array(canonical.utf8)))
    }

    /// The certificate's public key, and the key's, as openssl prints them (PEM).
    func publicKeys(certificate: String, privateKeyPEM: String, in directory: URL) throws -> (String, String) {
        let der = directory.appendingPathComponent("cert.der").path
        let key = directory.appendingPathComponent("key.pem").path
        try #require(Data(base64Encoded: certificate)).write(to: URL(fileURLWithPath: der))
        try privateKeyPEM.write(toFile: key, atomically: true, encoding: .utf8)
        let fromCertificate = try runCommand(
            ["openssl", "x509", "-inform", "DER", "-in", der, "-noout", "-pubkey"], timeout: 30)
        let fromKey = try runCommand(["openssl", "pkey", "-in", key, "-pubout"], timeout: 30)
        return (fromCertificate.stdout, fromKey.stdout)
    }

    @Test func anRSAKeysJWKIsItsThumbprintItsNumbersAndACertificateOfIt() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let rsa = try RSAPrivateKey(generatingBits: 2048)
        let key = try OIDCSigningKey(pem: rsa.pem, certificateName: "login.example.com")
        let jwk = try #require(JSONValue.parse(Array(key.publicJWK.utf8)))
        #expect(key.algorithm == .rs256 && jwk["alg"]?.string == "RS256" && jwk["use"]?.string == "sig")
        #expect(jwk["e"]?.string == "AQAB")
        #expect(try thumbprint(jwk) == key.keyID && jwk["kid"]?.string == key.keyID)
        guard case .array(let chain)? = jwk["x5c"], let certificate = chain.first?.string else {
            Issue.record("no x5c")
            return
        }
        let (certified, own) = try publicKeys(certificate: certificate, privateKeyPEM: rsa.pem, in: directory)
        #expect(!certified.isEmpty && certified == own)
        let subject = try runCommand(
            [
                "openssl", "x509", "-inform", "DER", "-in", directory.appendingPathComponent("cert.der").path, "-noout",
                "-subject",
            ], timeout: 30)
        #expect(subject.stdout.contains("CN = login.example.com"))
        // The same key gives the same certificate: every instance publishes the same JWK.
        let again = try OIDCSigningKey(pem: rsa.pem, certificateName: "login.example.com")
        #expect(again.publicJWK == key.publicJWK)
    }

    @Test func aP256KeysJWKCarriesItsPointAndItsThumbprint() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let p256 = try P256PrivateKey()
        let key = try OIDCSigningKey(pem: p256.pem, certificateName: "login.example.com")
        let jwk = try #require(JSONValue.parse(Array(key.publicJWK.utf8)))
        #expect(key.algorithm == .es256 && jwk["crv"]?.string == "P-256" && jwk["kty"]?.string == "EC")
        let x = try #require(Base64URL.decode(jwk["x"]?.string ?? ""))
        let y = try #require(Base64URL.decode(jwk["y"]?.string ?? ""))
        #expect(Array(p256.spkiDER.suffix(65)) == [0x04] + x + y)
        #expect(try thumbprint(jwk) == key.keyID)
        guard case .array(let chain)? = jwk["x5c"], let certificate = chain.first?.string else {
            Issue.record("no x5c")
            return
        }
        let (certified, own) = try publicKeys(certificate: certificate, privateKeyPEM: p256.pem, in: directory)
        #expect(!certified.isEmpty && certified == own)
    }

    /// A token's signature, verified by `openssl dgst` with the public key: RS256 as it is, ES256's r‖s turned
    /// into DER here.
    @Test(arguments: [OIDCSigningKey.Algorithm.rs256, .es256])
    func aSignedTokenVerifiesWithThePublicKey(algorithm: OIDCSigningKey.Algorithm) throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let pem = algorithm == .rs256 ? try RSAPrivateKey(generatingBits: 2048).pem : try P256PrivateKey().pem
        let key = try OIDCSigningKey(pem: pem, certificateName: "login.example.com")
        let token = try key.sign(claimsJSON: #"{"sub":"alice","aud":"webapp"}"#)
        let parts = token.split(separator: ".").map(String.init)
        #expect(parts.count == 3)
        let header = try #require(JSONValue.parse(Base64URL.decode(parts[0]) ?? []))
        #expect(header["alg"]?.string == algorithm.rawValue && header["kid"]?.string == key.keyID)
        #expect(
            Base64URL.decode(parts[1]).map { String(decoding: $0, as: UTF8.self) } == #"{"sub":"alice","aud":"webapp"}"#
        )
        var signature = try #require(Base64URL.decode(parts[2]))
        if algorithm == .es256 {
            #expect(signature.count == 64)
            func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
                var value = Array(bytes.drop { $0 == 0 })
                if value.isEmpty || value[0] & 0x80 != 0 { value.insert(0, at: 0) }
                return [0x02, UInt8(value.count)] + value
            }
            let body = integer(signature.prefix(32)) + integer(signature.suffix(32))
            signature = [0x30, UInt8(body.count)] + body
        }
        let keyFile = directory.appendingPathComponent("key.pem").path
        let publicFile = directory.appendingPathComponent("public.pem").path
        let signatureFile = directory.appendingPathComponent("signature").path
        let inputFile = directory.appendingPathComponent("input").path
        try pem.write(toFile: keyFile, atomically: true, encoding: .utf8)
        _ = try runCommand(["openssl", "pkey", "-in", keyFile, "-pubout", "-out", publicFile], timeout: 30)
        try Data(signature).write(to: URL(fileURLWithPath: signatureFile))
        try (parts[0] + "." + parts[1]).write(toFile: inputFile, atomically: true, encoding: .utf8)
        let verified = try runCommand(
            ["openssl", "dgst", "-sha256", "-verify", publicFile, "-signature", signatureFile, inputFile], timeout: 30)
        #expect(verified.stdout.contains("Verified OK"), "\(verified.stdout)\(verified.stderr)")
    }

    @Test func whatIsNotAnRSAOrP256PrivateKeyIsRefused() throws {
        #expect(throws: OIDCKeyError.self) { try OIDCSigningKey(pem: "not a key", certificateName: "x") }
        // An RSA key of 1024 bits is below what the contract accepts.
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let small = directory.appendingPathComponent("small.pem").path
        _ = try runCommand(
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", small], timeout: 30)
        let pem = try String(contentsOfFile: small, encoding: .utf8)
        #expect(throws: OIDCKeyError.self) { try OIDCSigningKey(pem: pem, certificateName: "x") }
    }
}

@Suite struct DiscoveryTests {
    @Test func theDocumentNamesEveryEndpointUnderTheIssuerAndWhatIsSupported() throws {
        let text = Discovery.document(
            issuer: "https://login.example.com/approvald", algorithms: [.rs256, .es256, .rs256])
        let document = try #require(JSONValue.parse(Array(text.utf8)))
        #expect(document["issuer"]?.string == "https://login.example.com/approvald")
        #expect(document["authorization_endpoint"]?.string == "https://login.example.com/approvald/oidc/authorize")
        #expect(document["token_endpoint"]?.string == "https://login.example.com/approvald/oidc/token")
        #expect(document["userinfo_endpoint"]?.string == "https://login.example.com/approvald/oidc/userinfo")
        #expect(document["jwks_uri"]?.string == "https://login.example.com/approvald/oidc/jwks")
        func strings(_ name: String) -> [String] {
            guard case .array(let values)? = document[name] else { return [] }
            return values.compactMap(\.string)
        }
        #expect(strings("id_token_signing_alg_values_supported") == ["RS256", "ES256"])
        #expect(strings("response_types_supported") == ["code", "id_token"])
        #expect(strings("response_modes_supported") == ["query", "form_post"])
        #expect(strings("code_challenge_methods_supported") == ["S256"])
        #expect(
            strings("token_endpoint_auth_methods_supported") == ["client_secret_basic", "client_secret_post", "none"])
        #expect(strings("claims_supported").contains("amr") && document["claims_parameter_supported"] == .bool(true))
    }
}
