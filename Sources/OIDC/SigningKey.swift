// The OpenID provider's signing keys: each signs ID tokens (RS256 or ES256) and is published as a JWK (RFC 7517)
// with the certificate of it that `x5c` carries. Its `kid` is its RFC 7638 thumbprint, so that every instance given
// the same key names it alike.
import Crypto
import Foundation
import JSONText

public struct OIDCKeyError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// A private key that signs ID tokens, and its public JWK.
public struct OIDCSigningKey: Sendable {
    public enum Algorithm: String, Sendable, CaseIterable {
        case rs256 = "RS256"
        case es256 = "ES256"
    }

    private enum Key: Sendable {
        case rsa(RSAPrivateKey)
        case p256(P256PrivateKey)
    }

    public let algorithm: Algorithm
    /// The JWK thumbprint (RFC 7638, SHA-256, base64url): `kid` in the JWKS and in each token's header.
    public let keyID: String
    /// The public JWK as JSON: its numbers, `kid`, `use`, `alg` and `x5c`.
    public let publicJWK: String
    private let key: Key

    /// A PEM private key: RSA of 2048 bits or more (RS256), or P-256 (ES256). `certificateName` is the common name
    /// of the `x5c` certificate (the issuer's host).
    public init(pem: String, certificateName: String) throws(OIDCKeyError) {
        if let rsa = try? RSAPrivateKey(pem: pem) {
            try self.init(rsa: rsa, certificateName: certificateName)
        } else if let p256 = try? P256PrivateKey(pem: pem) {
            try self.init(p256: p256, certificateName: certificateName)
        } else {
            throw OIDCKeyError("not a PEM private key of RSA (2048 bits or more) or P-256")
        }
    }

    public init(rsa: RSAPrivateKey, certificateName: String) throws(OIDCKeyError) {
        let (modulus, exponent) = rsa.publicNumbers
        let members = [("e", Base64URL.encode(exponent)), ("kty", "RSA"), ("n", Base64URL.encode(modulus))]
        let certificate = try Self.certificate(named: certificateName) {
            try SelfSignedCertificate.certificateDER(of: rsa, commonName: $0)
        }
        self.init(key: .rsa(rsa), algorithm: .rs256, members: members, certificate: certificate)
    }

    public init(p256: P256PrivateKey, certificateName: String) throws(OIDCKeyError) {
        // The SPKI of a P-256 key ends with its uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = p256.spkiDER.suffix(65)
        let members = [
            ("crv", "P-256"), ("kty", "EC"), ("x", Base64URL.encode(Array(point.dropFirst().prefix(32)))),
            ("y", Base64URL.encode(Array(point.suffix(32)))),
        ]
        let certificate = try Self.certificate(named: certificateName) {
            try SelfSignedCertificate.certificateDER(of: p256, commonName: $0)
        }
        self.init(key: .p256(p256), algorithm: .es256, members: members, certificate: certificate)
    }

    /// The `x5c` certificate `make` makes for the common name, its failure as the key's.
    private static func certificate(
        named name: String, _ make: (String) throws -> [UInt8]
    ) throws(OIDCKeyError) -> [UInt8] {
        do {
            return try make(name)
        } catch {
            throw OIDCKeyError("cannot make the key's certificate: \(error)")
        }
    }

    /// `members`: the JWK's required members in lexicographic order, as RFC 7638 hashes them.
    private init(key: Key, algorithm: Algorithm, members: [(String, String)], certificate: [UInt8]) {
        self.key = key
        self.algorithm = algorithm
        let canonical = JSONWriter.object { jwk in
            for (name, value) in members { jwk.string(name, value) }
        }
        let keyID = Base64URL.encode(SHA256.hash(Array(canonical.utf8)))
        self.keyID = keyID
        publicJWK = JSONWriter.object { jwk in
            for (name, value) in members { jwk.string(name, value) }
            jwk.string("kid", keyID)
            jwk.string("use", "sig")
            jwk.string("alg", algorithm.rawValue)
            jwk.strings("x5c", [Data(certificate).base64EncodedString()])
        }
    }

    /// The private key's own bytes (its PKCS#8 PEM), from which keys for other purposes are derived.
    var secretMaterial: [UInt8] {
        switch key {
        case .rsa(let rsa): Array(rsa.pem.utf8)
        case .p256(let p256): Array(p256.pem.utf8)
        }
    }

    /// A compact JWS of `claimsJSON`, its header naming the algorithm and this key.
    public func sign(claimsJSON: String) throws -> String {
        let header = JSONWriter.object { header in
            header.string("alg", algorithm.rawValue)
            header.string("kid", keyID)
            header.string("typ", "JWT")
        }
        switch key {
        case .rsa(let rsa): return try JWT.signRS256(headerJSON: header, claimsJSON: claimsJSON, key: rsa)
        case .p256(let p256): return try JWT.signES256(headerJSON: header, claimsJSON: claimsJSON, key: p256)
        }
    }

    /// The JWK Set of `keys` (`GET /oidc/jwks`).
    public static func keySet(_ keys: [OIDCSigningKey]) -> String {
        JSONWriter.object { set in set.rawArray("keys", keys.map(\.publicJWK)) }
    }
}
