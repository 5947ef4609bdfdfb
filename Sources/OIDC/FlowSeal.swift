// What of a sign-in must outlive the request that started it, without living in one instance's memory: the flow's
// parameters in the browser's cookie, and what a code stands for. Sealed with AES-256-GCM under a key derived from
// the first signing key, so that every instance given the same keys opens what another sealed, and no setting is
// added; each kind of box is bound to its purpose, so that a cookie is never taken for a code.
import Crypto

public struct FlowSeal: Sendable {
    /// What a box is for: its associated data.
    public enum Purpose: String, Sendable {
        /// The flow, in the browser's cookie.
        case flow = "approvald-oidc-flow-v1"
        /// An authorization code.
        case code = "approvald-oidc-code-v1"
        /// An access token, for the userinfo endpoint.
        case accessToken = "approvald-oidc-access-v1"
    }

    private let key: [UInt8]

    /// The seal of the provider whose first key is `signingKey`.
    public init(signingKey: OIDCSigningKey) {
        key = HMACSHA256.authenticationCode(key: signingKey.secretMaterial, message: Array("approvald-oidc-seal".utf8))
    }

    /// `plaintext` sealed for `purpose`, as base64url.
    public func seal(_ plaintext: String, for purpose: Purpose) -> String {
        // AES-GCM under a 32-byte key fails only if OpenSSL cannot allocate a context.
        // swift-format-ignore: NeverUseForceTry
        let sealed = try! AESGCM.seal(Array(plaintext.utf8), key: key, associatedData: Array(purpose.rawValue.utf8))
        return Base64URL.encode(sealed)
    }

    /// What `seal` sealed for `purpose` under this key; nil for anything else (altered, another key or purpose,
    /// not base64url, not UTF-8).
    public func open(_ text: String, for purpose: Purpose) -> String? {
        guard text.utf8.count <= 16_384, let sealed = Base64URL.decode(text),
            let plaintext = AESGCM.open(sealed, key: key, associatedData: Array(purpose.rawValue.utf8))
        else { return nil }
        return String(validating: plaintext, as: UTF8.self)
    }
}
