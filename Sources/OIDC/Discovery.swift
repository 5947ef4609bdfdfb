// OpenID Connect Discovery 1.0 §3: what the provider supports, at `/.well-known/openid-configuration` under the
// issuer. Every endpoint is the issuer's URL and a path of the broker's.
import JSONText

public enum Discovery {
    /// The endpoints' paths, relative to the issuer.
    public static let authorizationPath = "/oidc/authorize"
    public static let tokenPath = "/oidc/token"
    public static let userinfoPath = "/oidc/userinfo"
    public static let jwksPath = "/oidc/jwks"
    public static let configurationPath = "/.well-known/openid-configuration"

    /// The claims an ID token may carry.
    static let claims = [
        "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "preferred_username", "acr", "amr",
        "approvald_challenge_id",
    ]

    /// The provider's metadata for `issuer` (no trailing slash), whose keys sign with `algorithms`.
    public static func document(issuer: String, algorithms: [OIDCSigningKey.Algorithm]) -> String {
        var signing: [String] = []
        for algorithm in algorithms where !signing.contains(algorithm.rawValue) { signing.append(algorithm.rawValue) }
        return JSONWriter.object { document in
            document.string("issuer", issuer)
            document.string("authorization_endpoint", issuer + authorizationPath)
            document.string("token_endpoint", issuer + tokenPath)
            document.string("userinfo_endpoint", issuer + userinfoPath)
            document.string("jwks_uri", issuer + jwksPath)
            document.strings("response_types_supported", ["code", "id_token"])
            document.strings("response_modes_supported", ["query", "form_post"])
            document.strings("grant_types_supported", ["authorization_code", "implicit"])
            document.strings("subject_types_supported", ["public"])
            document.strings("id_token_signing_alg_values_supported", signing)
            document.strings("scopes_supported", ["openid", "profile"])
            document.strings(
                "token_endpoint_auth_methods_supported", ["client_secret_basic", "client_secret_post", "none"])
            document.strings("code_challenge_methods_supported", ["S256"])
            document.bool("claims_parameter_supported", true)
            document.strings("claims_supported", claims)
        }
    }
}
