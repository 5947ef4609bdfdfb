// ECDSA P-256 with SHA-256: public keys from SPKI DER, private keys from PKCS#8, DER signatures.
import COpenSSL

/// A P-256 public key. Parsed once, verified against many times; immutable, so safe to share across threads.
public final class P256PublicKey: @unchecked Sendable {
    let key: OpaquePointer

    /// Parses a DER SubjectPublicKeyInfo and checks that it holds a key on the P-256 curve.
    public init(spkiDER: [UInt8]) throws {
        guard !spkiDER.isEmpty, spkiDER.count <= 1024 else { throw CryptoError.invalidPublicKey("bad length") }
        if let key = Self.fromUncompressedSPKI(spkiDER) {
            self.key = key
            return
        }
        let parsed: OpaquePointer? = spkiDER.withUnsafeBufferPointer { buffer in
            var cursor = buffer.baseAddress
            let key = d2i_PUBKEY(nil, &cursor, buffer.count)
            // Trailing bytes after the structure mean this is not exactly one SPKI.
            if let key, cursor != buffer.baseAddress! + buffer.count {
                EVP_PKEY_free(key)
                return nil
            }
            return key
        }
        guard let parsed else {
            ERR_clear_error()
            throw CryptoError.invalidPublicKey("not a DER SubjectPublicKeyInfo")
        }
        guard P256PublicKey.isP256(parsed) else {
            EVP_PKEY_free(parsed)
            throw CryptoError.invalidPublicKey("not an EC key on P-256")
        }
        key = parsed
    }

    init(owning key: OpaquePointer) { self.key = key }

    /// The key of the point (`x`, `y`), 32 bytes each big-endian (a JWK's `x` and `y`).
    public convenience init(x: [UInt8], y: [UInt8]) throws {
        guard x.count == 32, y.count == 32 else { throw CryptoError.invalidPublicKey("not a P-256 point") }
        try self.init(spkiDER: Self.uncompressedSPKIHeader + [0x04] + x + y)
    }

    /// The DER header of a P-256 SubjectPublicKeyInfo with an uncompressed point, the form nearly every device
    /// sends: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING { 0x04 ‖ X ‖ Y } }.
    private static let uncompressedSPKIHeader: [UInt8] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ]

    /// P-256 domain parameters for keys built from a point.
    private static let curveTemplate = try? P256PrivateKey()

    /// The fast path for the usual encoding: the point is decoded (and checked to be on the curve) into a key
    /// that copies the curve from a template. OpenSSL's generic DER decoder costs about 110 µs a key, more than
    /// a signature check; this costs about 5.
    private static func fromUncompressedSPKI(_ der: [UInt8]) -> OpaquePointer? {
        let header = uncompressedSPKIHeader
        guard der.count == header.count + 65, der.starts(with: header), let template = curveTemplate,
            let key = EVP_PKEY_new()
        else { return nil }
        let decoded = der.withUnsafeBufferPointer { buffer in
            EVP_PKEY_copy_parameters(key, template.key) == 1
                && EVP_PKEY_set1_encoded_public_key(key, buffer.baseAddress! + header.count, 65) == 1
        }
        guard decoded else {
            EVP_PKEY_free(key)
            ERR_clear_error()
            return nil
        }
        return key
    }

    deinit { EVP_PKEY_free(key) }

    static func isP256(_ key: OpaquePointer) -> Bool {
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_EC else { return false }
        var name = [CChar](repeating: 0, count: 64)
        var length = 0
        guard EVP_PKEY_get_group_name(key, &name, name.count, &length) == 1 else { return false }
        let group = String(decoding: name.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return group == "prime256v1" || group == "P-256"
    }

    /// The key as DER SubjectPublicKeyInfo.
    public var spkiDER: [UInt8] {
        var output: UnsafeMutablePointer<UInt8>? = nil
        let length = i2d_PUBKEY(key, &output)
        guard length > 0, let output else { return [] }
        defer { approvald_OPENSSL_free(output) }
        return Array(UnsafeBufferPointer(start: output, count: Int(length)))
    }

    /// Whether `signatureDER` is a valid ECDSA-P256-SHA256 signature of `message` by this key.
    public func isValidSignature<Message: ContiguousBytesView>(_ signatureDER: [UInt8], for message: Message) -> Bool {
        guard !signatureDER.isEmpty, signatureDER.count <= 80 else { return false }
        return verifySHA256Signature(signatureDER, of: message, by: key)
    }
}

/// Whether `signature` is `key`'s signature of the SHA-256 of `message` (ECDSA DER, or RSASSA-PKCS1-v1_5): the one
/// verification every public key type here shares.
func verifySHA256Signature<Message: ContiguousBytesView>(
    _ signature: [UInt8], of message: Message, by key: OpaquePointer
) -> Bool {
    guard let context = EVP_MD_CTX_new() else { return false }
    defer { EVP_MD_CTX_free(context) }
    guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, key) == 1 else {
        ERR_clear_error()
        return false
    }
    let result = message.withRawBytes { messageBytes in
        signature.withUnsafeBufferPointer { signature in
            EVP_DigestVerify(
                context, signature.baseAddress, signature.count,
                messageBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), messageBytes.count)
        }
    }
    if result != 1 { ERR_clear_error() }
    return result == 1
}

/// A P-256 private key: signs decisions in simulated devices, push-provider JWTs and test fixtures.
public final class P256PrivateKey: @unchecked Sendable {
    let key: OpaquePointer

    /// A fresh key from OpenSSL's CSPRNG.
    public init() throws {
        guard let generated = approvald_generate_p256_key() else {
            throw CryptoError.library(CryptoError.drainOpenSSLErrors())
        }
        key = generated
    }

    /// Parses a PKCS#8 DER private key on P-256.
    public convenience init(pkcs8DER: [UInt8]) throws {
        let parsed: OpaquePointer? = pkcs8DER.withUnsafeBufferPointer { buffer in
            var cursor = buffer.baseAddress
            return d2i_AutoPrivateKey(nil, &cursor, buffer.count)
        }
        try self.init(checking: parsed)
    }

    /// Parses a PEM private key (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`), such as an APNs .p8 file.
    public convenience init(pem: String) throws {
        let parsed: OpaquePointer? = pem.withRawBytes { bytes in
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        try self.init(checking: parsed)
    }

    private init(checking parsed: OpaquePointer?) throws {
        guard let parsed else {
            ERR_clear_error()
            throw CryptoError.invalidPrivateKey("not a private key")
        }
        guard P256PublicKey.isP256(parsed) else {
            EVP_PKEY_free(parsed)
            throw CryptoError.invalidPrivateKey("not an EC key on P-256")
        }
        key = parsed
    }

    deinit { EVP_PKEY_free(key) }

    /// The matching public key.
    public var publicKey: P256PublicKey {
        // Re-parsing the SPKI gives an independent EVP_PKEY without the private half.
        // swift-format-ignore: NeverForceUnwrap
        try! P256PublicKey(spkiDER: spkiDER)
    }

    /// The public half as DER SubjectPublicKeyInfo.
    public var spkiDER: [UInt8] {
        var output: UnsafeMutablePointer<UInt8>? = nil
        let length = i2d_PUBKEY(key, &output)
        guard length > 0, let output else { return [] }
        defer { approvald_OPENSSL_free(output) }
        return Array(UnsafeBufferPointer(start: output, count: Int(length)))
    }

    /// The key as PKCS#8 PEM.
    public var pem: String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 else { return "" }
        return readAll(bio)
    }

    /// An ECDSA-P256-SHA256 signature of `message`, DER encoded.
    public func signature<Message: ContiguousBytesView>(for message: Message) throws -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { throw CryptoError.library("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, EVP_sha256(), nil, key) == 1 else {
            throw CryptoError.library(CryptoError.drainOpenSSLErrors())
        }
        var signature = [UInt8](repeating: 0, count: 80)
        var length = signature.count
        let result = message.withRawBytes { messageBytes in
            signature.withUnsafeMutableBufferPointer { output in
                EVP_DigestSign(
                    context, output.baseAddress, &length,
                    messageBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), messageBytes.count)
            }
        }
        guard result == 1 else { throw CryptoError.library(CryptoError.drainOpenSSLErrors()) }
        return Array(signature.prefix(length))
    }
}

/// Everything a memory BIO holds, as a string.
func readAll(_ bio: OpaquePointer) -> String {
    var data: UnsafeMutablePointer<CChar>? = nil
    let length = approvald_BIO_get_mem_data(bio, &data)
    guard length > 0, let data else { return "" }
    return data.withMemoryRebound(to: UInt8.self, capacity: length) {
        String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
    }
}
