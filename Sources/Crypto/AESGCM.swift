// AES-256-GCM (NIST SP 800-38D) with a 96-bit random nonce and a 128-bit tag: state that must travel through a
// browser or a client unread and unaltered (the OpenID provider's flow in its cookie and its codes).
import COpenSSL

public enum AESGCM {
    public static let keyByteCount = 32
    static let nonceByteCount = 12
    static let tagByteCount = 16

    /// nonce ‖ ciphertext ‖ tag of `plaintext` under `key` (32 bytes), bound to `associatedData`.
    public static func seal(_ plaintext: [UInt8], key: [UInt8], associatedData: [UInt8] = []) throws -> [UInt8] {
        precondition(key.count == keyByteCount, "an AES-256 key")
        let nonce = SecureRandom.bytes(nonceByteCount)
        guard let context = EVP_CIPHER_CTX_new() else { throw CryptoError.library("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + tagByteCount)
        var length: Int32 = 0
        var written = 0
        let ok =
            EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, key, nonce) == 1
            && (associatedData.isEmpty
                || EVP_EncryptUpdate(context, nil, &length, associatedData, Int32(associatedData.count)) == 1)
            && ciphertext.withUnsafeMutableBufferPointer { output in
                guard
                    plaintext.isEmpty
                        || EVP_EncryptUpdate(context, output.baseAddress, &length, plaintext, Int32(plaintext.count))
                            == 1
                else { return false }
                written = plaintext.isEmpty ? 0 : Int(length)
                guard EVP_EncryptFinal_ex(context, output.baseAddress! + written, &length) == 1 else { return false }
                written += Int(length)
                return EVP_CIPHER_CTX_ctrl(
                    context, EVP_CTRL_GCM_GET_TAG, Int32(tagByteCount), output.baseAddress! + written) == 1
            }
        guard ok, written == plaintext.count else { throw CryptoError.library(CryptoError.drainOpenSSLErrors()) }
        return nonce + ciphertext
    }

    /// The plaintext of what `seal` made under `key` with `associatedData`; nil when anything of it was altered,
    /// it was sealed under another key or for other associated data, or it is too short to be a sealed box.
    public static func open(_ sealed: [UInt8], key: [UInt8], associatedData: [UInt8] = []) -> [UInt8]? {
        precondition(key.count == keyByteCount, "an AES-256 key")
        guard sealed.count >= nonceByteCount + tagByteCount, let context = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(context) }
        let nonce = Array(sealed.prefix(nonceByteCount))
        var tag = Array(sealed.suffix(tagByteCount))
        let ciphertext = Array(sealed.dropFirst(nonceByteCount).dropLast(tagByteCount))
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count + 1)
        var length: Int32 = 0
        var read = 0
        let ok =
            EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, key, nonce) == 1
            && (associatedData.isEmpty
                || EVP_DecryptUpdate(context, nil, &length, associatedData, Int32(associatedData.count)) == 1)
            && plaintext.withUnsafeMutableBufferPointer { output in
                if !ciphertext.isEmpty {
                    guard
                        EVP_DecryptUpdate(context, output.baseAddress, &length, ciphertext, Int32(ciphertext.count))
                            == 1
                    else { return false }
                    read = Int(length)
                }
                guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(tagByteCount), &tag) == 1 else {
                    return false
                }
                // The tag is checked here: any altered byte fails.
                guard EVP_DecryptFinal_ex(context, output.baseAddress! + read, &length) == 1 else { return false }
                read += Int(length)
                return true
            }
        ERR_clear_error()
        return ok ? Array(plaintext.prefix(read)) : nil
    }
}
