// Errors raised by the Crypto module, with OpenSSL's own explanation where it has one.
import COpenSSL

public enum CryptoError: Error, Equatable, CustomStringConvertible {
    /// The bytes are not a DER SubjectPublicKeyInfo of a P-256 public key.
    case invalidPublicKey(String)
    /// The bytes are not a P-256 private key (PKCS#8 DER or PEM).
    case invalidPrivateKey(String)
    /// OpenSSL failed where it should not (allocation, a broken library).
    case library(String)

    public var description: String {
        switch self {
        case .invalidPublicKey(let why): "invalid P-256 public key: \(why)"
        case .invalidPrivateKey(let why): "invalid P-256 private key: \(why)"
        case .library(let why): "OpenSSL failure: \(why)"
        }
    }

    /// Drains OpenSSL's thread-local error queue into one readable line.
    static func drainOpenSSLErrors() -> String {
        var buffer = [CChar](repeating: 0, count: 1024)
        guard approvald_drain_errors(&buffer, buffer.count) > 0 else { return "no detail" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
