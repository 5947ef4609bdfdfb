// RSA private keys for RS256 (RSASSA-PKCS1-v1_5 with SHA-256), such as a Google service account's, which signs the
// assertion exchanged for an FCM access token.
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

    deinit { EVP_PKEY_free(key) }

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
