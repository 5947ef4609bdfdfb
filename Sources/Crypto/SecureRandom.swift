// Bytes and numbers from OpenSSL's CSPRNG.
import COpenSSL

/// A cryptographically secure random source, usable wherever Swift takes a `RandomNumberGenerator`.
public struct SecureRandom: RandomNumberGenerator, Sendable {
    public init() {}

    /// `count` bytes from the CSPRNG. A CSPRNG that cannot produce bytes is not something to carry on from.
    public static func bytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return bytes }
        let status = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(status == 1, "RAND_bytes failed: \(CryptoError.drainOpenSSLErrors())")
        return bytes
    }

    public mutating func next() -> UInt64 {
        var value: UInt64 = 0
        let status = withUnsafeMutableBytes(of: &value) {
            RAND_bytes($0.baseAddress?.assumingMemoryBound(to: UInt8.self), 8)
        }
        precondition(status == 1, "RAND_bytes failed: \(CryptoError.drainOpenSSLErrors())")
        return value
    }
}

/// The CSPRNG through a buffer: one `RAND_bytes` call per 512 numbers instead of one per number (a call costs
/// about a microsecond, and a challenge takes several numbers). A class, so that copies draw from the same buffer
/// and never repeat each other; not thread-safe: it belongs to one thread at a time, as the Core does.
public final class BufferedSecureRandom: RandomNumberGenerator {
    private var buffer = [UInt64](repeating: 0, count: 512)
    private var used = 512

    public init() {}

    public func next() -> UInt64 {
        if used == buffer.count {
            let status = buffer.withUnsafeMutableBytes {
                RAND_bytes($0.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32($0.count))
            }
            precondition(status == 1, "RAND_bytes failed: \(CryptoError.drainOpenSSLErrors())")
            used = 0
        }
        defer { used += 1 }
        return buffer[used]
    }
}
