// The device's key: where the private key lives is the key's business (a file here, the Secure Enclave on an
// iPhone); the SDK only asks for the public key and for signatures.
import Crypto

/// A P-256 key whose private half never leaves it.
public protocol DeviceKey: Sendable {
    /// The public key as a DER SubjectPublicKeyInfo.
    var publicKeySPKI: [UInt8] { get }
    /// An ECDSA-P256-SHA256 signature of `message`, DER-encoded.
    func signature(for message: [UInt8]) throws -> [UInt8]
}

/// A P-256 key held in memory (OpenSSL). Its PEM form is for an app that keeps it in a file of its own, as the
/// terminal authenticator does; an iPhone app keeps its key in the Secure Enclave instead.
public struct SoftwareDeviceKey: DeviceKey {
    private let key: P256PrivateKey

    /// A new key from the system's CSPRNG.
    public init() throws { key = try P256PrivateKey() }

    /// A key kept as PKCS#8 PEM.
    public init(pem: String) throws { key = try P256PrivateKey(pem: pem) }

    /// The private key as PKCS#8 PEM: whoever holds it is the device.
    public var pem: String { key.pem }
    public var publicKeySPKI: [UInt8] { key.spkiDER }

    public func signature(for message: [UInt8]) throws -> [UInt8] { try key.signature(for: message) }
}
