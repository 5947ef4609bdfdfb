// `[oidc]`: approvald as an OpenID provider (API.md, "OpenID Connect"). Read and checked here; its keys are loaded,
// or a development key made, when the broker starts.
import Core
import Foundation
import OIDC

extension Configuration {
    mutating func readOIDC(_ section: ConfigReader) throws {
        let keys = try section.tables("signing_keys") ?? []
        let clients = try section.tables("clients") ?? []
        guard let issuer = try section.string("issuer") else {
            guard keys.isEmpty, clients.isEmpty else { throw ConfigError("oidc.issuer: required with [oidc]") }
            try section.rejectUnknownKeys()
            return
        }
        guard let parsed = URLComponents(string: issuer), ["http", "https"].contains(parsed.scheme),
            parsed.host?.isEmpty == false, parsed.query == nil, parsed.fragment == nil, parsed.user == nil,
            !issuer.hasSuffix("/"), issuer.utf8.count <= 512
        else {
            throw ConfigError(
                "oidc.issuer: \"\(issuer)\" is not an http:// or https:// URL without a query, a fragment or a "
                    + "trailing slash, of at most 512 bytes")
        }
        let keyFiles = try keys.map { entry in
            guard let path = try entry.string("private_key") else {
                throw ConfigError("\(entry.keyPath("private_key")): required")
            }
            try entry.rejectUnknownKeys()
            return path
        }
        if keyFiles.isEmpty && redis != nil {
            throw ConfigError(
                "oidc.signing_keys: instances on a shared store must sign with the same keys: name at least one "
                    + "(without one, each instance would make its own development key)")
        }
        let settings = OIDCSettings(
            issuer: issuer, signingKeyFiles: keyFiles, clients: try clients.map(Self.oidcClient))
        var seen = Set<String>()
        for client in settings.clients where !seen.insert(client.clientID).inserted {
            throw ConfigError("oidc.clients: client_id \"\(client.clientID)\" is given twice")
        }
        try section.rejectUnknownKeys()
        oidc = settings
    }

    /// An https URL, or an http one on this machine (for development and tests), with a host.
    private static func isHTTPSOrLoopback(_ url: URLComponents) -> Bool {
        guard let host = url.host, !host.isEmpty else { return false }
        return url.scheme == "https"
            || (url.scheme == "http" && ["127.0.0.1", "localhost", "[::1]", "::1"].contains(host))
    }

    private static func oidcClient(_ entry: ConfigReader) throws -> OIDCClient {
        guard let clientID = try entry.string("client_id"), !clientID.isEmpty, clientID.utf8.count <= 256 else {
            throw ConfigError("\(entry.keyPath("client_id")): required, at most 256 bytes")
        }
        let secret = try entry.string("client_secret")
        if let secret, secret.utf8.count < 32 {
            throw ConfigError("\(entry.keyPath("client_secret")): at least 32 bytes are required")
        }
        let redirectURIs = try entry.strings("redirect_uris") ?? []
        guard !redirectURIs.isEmpty else {
            throw ConfigError("\(entry.keyPath("redirect_uris")): at least one redirect URI is required")
        }
        for uri in redirectURIs {
            guard let parsed = URLComponents(string: uri), isHTTPSOrLoopback(parsed), parsed.fragment == nil else {
                throw ConfigError(
                    "\(entry.keyPath("redirect_uris")): \"\(uri)\" is not an https:// URL (or http:// on this "
                        + "machine) without a fragment")
            }
        }
        guard let tenant = try entry.string("tenant"), (try? Validate.tenantID(tenant)) != nil else {
            throw ConfigError("\(entry.keyPath("tenant")): a tenant id (1-64 of a-z, 0-9 and -) is required")
        }
        let hintIssuer = try entry.string("hint_issuer")
        let jwksURL = try entry.string("hint_jwks_url")
        let jwksFile = try entry.string("hint_jwks_file")
        let userClaim = try entry.string("user_claim")
        var hintTrust: HintTrust?
        if hintIssuer != nil || jwksURL != nil || jwksFile != nil || userClaim != nil {
            guard let hintIssuer, let userClaim, !userClaim.isEmpty else {
                throw ConfigError("\(entry.path): hint_issuer and user_claim are required for id_token_hint trust")
            }
            switch (jwksURL, jwksFile) {
            case (let url?, nil):
                guard let parsed = URLComponents(string: url), isHTTPSOrLoopback(parsed) else {
                    throw ConfigError(
                        "\(entry.keyPath("hint_jwks_url")): an https:// URL (or http:// on this machine) is required")
                }
                hintTrust = HintTrust(issuer: hintIssuer, keys: .url(url), userClaim: userClaim)
            case (nil, let file?):
                hintTrust = HintTrust(issuer: hintIssuer, keys: .file(file), userClaim: userClaim)
            default:
                throw ConfigError("\(entry.path): one of hint_jwks_url and hint_jwks_file is required")
            }
        }
        try entry.rejectUnknownKeys()
        return OIDCClient(
            clientID: clientID, clientSecret: secret.map { Array($0.utf8) }, redirectURIs: redirectURIs,
            tenant: tenant, hintTrust: hintTrust)
    }

    /// `[oidc]` as `--check-config` prints it, the client secrets masked.
    func writeOIDC(into toml: inout TOMLWriter) {
        guard let oidc else { return }
        toml.table("oidc")
        toml.key("issuer", .string(oidc.issuer))
        for file in oidc.signingKeyFiles {
            toml.arrayTable("oidc.signing_keys")
            toml.key("private_key", .string(file))
        }
        for client in oidc.clients {
            toml.arrayTable("oidc.clients")
            toml.key("client_id", .string(client.clientID))
            toml.key("client_secret", client.clientSecret.map { _ in .string(Self.maskedSecret) })
            toml.key("redirect_uris", .strings(client.redirectURIs))
            toml.key("tenant", .string(client.tenant))
            if let trust = client.hintTrust {
                toml.key("hint_issuer", .string(trust.issuer))
                switch trust.keys {
                case .url(let url): toml.key("hint_jwks_url", .string(url))
                case .file(let file): toml.key("hint_jwks_file", .string(file))
                }
                toml.key("user_claim", .string(trust.userClaim))
            }
        }
    }
}
