// `[tenants.T.ciba]`: the tenant is Keycloak's CIBA HTTP authentication channel (API.md, "Keycloak CIBA
// authentication channel"): where its results go (Keycloak's callback endpoint) and how Keycloak's tokens are
// trusted (the realm's issuer, and its keys at a URL or in a file).
import Foundation
import OIDC

extension Configuration {
    /// The channel a tenant's table holds, nil when it has no `ciba` table.
    static func cibaChannel(_ tenant: ConfigReader) throws -> CIBASettings? {
        guard tenant.keys.contains("ciba") else { return nil }
        let section = try tenant.table("ciba")
        /// The http(s) URL at `key`, if given.
        func url(_ key: String) throws -> String? {
            guard let text = try section.string(key) else { return nil }
            guard let parsed = URLComponents(string: text), ["http", "https"].contains(parsed.scheme ?? ""),
                let host = parsed.host, !host.isEmpty, parsed.fragment == nil
            else { throw ConfigError("\(section.keyPath(key)): \"\(text)\" is not an http:// or https:// URL") }
            return text
        }
        func required(_ key: String) throws -> String {
            guard let text = try url(key) else { throw ConfigError("\(section.keyPath(key)): required") }
            return text
        }
        let callbackURL = try required("callback_url")
        let issuer = try required("issuer")
        let keys: IssuerKeySource
        switch (try url("jwks_url"), try section.string("jwks_file")) {
        case (let jwksURL?, nil): keys = .url(jwksURL)
        case (nil, let file?) where !file.isEmpty: keys = .file(file)
        default: throw ConfigError("\(section.path): one of jwks_url and jwks_file is required")
        }
        try section.rejectUnknownKeys()
        return CIBASettings(callbackURL: callbackURL, issuer: issuer, keys: keys)
    }

    /// `[tenants.T.ciba]` as `--check-config` prints it.
    func writeCIBA(of tenantID: String, into toml: inout TOMLWriter) {
        guard let channel = cibaChannels[tenantID] else { return }
        toml.table("tenants.\(tenantID).ciba")
        toml.key("callback_url", .string(channel.callbackURL))
        toml.key("issuer", .string(channel.issuer))
        switch channel.keys {
        case .url(let url): toml.key("jwks_url", .string(url))
        case .file(let file): toml.key("jwks_file", .string(file))
        }
    }
}
