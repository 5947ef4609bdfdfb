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
