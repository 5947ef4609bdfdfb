// The token request (RFC 6749 §4.1.3, §2.3.1; RFC 7636 §4.5): the authorization code grant, its client
// authenticated by `client_secret_basic` or `client_secret_post` (a public client by none), each parameter at most
// once. Refusals are RFC 6749 §5.2's.
import Crypto
import Foundation
import JSONText

public struct TokenRequest: Sendable, Equatable {
    public let client: OIDCClient
    public let code: String
    public let redirectURI: String
    public let codeVerifier: String?
}

/// A refused token request: its status (400, or 401 for the client's authentication), its error and description.
public struct TokenRefusal: Error, Sendable, Equatable {
    public let status: Int
    public let error: String
    public let description: String
    /// Whether the client tried HTTP Basic: a 401 then names the scheme (`WWW-Authenticate: Basic`).
    public let basic: Bool

    init(_ error: String, _ description: String, status: Int = 400, basic: Bool = false) {
        self.status = status
        self.error = error
        self.description = description
        self.basic = basic
    }

    public static func invalidRequest(_ description: String) -> TokenRefusal {
        TokenRefusal("invalid_request", description)
    }

    /// The code is not one this client may redeem (RFC 6749 §5.2).
    public static func invalidGrant(_ description: String) -> TokenRefusal {
        TokenRefusal("invalid_grant", description)
    }

    /// The JSON body.
    public var body: String {
        JSONWriter.object { body in
            body.string("error", error)
            body.string("error_description", description)
        }
    }
}

extension TokenRequest {
    static let known: Set<String> = [
        "grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret",
    ]

    /// Reads the form's parameters (decoded) and the `Authorization` header for a client of `settings`.
    public static func parse(
        form: [(name: String, value: String)], authorization: String?, settings: OIDCSettings
    ) throws(TokenRefusal) -> TokenRequest {
        var values: [String: String] = [:]
        for (name, value) in form where known.contains(name) {
            guard values.updateValue(value, forKey: name) == nil else {
                throw TokenRefusal("invalid_request", "\(name) is given more than once")
            }
            guard value.utf8.count <= 4_096 else { throw TokenRefusal("invalid_request", "\(name) is too long") }
        }
        let client = try authenticate(values, authorization: authorization, settings: settings)
        guard let grantType = values["grant_type"] else {
            throw TokenRefusal("invalid_request", "grant_type is required")
        }
        guard grantType == "authorization_code" else {
            throw TokenRefusal("unsupported_grant_type", "only authorization_code is supported")
        }
        guard let code = values["code"], !code.isEmpty else {
            throw TokenRefusal("invalid_request", "code is required")
        }
        guard let redirectURI = values["redirect_uri"] else {
            throw TokenRefusal("invalid_request", "redirect_uri is required")
        }
        let verifier = values["code_verifier"]
        if let verifier, !isCodeVerifier(verifier) {
            throw TokenRefusal("invalid_request", "code_verifier must be 43-128 unreserved characters")
        }
        return TokenRequest(client: client, code: code, redirectURI: redirectURI, codeVerifier: verifier)
    }

    /// The client, authenticated by one method: HTTP Basic, the form's secret, or none for a public client.
    static func authenticate(
        _ values: [String: String], authorization: String?, settings: OIDCSettings
    ) throws(TokenRefusal) -> OIDCClient {
        let basic = authorization.flatMap(basicCredentials)
        if authorization != nil && basic == nil {
            throw TokenRefusal("invalid_client", "the Authorization header is not HTTP Basic", status: 401, basic: true)
        }
        if basic != nil && values["client_secret"] != nil {
            throw TokenRefusal("invalid_request", "the client authenticates one way, not two")
        }
        guard let clientID = basic?.id ?? values["client_id"] else {
            throw TokenRefusal("invalid_client", "no client is named", status: 401, basic: basic != nil)
        }
        if let basic, let formID = values["client_id"], formID != basic.id {
            throw TokenRefusal("invalid_request", "client_id differs from the authenticated client")
        }
        let offered = basic?.secret ?? values["client_secret"]
        guard let client = settings.client(clientID) else {
            throw TokenRefusal("invalid_client", "unknown client", status: 401, basic: basic != nil)
        }
        switch (client.clientSecret, offered) {
        case (nil, nil): return client
        case (let secret?, let offered?) where constantTimeEquals(secret, Array(offered.utf8)): return client
        default:
            throw TokenRefusal("invalid_client", "the client did not authenticate", status: 401, basic: basic != nil)
        }
    }

    /// `Basic base64(form-urlencoded id ":" form-urlencoded secret)` (RFC 6749 §2.3.1); nil for anything else.
    static func basicCredentials(_ header: String) -> (id: String, secret: String)? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let decoded = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
            let text = String(data: decoded, encoding: .utf8), let colon = text.firstIndex(of: ":")
        else { return nil }
        guard let id = FormEncoding.decoded(text[..<colon]),
            let secret = FormEncoding.decoded(text[text.index(after: colon)...])
        else { return nil }
        return (id, secret)
    }

    /// 43–128 of `A-Z a-z 0-9 - . _ ~` (RFC 7636 §4.1).
    static func isCodeVerifier(_ text: String) -> Bool {
        (43...128).contains(text.utf8.count)
            && text.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                    UInt8(ascii: "~"):
                    true
                default: false
                }
            }
    }
}
