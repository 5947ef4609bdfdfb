// Keycloak's CIBA HTTP authentication channel (API.md, "Keycloak CIBA authentication channel"): Keycloak POSTs an
// authentication request with a bearer token it signed for that request, and takes the result at its callback
// endpoint with the same token. Its side of the wire, from its sources: `HttpAuthenticationChannelProvider` (the
// request and the token: `iss` the realm, `jti` the request's id, `azp` the client, `aud` the realm, `exp`, `sub`,
// signed with the realm's key and `kid`), `AuthenticationChannelRequest` (the body), and
// `BackchannelAuthenticationCallbackEndpoint` (the callback: 200, or 401 without a token, 403 for a token that is
// invalid, used or no longer pending).
import JSONText

/// A tenant's channel (`[tenants.T.ciba]`): where Keycloak takes results, and how its tokens are trusted.
public struct CIBASettings: Sendable, Equatable {
    /// Keycloak's `…/realms/<realm>/protocol/openid-connect/ext/ciba/auth/callback`.
    public var callbackURL: String
    /// The realm's issuer (`https://<keycloak>/realms/<realm>`): every token's `iss`.
    public var issuer: String
    public var keys: IssuerKeySource

    public init(callbackURL: String, issuer: String, keys: IssuerKeySource) {
        self.callbackURL = callbackURL
        self.issuer = issuer
        self.keys = keys
    }
}

/// The bearer token of one authentication request, verified.
public struct CIBAToken: Sendable, Equatable {
    /// The token as Keycloak sent it: the callback carries it back.
    public let raw: String
    /// `jti`: the request's id at Keycloak, and so its idempotency key here.
    public let id: String
    /// `azp`: the client that asked for the sign-in, if named.
    public let clientID: String?
    /// `exp`, Unix seconds.
    public let expiresAt: Int64

    /// How many bytes a token may have: Keycloak's are well under 2 KiB.
    public static let maximumLength = 8192

    /// Checks `token`'s signature against `keys`, its `iss` against `issuer` and its `exp` against `now` (Unix
    /// seconds); it must carry a `jti`.
    public static func verify(
        _ token: String, issuer: String, keys: IssuerKeys, now: Int64
    ) throws(JWTRefusal) -> CIBAToken {
        guard token.utf8.count <= maximumLength else { throw .invalid("the bearer token is too long") }
        let claims = try keys.verifiedClaims(of: token, named: "the bearer token")
        guard claims["iss"]?.string == issuer else { throw .invalid("the bearer token is from another issuer") }
        guard let expiresAt = claims["exp"]?.int.map(Int64.init) else { throw .invalid("the bearer token has no exp") }
        guard expiresAt > now else { throw .invalid("the bearer token has expired") }
        guard let id = claims["jti"]?.string, !id.isEmpty else { throw .invalid("the bearer token has no jti") }
        return CIBAToken(raw: token, id: id, clientID: claims["azp"]?.string, expiresAt: expiresAt)
    }
}

/// The authentication request's body (Keycloak's `AuthenticationChannelRequest`); members it may add are ignored.
public struct CIBARequest: Sendable, Equatable {
    /// The user, as Keycloak resolved the relying party's hint.
    public let loginHint: String
    /// The `binding_message`: the number the relying party shows, which the user picks on the phone.
    public let number: Int
    public let scope: String?
    public let acrValues: String?
    public let consentRequired: Bool

    /// Reads the body; the error says which member is wrong.
    public init(json body: [UInt8]) throws(CIBARequestError) {
        guard let json = JSONValue.parse(body), case .object = json else {
            throw CIBARequestError("the body is not a JSON object")
        }
        func optionalString(_ name: String) throws(CIBARequestError) -> String? {
            switch json[name] {
            case nil, .null?: return nil
            case .string(let text)?:
                guard text.utf8.count <= 1024 else { throw CIBARequestError("\(name) is longer than 1024 bytes") }
                return text
            default: throw CIBARequestError("\(name) must be a string")
            }
        }
        guard let loginHint = try optionalString("login_hint"), !loginHint.isEmpty else {
            throw CIBARequestError("login_hint is required")
        }
        guard let message = try optionalString("binding_message"), (1...2).contains(message.utf8.count),
            message.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }), let number = Int(message)
        else { throw CIBARequestError("binding_message must be the number to match: one or two digits") }
        switch json["is_consent_required"] {
        case nil, .null?: consentRequired = false
        case .bool(let value)?: consentRequired = value
        default: throw CIBARequestError("is_consent_required must be a boolean")
        }
        self.loginHint = loginHint
        self.number = number
        scope = try optionalString("scope")
        acrValues = try optionalString("acr_values")
    }
}

public struct CIBARequestError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// What the callback tells Keycloak.
public enum CIBAStatus: String, Sendable, CaseIterable {
    case succeed = "SUCCEED"
    case unauthorized = "UNAUTHORIZED"
    case cancelled = "CANCELLED"

    /// The callback's body.
    public var callbackBody: String { #"{"status":"\#(rawValue)"}"# }
}
