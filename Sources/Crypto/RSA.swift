// RSA private keys for RS256 (RSASSA-PKCS1-v1_5 with SHA-256), such as a Google service account's, which signs the
// assertion exchanged for an FCM access token, or an OpenID provider's, which signs ID tokens.
import COpenSSL

public final class RSAPrivateKey: @unchecked Sendable {
    let key: OpaquePointer

    /// Parses a PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`) of at least 2048 bits.
    public init(pem: String) throws {
        let parsed: OpaquePointer? = pem.withRawBytes { bytes in
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        guard let parsed else {
            ERR_clear_error()
            throw CryptoError.invalidPrivateKey("not a PEM private key")
        }
        guard EVP_PKEY_get_base_id(parsed) == EVP_PKEY_RSA, EVP_PKEY_get_bits(parsed) >= 2048 else {
            EVP_PKEY_free(parsed)
            throw CryptoError.invalidPrivateKey("not an RSA key of at least 2048 bits")
        }
        key = parsed
    }

    /// A new key of `bits` bits from OpenSSL's CSPRNG.
    public init(generatingBits bits: Int = 2048) throws {
        guard bits >= 2048, let generated = approvald_generate_rsa_key(UInt32(bits)) else {
            throw CryptoError.library("RSA key generation: \(CryptoError.drainOpenSSLErrors())")
        }
        key = generated
    }

    deinit { EVP_PKEY_free(key) }

    /// The key as PKCS#8 PEM.
    public var pem: String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 else { return "" }
        return readAll(bio)
    }

    /// The public modulus and exponent, big-endian without leading zeros: a JWK's `n` and `e`.
    public var publicNumbers: (modulus: [UInt8], exponent: [UInt8]) {
        func number(_ name: String) -> [UInt8] {
            var value: OpaquePointer? = nil
            guard EVP_PKEY_get_bn_param(key, name, &value) == 1, let value else { return [] }
            defer { BN_free(value) }
            var bytes = [UInt8](repeating: 0, count: Int(approvald_BN_num_bytes(value)))
            _ = bytes.withUnsafeMutableBufferPointer { BN_bn2bin(value, $0.baseAddress) }
            return bytes
        }
        return (number("n"), number("e"))
    }

    /// The RS256 signature of `message`.
    public func signatureRS256<Message: ContiguousBytesView>(for message: Message) throws -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { throw CryptoError.library("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, EVP_sha256(), nil, key) == 1 else {
            throw CryptoError.library(CryptoError.drainOpenSSLErrors())
        }
        var signature = [UInt8](repeating: 0, count: Int(EVP_PKEY_get_size(key)))
        var length = signature.count
        let result = message.withRawBytes { bytes in
            signature.withUnsafeMutableBufferPointer { output in
                EVP_DigestSign(
                    context, output.baseAddress, &length, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    bytes.count)
            }
        }
        guard result == 1 else { throw CryptoError.library(CryptoError.drainOpenSSLErrors()) }
        return Array(signature.prefix(length))
    }
}

/// An RSA public key, such as another issuer's JWK: verifies RS256 signatures.
public final class RSAPublicKey: @unchecked Sendable {
    let key: OpaquePointer

    /// The key of modulus `modulus` and exponent `exponent` (big-endian, a JWK's `n` and `e`), of 2048 bits or more.
    public init(modulus: [UInt8], exponent: [UInt8]) throws {
        guard (1...1024).contains(modulus.count), (1...8).contains(exponent.count),
            let built = approvald_rsa_public_key(modulus, modulus.count, exponent, exponent.count)
        else {
            ERR_clear_error()
            throw CryptoError.invalidPublicKey("not an RSA modulus and exponent")
        }
        guard EVP_PKEY_get_bits(built) >= 2048 else {
            EVP_PKEY_free(built)
            throw CryptoError.invalidPublicKey("an RSA key of fewer than 2048 bits")
        }
        key = built
    }

    deinit { EVP_PKEY_free(key) }

    /// Whether `signature` is this key's RS256 signature of `message`.
    public func isValidRS256Signature<Message: ContiguousBytesView>(_ signature: [UInt8], for message: Message) -> Bool
    {
        guard signature.count == Int(EVP_PKEY_get_size(key)) else { return false }
        return verifySHA256Signature(signature, of: message, by: key)
    }
}
