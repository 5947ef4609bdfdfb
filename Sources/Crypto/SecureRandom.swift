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
