// `approvald dev-cert`: a self-signed certificate for local TLS.
import ArgumentParser
import Crypto
import Foundation

struct DevCert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-cert",
        abstract: "Write a self-signed P-256 certificate and key for local TLS (localhost, 127.0.0.1, ::1).",
        discussion: "For development only: clients must be told to trust it (curl --cacert CERT).")

    @Option(name: .long, help: "Where to write the certificate (PEM).")
    var certificate = "data/tls/cert.pem"

    @Option(name: .long, help: "Where to write the private key (PKCS#8 PEM, mode 0600).")
    var privateKey = "data/tls/key.pem"

    @Option(name: .long, help: "Extra DNS names for the certificate.")
    var dnsName: [String] = []

    @Option(name: .long, help: "Days of validity.")
    var days = 365

    @Flag(name: .long, help: "Replace existing files.")
    var force = false

    func run() throws {
        let files = FileManager.default
        if !force, let existing = [certificate, privateKey].first(where: { files.fileExists(atPath: $0) }) {
            throw ValidationError("\(existing) exists; pass --force to replace it")
        }
        let pair = try SelfSignedCertificate.generate(dnsNames: ["localhost"] + dnsName, days: days)
        for path in [certificate, privateKey] {
            try files.createDirectory(
                at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        }
        try Data(pair.certificatePEM.utf8).write(to: URL(fileURLWithPath: certificate))
        guard
            files.createFile(
                atPath: privateKey, contents: Data(pair.privateKeyPEM.utf8), attributes: [.posixPermissions: 0o600])
        else { throw ValidationError("cannot write \(privateKey)") }
        print("wrote \(certificate) and \(privateKey)")
    }
}
