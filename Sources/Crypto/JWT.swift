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
