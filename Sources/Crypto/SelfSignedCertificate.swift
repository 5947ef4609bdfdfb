// Self-signed X.509 certificates on P-256, for local TLS (`approvald dev-cert`) and tests.
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
        guard let certificate = X509_new() else { throw CryptoError.library("X509_new") }
        defer { X509_free(certificate) }

        func check(_ ok: Bool, _ step: String) throws {
            if !ok { throw CryptoError.library("\(step): \(CryptoError.drainOpenSSLErrors())") }
        }
        try check(X509_set_version(certificate, 2) == 1, "X509_set_version")
        var serial = SecureRandom.bytes(16)
        serial[0] &= 0x7f  // a positive serial number
        let serialNumber = serial.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, 16, nil) }
        defer { BN_free(serialNumber) }
        try check(BN_to_ASN1_INTEGER(serialNumber, X509_get_serialNumber(certificate)) != nil, "serial number")
        try check(X509_gmtime_adj(X509_getm_notBefore(certificate), -60) != nil, "notBefore")
        try check(X509_gmtime_adj(X509_getm_notAfter(certificate), days * 86_400) != nil, "notAfter")
        try check(X509_set_pubkey(certificate, key.key) == 1, "X509_set_pubkey")

        let name = X509_get_subject_name(certificate)
        try check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, commonName, -1, -1, 0) == 1, "subject CN")
        try check(X509_set_issuer_name(certificate, name) == 1, "issuer")

        let alternativeNames = (dnsNames.map { "DNS:\($0)" } + ipAddresses.map { "IP:\($0)" }).joined(separator: ",")
        for (nid, value) in [
            (NID_subject_alt_name, alternativeNames), (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_key_usage, "critical,digitalSignature"), (NID_ext_key_usage, "serverAuth"),
        ] {
            var context = X509V3_CTX()
            X509V3_set_ctx(&context, certificate, certificate, nil, nil, 0)
            guard let extensionObject = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                throw CryptoError.library("extension \(value): \(CryptoError.drainOpenSSLErrors())")
            }
            defer { X509_EXTENSION_free(extensionObject) }
            try check(X509_add_ext(certificate, extensionObject, -1) == 1, "X509_add_ext")
        }
        try check(X509_sign(certificate, key.key, EVP_sha256()) > 0, "X509_sign")

        guard let bio = BIO_new(BIO_s_mem()) else { throw CryptoError.library("BIO_new") }
        defer { BIO_free(bio) }
        try check(PEM_write_bio_X509(bio, certificate) == 1, "PEM_write_bio_X509")
        return SelfSignedCertificate(certificatePEM: readAll(bio), privateKeyPEM: key.pem)
    }
}
