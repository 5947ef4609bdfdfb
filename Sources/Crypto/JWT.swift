// JSON Web Tokens (RFC 7519) signed with ES256 or RS256 (RFC 7518 §3): APNs provider tokens, service-account
// assertions.

public enum JWT {
    /// `header.claims.signature`, each part base64url without padding; `headerJSON` and `claimsJSON` are the JSON
    /// texts to sign, written by the caller. ES256 signatures are r‖s, 32 bytes each, not DER.
    public static func signES256(headerJSON: String, claimsJSON: String, key: P256PrivateKey) throws -> String {
        let input = Base64URL.encode(Array(headerJSON.utf8)) + "." + Base64URL.encode(Array(claimsJSON.utf8))
        guard let raw = rawECDSASignature(fromDER: try key.signature(for: input), size: 32) else {
            throw CryptoError.library("OpenSSL returned a malformed ECDSA signature")
        }
        return input + "." + Base64URL.encode(raw)
    }

    /// The same with RS256.
    public static func signRS256(headerJSON: String, claimsJSON: String, key: RSAPrivateKey) throws -> String {
        let input = Base64URL.encode(Array(headerJSON.utf8)) + "." + Base64URL.encode(Array(claimsJSON.utf8))
        return input + "." + Base64URL.encode(try key.signatureRS256(for: input))
    }
}

extension JWT {
    /// A compact JWS's parts, its signature not yet checked.
    public struct Unverified: Sendable {
        /// The header and the claims, as JSON text.
        public let headerJSON: String
        public let claimsJSON: String
        /// What the signature covers: `header.claims` as sent.
        let signingInput: String
        let signature: [UInt8]

        /// `token`'s three base64url parts; nil when it is not that shape or a part is not base64url.
        public init?(_ token: String) {
            let parts = token.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 3, let header = Base64URL.decode(String(parts[0])),
                let claims = Base64URL.decode(String(parts[1])), let signature = Base64URL.decode(String(parts[2])),
                let headerJSON = String(validating: header, as: UTF8.self),
                let claimsJSON = String(validating: claims, as: UTF8.self)
            else { return nil }
            self.headerJSON = headerJSON
            self.claimsJSON = claimsJSON
            signingInput = parts[0] + "." + parts[1]
            self.signature = signature
        }

        /// Whether it is signed with RS256 by `key`.
        public func isSignedRS256(by key: RSAPublicKey) -> Bool {
            key.isValidRS256Signature(signature, for: signingInput)
        }

        /// Whether it is signed with ES256 (r‖s) by `key`.
        public func isSignedES256(by key: P256PublicKey) -> Bool {
            guard let der = derECDSASignature(fromRaw: signature, size: 32) else { return false }
            return key.isValidSignature(der, for: signingInput)
        }
    }
}

/// r‖s, each `size` bytes, as an ECDSA-Sig-Value (DER); nil when it is not 2 × `size` bytes.
func derECDSASignature(fromRaw raw: [UInt8], size: Int) -> [UInt8]? {
    guard raw.count == 2 * size else { return nil }
    func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var value = Array(bytes.drop { $0 == 0 })
        if value.isEmpty { value = [0] }
        if value[0] & 0x80 != 0 { value.insert(0, at: 0) }
        return [0x02, UInt8(value.count)] + value
    }
    let body = integer(raw[..<size]) + integer(raw[size...])
    return [0x30, UInt8(body.count)] + body
}

/// An ECDSA-Sig-Value (`SEQUENCE { INTEGER r, INTEGER s }`, DER) as r‖s, each left-padded to `size` bytes; nil if
/// it is not exactly that structure or a value does not fit.
func rawECDSASignature(fromDER der: [UInt8], size: Int) -> [UInt8]? {
    var position = 0
    func length() -> Int? {
        guard position < der.count else { return nil }
        let first = Int(der[position])
        position += 1
        guard first & 0x80 != 0 else { return first }
        guard first == 0x81, position < der.count else { return nil }  // signatures are shorter than 256 bytes
        defer { position += 1 }
        return Int(der[position])
    }
    func integer() -> [UInt8]? {
        guard position < der.count, der[position] == 0x02 else { return nil }
        position += 1
        guard let count = length(), count > 0, position + count <= der.count else { return nil }
        var value = Array(der[position..<position + count])
        position += count
        while value.count > 1 && value[0] == 0 { value.removeFirst() }
        guard value.count <= size else { return nil }
        return [UInt8](repeating: 0, count: size - value.count) + value
    }
    guard der.first == 0x30 else { return nil }
    position = 1
    guard let total = length(), position + total == der.count, let r = integer(), let s = integer(),
        position == der.count
    else { return nil }
    return r + s
}
