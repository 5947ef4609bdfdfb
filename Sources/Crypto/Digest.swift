// SHA-256 and HMAC-SHA256 over libcrypto, and constant-time comparison of secrets.
import COpenSSL

public enum SHA256 {
    public static let byteCount = 32

    /// The SHA-256 digest of `bytes`.
    public static func hash<Bytes: ContiguousBytesView>(_ bytes: Bytes) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: byteCount)
        bytes.withRawBytes { input in
            digest.withUnsafeMutableBufferPointer { output in
                _ = COpenSSL.SHA256(
                    input.baseAddress?.assumingMemoryBound(to: UInt8.self), input.count, output.baseAddress)
            }
        }
        return digest
    }
}

public enum HMACSHA256 {
    /// HMAC-SHA256(key, message).
    public static func authenticationCode<Key: ContiguousBytesView, Message: ContiguousBytesView>(
        key: Key, message: Message
    ) -> [UInt8] {
        var mac = [UInt8](repeating: 0, count: SHA256.byteCount)
        var length: UInt32 = 0
        key.withRawBytes { keyBytes in
            message.withRawBytes { messageBytes in
                mac.withUnsafeMutableBufferPointer { output in
                    _ = HMAC(
                        EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                        messageBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), messageBytes.count,
                        output.baseAddress, &length)
                }
            }
        }
        precondition(length == SHA256.byteCount, "HMAC-SHA256 returned \(length) bytes")
        return mac
    }

    /// A key prepared once for many messages: SHA-256 states after absorbing `key ⊕ ipad` and `key ⊕ opad`, so
    /// each MAC costs two state copies and the hashing of the message (OpenSSL 3's one-shot `HMAC()` looks the
    /// algorithm up by name on every call, which costs more than hashing a small request).
    ///
    /// `@unchecked Sendable`: the prepared states are never written after `init`; each MAC works on copies.
    public final class Key: @unchecked Sendable {
        private let inner: OpaquePointer
        private let outer: OpaquePointer

        public init<Bytes: ContiguousBytesView>(_ key: Bytes) {
            var block = [UInt8](repeating: 0, count: 64)
            key.withRawBytes { bytes in
                if bytes.count > 64 {
                    let digest = SHA256.hash(Array(bytes))
                    block.replaceSubrange(0..<digest.count, with: digest)
                } else {
                    block.replaceSubrange(0..<bytes.count, with: bytes)
                }
            }
            func prepared(_ pad: UInt8) -> OpaquePointer {
                // swift-format-ignore: NeverForceUnwrap
                let context = EVP_MD_CTX_new()!
                let padded = block.map { $0 ^ pad }
                precondition(EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1, "SHA-256 unavailable")
                precondition(EVP_DigestUpdate(context, padded, padded.count) == 1, "SHA-256 update failed")
                return context
            }
            inner = prepared(0x36)
            outer = prepared(0x5c)
        }

        deinit {
            EVP_MD_CTX_free(inner)
            EVP_MD_CTX_free(outer)
        }

        /// HMAC-SHA256 of `message` under this key.
        public func authenticationCode<Message: ContiguousBytesView>(for message: Message) -> [UInt8] {
            // swift-format-ignore: NeverForceUnwrap
            let context = EVP_MD_CTX_new()!
            defer { EVP_MD_CTX_free(context) }
            var digest = [UInt8](repeating: 0, count: SHA256.byteCount)
            var length: UInt32 = 0
            EVP_MD_CTX_copy_ex(context, inner)
            message.withRawBytes { _ = EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
            EVP_DigestFinal_ex(context, &digest, &length)
            EVP_MD_CTX_copy_ex(context, outer)
            EVP_DigestUpdate(context, digest, digest.count)
            EVP_DigestFinal_ex(context, &digest, &length)
            return digest
        }

        /// Whether `code` is the HMAC of `message` under this key, compared in constant time.
        public func isValid<Message: ContiguousBytesView>(_ code: [UInt8], for message: Message) -> Bool {
            constantTimeEquals(code, authenticationCode(for: message))
        }
    }

    /// Whether `code` is the HMAC of `message` under `key`, compared in constant time.
    public static func isValid<Key: ContiguousBytesView, Message: ContiguousBytesView>(
        _ code: [UInt8], key: Key, message: Message
    ) -> Bool {
        constantTimeEquals(code, authenticationCode(key: key, message: message))
    }
}

/// Compares two byte strings in time that depends only on their lengths, never on where they differ.
public func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    if lhs.isEmpty { return true }
    return lhs.withUnsafeBytes { a in
        rhs.withUnsafeBytes { b in CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) == 0 }
    }
}

/// Lowercase hexadecimal, two digits a byte (MACs in headers).
public func lowercaseHex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    return String(unsafeUninitializedCapacity: bytes.count * 2) { out in
        for (index, byte) in bytes.enumerated() {
            out[2 * index] = digits[Int(byte >> 4)]
            out[2 * index + 1] = digits[Int(byte & 15)]
        }
        return bytes.count * 2
    }
}
