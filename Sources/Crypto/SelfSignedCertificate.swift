// Self-signed X.509 certificates: on a new P-256 key, for local TLS (`approvald dev-cert`) and tests; and of a given
// signing key, which an OpenID provider publishes in its JWKs' `x5c`.
import COpenSSL

public struct SelfSignedCertificate: Sendable {
    /// The certificate, PEM encoded.
    public let certificatePEM: String
    /// Its private key, PKCS#8 PEM.
    public let privateKeyPEM: String

    /// A certificate for `dnsNames` and `ipAddresses`, valid from now for `days` days.
    public static func generate(
        commonName: String = "approvald development",
        dnsNames: [String] = ["localhost"],
        ipAddresses: [String] = ["127.0.0.1", "::1"],
        days: Int = 365
    ) throws -> SelfSignedCertificate {
        let key = try P256PrivateKey()
        let alternativeNames = (dnsNames.map { "DNS:\($0)" } + ipAddresses.map { "IP:\($0)" }).joined(separator: ",")
        var serial = SecureRandom.bytes(16)
        serial[0] &= 0x7f  // a positive serial number
        let certificate = try make(
            key: key.key, commonName: commonName, serial: serial,
            validity: { certificate in
                X509_gmtime_adj(X509_getm_notBefore(certificate), -60) != nil
                    && X509_gmtime_adj(X509_getm_notAfter(certificate), days * 86_400) != nil
            },
            extensions: [
                (NID_subject_alt_name, alternativeNames), (NID_basic_constraints, "critical,CA:FALSE"),
                (NID_key_usage, "critical,digitalSignature"), (NID_ext_key_usage, "serverAuth"),
            ])
        defer { X509_free(certificate) }
        guard let bio = BIO_new(BIO_s_mem()) else { throw CryptoError.library("BIO_new") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_X509(bio, certificate) == 1 else {
            throw CryptoError.library("PEM_write_bio_X509: \(CryptoError.drainOpenSSLErrors())")
        }
        return SelfSignedCertificate(certificatePEM: readAll(bio), privateKeyPEM: key.pem)
    }

    /// A certificate of `key` (DER) for a JWK's `x5c`: its serial number taken from the key and its validity fixed
    /// (2020 to 2050), so that an RSA key's, whose signatures are deterministic, is the same on every instance.
    public static func certificateDER(of key: RSAPrivateKey, commonName: String) throws -> [UInt8] {
        try certificateDER(key.key, commonName: commonName)
    }

    /// The same for a P-256 key (whose ECDSA signature, and so the certificate's bytes, differ each time).
    public static func certificateDER(of key: P256PrivateKey, commonName: String) throws -> [UInt8] {
        try certificateDER(key.key, commonName: commonName)
    }

    private static func certificateDER(_ key: OpaquePointer, commonName: String) throws -> [UInt8] {
        var publicKey: UnsafeMutablePointer<UInt8>? = nil
        let length = i2d_PUBKEY(key, &publicKey)
        guard length > 0, let publicKey else { throw CryptoError.library("i2d_PUBKEY") }
        var serial = SHA256.hash(Array(UnsafeBufferPointer(start: publicKey, count: Int(length)))).prefix(16).map {
            $0
        }
        approvald_OPENSSL_free(publicKey)
        serial[0] &= 0x7f
        let certificate = try make(
            key: key, commonName: commonName, serial: serial,
            validity: { certificate in
                ASN1_TIME_set_string(X509_getm_notBefore(certificate), "20200101000000Z") == 1
                    && ASN1_TIME_set_string(X509_getm_notAfter(certificate), "20500101000000Z") == 1
            },
            extensions: [(NID_basic_constraints, "critical,CA:FALSE"), (NID_key_usage, "critical,digitalSignature")])
        defer { X509_free(certificate) }
        var output: UnsafeMutablePointer<UInt8>? = nil
        let count = i2d_X509(certificate, &output)
        guard count > 0, let output else { throw CryptoError.library("i2d_X509") }
        defer { approvald_OPENSSL_free(output) }
        return Array(UnsafeBufferPointer(start: output, count: Int(count)))
    }

    /// A signed X509 (the caller frees it): version 3, `serial`, the subject and issuer `commonName`, `validity`
    /// set by the caller, the extensions, signed with SHA-256 by `key`, whose public half it certifies.
    private static func make(
        key: OpaquePointer, commonName: String, serial: [UInt8], validity: (OpaquePointer) -> Bool,
        extensions: [(Int32, String)]
    ) throws -> OpaquePointer {
        guard let certificate = X509_new() else { throw CryptoError.library("X509_new") }
        var made = false
        defer { if !made { X509_free(certificate) } }
        func check(_ ok: Bool, _ step: String) throws {
            if !ok { throw CryptoError.library("\(step): \(CryptoError.drainOpenSSLErrors())") }
        }
        try check(X509_set_version(certificate, 2) == 1, "X509_set_version")
        let serialNumber = serial.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32($0.count), nil) }
        defer { BN_free(serialNumber) }
        try check(BN_to_ASN1_INTEGER(serialNumber, X509_get_serialNumber(certificate)) != nil, "serial number")
        try check(validity(certificate), "validity")
        try check(X509_set_pubkey(certificate, key) == 1, "X509_set_pubkey")
        let name = X509_get_subject_name(certificate)
        try check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, commonName, -1, -1, 0) == 1, "subject CN")
        try check(X509_set_issuer_name(certificate, name) == 1, "issuer")
        for (nid, value) in extensions {
            var context = X509V3_CTX()
            X509V3_set_ctx(&context, certificate, certificate, nil, nil, 0)
            guard let extensionObject = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                throw CryptoError.library("extension \(value): \(CryptoError.drainOpenSSLErrors())")
            }
            defer { X509_EXTENSION_free(extensionObject) }
            try check(X509_add_ext(certificate, extensionObject, -1) == 1, "X509_add_ext")
        }
        try check(X509_sign(certificate, key, EVP_sha256()) > 0, "X509_sign")
        made = true
        return certificate
    }
}
