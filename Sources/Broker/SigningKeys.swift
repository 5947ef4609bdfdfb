// The OpenID provider's keys at start: its signing keys (the configured PEM files, or a development key kept in the
// data directory, made on first run as `make run` makes its TLS certificate), and the JWK Set files of the issuers
// whose tokens it takes (id_token_hints, Keycloak's CIBA tokens).
import Crypto
import Foundation
import Logging
import OIDC

extension Broker {
    /// The development key's file under the data directory.
    static let developmentKeyFile = "oidc-signing-key.pem"

    /// The keys of each issuer whose JWK Set is a file, by the name its source has in `sources`; `setting` names
    /// the file's setting in errors.
    static func issuerKeyFiles(
        _ sources: [String: IssuerKeySource], setting: (String) -> String
    ) throws -> [String: IssuerKeys] {
        var keys: [String: IssuerKeys] = [:]
        for (name, source) in sources {
            guard case .file(let path) = source else { continue }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigError("\(setting(name)): cannot read \(path)")
            }
            guard let set = IssuerKeys(jwkSet: String(decoding: data, as: UTF8.self)) else {
                throw ConfigError("\(setting(name)): \(path) is not a JWK Set with an RSA or P-256 signing key")
            }
            keys[name] = set
        }
        return keys
    }

    /// The keys `settings` names, in order; with none, the development key (RSA 2048, so that every profile works).
    static func signingKeys(
        _ settings: OIDCSettings, dataDirectory: String, logger: Logger
    ) throws -> [OIDCSigningKey] {
        let host = URLComponents(string: settings.issuer)?.host ?? "approvald"
        guard settings.signingKeyFiles.isEmpty else {
            return try settings.signingKeyFiles.map { path in
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw ConfigError("oidc.signing_keys: cannot read \(path)")
                }
                do {
                    return try OIDCSigningKey(pem: String(decoding: data, as: UTF8.self), certificateName: host)
                } catch {
                    throw ConfigError("oidc.signing_keys: \(path): \(error)")
                }
            }
        }
        let path = (dataDirectory as NSString).appendingPathComponent(developmentKeyFile)
        if let data = FileManager.default.contents(atPath: path) {
            do {
                return [try OIDCSigningKey(pem: String(decoding: data, as: UTF8.self), certificateName: host)]
            } catch {
                throw ConfigError("\(path), the development signing key: \(error)")
            }
        }
        let key = try RSAPrivateKey(generatingBits: 2048)
        try FileManager.default.createDirectory(
            atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        guard
            FileManager.default.createFile(
                atPath: path, contents: Data(key.pem.utf8), attributes: [.posixPermissions: 0o600])
        else { throw ConfigError("cannot write the development signing key to \(path)") }
        logger.warning(
            "made a development signing key for the OpenID provider; name [[oidc.signing_keys]] for anything real",
            metadata: ["path": "\(path)"])
        return [try OIDCSigningKey(rsa: key, certificateName: host)]
    }
}
