// approvald as an OpenID provider (API.md, "OpenID Connect"): its discovery document and its signing keys' JWKS,
// both fixed for the life of the process and written once.
import Foundation
import HTTP
import OIDC

/// The provider's endpoints. `@unchecked Sendable`: made before the loop runs, then used on its thread only.
public final class OIDCProvider: @unchecked Sendable {
    public let settings: OIDCSettings
    /// The first signs; all are published.
    let keys: [OIDCSigningKey]
    private let discovery: HTTPResponse
    private let keySet: HTTPResponse

    /// Relying parties fetch both often and cache them; a key rotation is seen within this many seconds.
    static let cacheSeconds = 300

    public init(settings: OIDCSettings, keys: [OIDCSigningKey]) {
        precondition(!keys.isEmpty, "a provider signs with at least one key")
        self.settings = settings
        self.keys = keys
        func json(_ text: String) -> HTTPResponse {
            HTTPResponse(
                status: 200,
                headers: [
                    ("content-type", "application/json"), ("cache-control", "public, max-age=\(Self.cacheSeconds)"),
                    ("access-control-allow-origin", "*"),
                ], body: Array(text.utf8))
        }
        discovery = json(Discovery.document(issuer: settings.issuer, algorithms: keys.map(\.algorithm)))
        keySet = json(OIDCSigningKey.keySet(keys))
    }

    /// Answers the provider's routes; false for any other path.
    func handle(_ request: HTTPRequest, _ responder: HTTPResponder) -> Bool {
        let response: HTTPResponse
        switch request.pathOnly {
        case Discovery.configurationPath: response = discovery
        case Discovery.jwksPath: response = keySet
        default: return false
        }
        guard request.method == "GET" else {
            responder.respond(Problem.methodNotAllowed("\(request.pathOnly) takes GET", allow: ["GET"]).response)
            return true
        }
        responder.respond(response)
        return true
    }
}
