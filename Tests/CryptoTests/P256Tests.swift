// ECDSA P-256: signatures from an independent implementation (fixtures), round trips, and malformed input.
import Foundation
import Testing

@testable import Crypto

struct SignatureFixture: Decodable {
    struct Case: Decodable {
        let name: String
        let spki: String
        let message: String
        let signature: String
        let valid: Bool
    }
    let signatures: [Case]
    let p384_spki: String
    let p256_pkcs8_pem: String

    static func load() throws -> SignatureFixture {
        let url = try #require(
            Bundle.module.url(forResource: "p256_signatures", withExtension: "json", subdirectory: "Fixtures"))
        return try JSONDecoder().decode(SignatureFixture.self, from: Data(contentsOf: url))
    }
}

func base64(_ text: String) -> [UInt8] { [UInt8](Data(base64Encoded: text)!) }

@Suite struct P256Tests {
    @Test func verifiesSignaturesMadeElsewhere() throws {
        let fixture = try SignatureFixture.load()
        #expect(fixture.signatures.count >= 12)
        for item in fixture.signatures {
            let key = try P256PublicKey(spkiDER: base64(item.spki))
            let signature = try #require(Base64URL.decode(item.signature))
            #expect(key.isValidSignature(signature, for: base64(item.message)) == item.valid, "\(item.name)")
        }
    }

    @Test func signsWhatOthersVerifyAndRoundTrips() throws {
        let key = try P256PrivateKey()
        let message = "approvald-decision-v1\ncontoso"
        let signature = try key.signature(for: message)
        let publicKey = try P256PublicKey(spkiDER: key.spkiDER)
        #expect(publicKey.isValidSignature(signature, for: message))
        #expect(!publicKey.isValidSignature(signature, for: message + "x"))
        #expect(publicKey.spkiDER == key.spkiDER)
        // ECDSA is randomised: two signatures differ, both verify.
        let again = try key.signature(for: message)
        #expect(again != signature)
        #expect(publicKey.isValidSignature(again, for: message))
        // A PEM round trip gives the same key.
        let reloaded = try P256PrivateKey(pem: key.pem)
        #expect(reloaded.spkiDER == key.spkiDER)
    }

    @Test func loadsAPKCS8KeyMadeElsewhere() throws {
        let fixture = try SignatureFixture.load()
        let key = try P256PrivateKey(pem: fixture.p256_pkcs8_pem)
        let signature = try key.signature(for: "hello")
        #expect(key.publicKey.isValidSignature(signature, for: "hello"))
    }

    @Test func refusesKeysThatAreNotP256() throws {
        let fixture = try SignatureFixture.load()
        #expect(throws: CryptoError.self) { try P256PublicKey(spkiDER: base64(fixture.p384_spki)) }
        #expect(throws: CryptoError.self) { try P256PublicKey(spkiDER: []) }
        #expect(throws: CryptoError.self) { try P256PublicKey(spkiDER: Array("not a key".utf8)) }
        let valid = base64(fixture.signatures[0].spki)
        #expect(throws: CryptoError.self) { try P256PublicKey(spkiDER: valid + [0]) }
        #expect(throws: CryptoError.self) { try P256PublicKey(spkiDER: Array(valid.dropLast())) }
        #expect(throws: CryptoError.self) {
            try P256PrivateKey(pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        }
    }

    @Test func refusesAPointOffTheCurveAndAcceptsTheCompressedForm() throws {
        let key = try P256PrivateKey()
        let uncompressed = key.spkiDER
        #expect(uncompressed.count == 91 && uncompressed[26] == 0x04)
        var offCurve = uncompressed
        offCurve[90] ^= 1
        #expect(throws: CryptoError.self) { try P256PublicKey(spkiDER: offCurve) }
        // The same key with its point compressed goes through the generic decoder and verifies alike.
        let compressedHeader: [UInt8] = [
            0x30, 0x39, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
            0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x22, 0x00,
        ]
        let x = uncompressed[27..<59]
        let yIsOdd = uncompressed[90] & 1 == 1
        let compressed = try P256PublicKey(spkiDER: compressedHeader + [yIsOdd ? 0x03 : 0x02] + x)
        let signature = try key.signature(for: "hello")
        #expect(compressed.isValidSignature(signature, for: "hello"))
        #expect(try P256PublicKey(spkiDER: uncompressed).isValidSignature(signature, for: "hello"))
        #expect(!compressed.isValidSignature(signature, for: "hello!"))
    }

    @Test func rejectsMalformedSignatures() throws {
        let key = try P256PrivateKey()
        let publicKey = key.publicKey
        let signature = try key.signature(for: "m")
        #expect(!publicKey.isValidSignature([], for: "m"))
        #expect(!publicKey.isValidSignature(Array(signature.dropLast()), for: "m"))
        #expect(!publicKey.isValidSignature(signature + [0], for: "m"))
        #expect(!publicKey.isValidSignature([UInt8](repeating: 0x30, count: 72), for: "m"))
        #expect(!publicKey.isValidSignature([UInt8](repeating: 0, count: 4096), for: "m"))
    }
}

@Suite struct Base64URLTests {
    @Test func rfc4648Vectors() {
        let vectors = [
            "": "", "f": "Zg", "fo": "Zm8", "foo": "Zm9v", "foob": "Zm9vYg", "fooba": "Zm9vYmE", "foobar": "Zm9vYmFy",
        ]
        for (plain, encoded) in vectors {
            #expect(Base64URL.encode(Array(plain.utf8)) == encoded)
            #expect(Base64URL.decode(encoded) == Array(plain.utf8))
        }
        #expect(Base64URL.encode([0xfb, 0xff, 0xfe]) == "-__-")
        #expect(Base64URL.decode("-__-") == [0xfb, 0xff, 0xfe])
        #expect(Base64URL.decode("Zm8=") == Array("fo".utf8))
    }

    @Test func rejectsWhatIsNotBase64URL() {
        #expect(Base64URL.decode("Zm9v+") == nil)
        #expect(Base64URL.decode("+/+/") == nil)
        #expect(Base64URL.decode("Z") == nil)
        #expect(Base64URL.decode("Zm9 v") == nil)
        #expect(Base64URL.decode("Zh") == nil)  // non-zero leftover bits: not canonical
    }

    @Test func roundTripsRandomBytes() {
        for length in 0..<70 {
            let bytes = SecureRandom.bytes(length)
            #expect(Base64URL.decode(Base64URL.encode(bytes)) == bytes)
        }
    }
}

@Suite struct SecureRandomTests {
    @Test func producesDistinctBytes() {
        let a = SecureRandom.bytes(32), b = SecureRandom.bytes(32)
        #expect(a.count == 32 && a != b)
        // A copy does not repeat the original: the generator keeps no state to duplicate.
        var generator = SecureRandom()
        _ = generator.next()
        var copy = generator
        let draws = Set((0..<1000).map { _ in generator.next() } + (0..<100).map { _ in copy.next() })
        #expect(draws.count == 1100)
    }

    @Test func theBufferedGeneratorRefillsAndItsCopiesShareOneStream() {
        let generator = BufferedSecureRandom()
        let copy = generator
        // Past several refills of the 512-number buffer, nothing repeats, copy or not.
        let draws = (0..<1500).map { _ in generator.next() } + (0..<600).map { _ in copy.next() }
        #expect(Set(draws).count == draws.count)
        // Uniform enough that every one of 100 buckets is hit.
        #expect(Set(draws.map { $0 % 100 }).count == 100)
    }
}

@Suite struct SelfSignedCertificateTests {
    @Test func generatesAPEMPairThatLoads() throws {
        let pair = try SelfSignedCertificate.generate()
        #expect(pair.certificatePEM.hasPrefix("-----BEGIN CERTIFICATE-----"))
        #expect(pair.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        _ = try P256PrivateKey(pem: pair.privateKeyPEM)
    }
}

@Suite struct JWTTests {
    /// r‖s back to DER, as a verifier holding only a DER API would do it.
    func der(fromRaw raw: [UInt8]) -> [UInt8] {
        func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
            var value = Array(bytes.drop { $0 == 0 })
            if value.isEmpty { value = [0] }
            if value[0] & 0x80 != 0 { value.insert(0, at: 0) }
            return [0x02, UInt8(value.count)] + value
        }
        let body = integer(raw[0..<32]) + integer(raw[32..<64])
        return [0x30, UInt8(body.count)] + body
    }

    @Test func anES256TokenVerifiesWithTheKeyAndCarriesItsParts() throws {
        let key = try P256PrivateKey()
        for _ in 0..<20 {
            let token = try JWT.signES256(
                headerJSON: #"{"alg":"ES256","kid":"ABC123DEFG"}"#, claimsJSON: #"{"iss":"TEAM","iat":1795600000}"#,
                key: key)
            let parts = token.split(separator: ".", omittingEmptySubsequences: false)
            #expect(parts.count == 3)
            #expect(
                Base64URL.decode(parts[0]).map { String(decoding: $0, as: UTF8.self) }
                    == #"{"alg":"ES256","kid":"ABC123DEFG"}"#)
            #expect(
                Base64URL.decode(parts[1]).map { String(decoding: $0, as: UTF8.self) }
                    == #"{"iss":"TEAM","iat":1795600000}"#)
            let raw = try #require(Base64URL.decode(parts[2]))
            #expect(raw.count == 64)
            #expect(key.publicKey.isValidSignature(der(fromRaw: raw), for: "\(parts[0]).\(parts[1])"))
        }
    }

    @Test func malformedDERIsRefused() {
        #expect(rawECDSASignature(fromDER: [], size: 32) == nil)
        #expect(rawECDSASignature(fromDER: [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02], size: 32)?.count == 64)
        #expect(rawECDSASignature(fromDER: [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02, 0x00], size: 32) == nil)
        #expect(rawECDSASignature(fromDER: [0x30, 0x05, 0x02, 0x01, 0x01, 0x02, 0x01], size: 32) == nil)
        #expect(rawECDSASignature(fromDER: [0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02], size: 32) == nil)
        let tooLong = [0x30, 0x25, 0x02, 0x21, 0x01] + [UInt8](repeating: 1, count: 32) + [0x02, 0x01, 0x02]
        #expect(rawECDSASignature(fromDER: tooLong, size: 32) == nil)
    }
}

@Suite struct RS256Tests {
    func openssl(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    @Test func aTokenSignedWithRS256VerifiesWithOpenSSL() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-rsa-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keyPath = directory + "/key.pem"
        #expect(
            try openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", keyPath]) == 0)
        #expect(try openssl(["pkey", "-in", keyPath, "-pubout", "-out", directory + "/public.pem"]) == 0)
        let key = try RSAPrivateKey(pem: String(contentsOfFile: keyPath, encoding: .utf8))
        let token = try JWT.signRS256(
            headerJSON: #"{"alg":"RS256","typ":"JWT"}"#, claimsJSON: #"{"iss":"svc@example.iam"}"#, key: key)
        let parts = token.split(separator: ".").map(String.init)
        #expect(parts.count == 3)
        try Data((parts[0] + "." + parts[1]).utf8).write(to: URL(fileURLWithPath: directory + "/input"))
        try Data(try #require(Base64URL.decode(parts[2]))).write(to: URL(fileURLWithPath: directory + "/signature"))
        let verify = [
            "dgst", "-sha256", "-verify", directory + "/public.pem", "-signature", directory + "/signature",
            directory + "/input",
        ]
        #expect(try openssl(verify) == 0)
        // A changed input does not verify: the check above can fail.
        try Data((parts[0] + ".x").utf8).write(to: URL(fileURLWithPath: directory + "/input"))
        #expect(try openssl(verify) != 0)
        // Not RSA, or not a key at all: refused.
        #expect(throws: CryptoError.self) { try RSAPrivateKey(pem: try P256PrivateKey().pem) }
        #expect(throws: CryptoError.self) { try RSAPrivateKey(pem: "nothing") }
    }
}

@Suite struct PublicKeyNumbersTests {
    @Test func anRSAKeyFromItsNumbersVerifiesWhatItsPrivateKeySigned() throws {
        let key = try RSAPrivateKey(generatingBits: 2048)
        let (modulus, exponent) = key.publicNumbers
        let publicKey = try RSAPublicKey(modulus: modulus, exponent: exponent)
        let signature = try key.signatureRS256(for: "message")
        #expect(publicKey.isValidRS256Signature(signature, for: "message"))
        #expect(!publicKey.isValidRS256Signature(signature, for: "massage"))
        #expect(!publicKey.isValidRS256Signature(Array(signature.dropLast()), for: "message"))
        #expect(throws: CryptoError.self) { try RSAPublicKey(modulus: Array(modulus.prefix(128)), exponent: exponent) }
        #expect(throws: CryptoError.self) { try RSAPublicKey(modulus: [], exponent: exponent) }
    }

    @Test func aP256KeyFromItsPointVerifiesAndAnES256TokenChecks() throws {
        let key = try P256PrivateKey()
        let point = Array(key.publicKey.spkiDER.suffix(64))
        let publicKey = try P256PublicKey(x: Array(point.prefix(32)), y: Array(point.suffix(32)))
        #expect(publicKey.spkiDER == key.publicKey.spkiDER)
        #expect(throws: CryptoError.self) {
            try P256PublicKey(x: Array(point.prefix(32)), y: [UInt8](repeating: 1, count: 32))
        }
        let token = try JWT.signES256(headerJSON: #"{"alg":"ES256"}"#, claimsJSON: #"{"a":1}"#, key: key)
        let parsed = try #require(JWT.Unverified(token))
        #expect(parsed.headerJSON == #"{"alg":"ES256"}"# && parsed.claimsJSON == #"{"a":1}"#)
        #expect(parsed.isSignedES256(by: publicKey))
        #expect(!parsed.isSignedES256(by: try P256PrivateKey().publicKey))
    }

    @Test func rawAndDERSignaturesConvertBothWays() throws {
        for _ in 0..<50 {
            let der = try P256PrivateKey().signature(for: "x")
            let raw = try #require(rawECDSASignature(fromDER: der, size: 32))
            #expect(derECDSASignature(fromRaw: raw, size: 32) == der)
        }
        #expect(derECDSASignature(fromRaw: [UInt8](repeating: 0, count: 63), size: 32) == nil)
        #expect(derECDSASignature(fromRaw: [UInt8](repeating: 0, count: 64), size: 32) == [0x30, 6, 2, 1, 0, 2, 1, 0])
    }
}
