// approvald as an OpenID provider (API.md, "OpenID Connect"): its discovery document and its signing keys' JWKS,
// both fixed for the life of the process and written once, and the authorization endpoint, which checks each
// request and answers a refusal where the contract says: a page for what cannot go back to the client, else the
// client's redirect URI, by redirect or by form_post.
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
    private let pages = OIDCPages()

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
        case Discovery.authorizationPath:
            responder.respond(authorize(request))
            return true
        default: return false
        }
        guard request.method == "GET" else {
            responder.respond(Problem.methodNotAllowed("\(request.pathOnly) takes GET", allow: ["GET"]).response)
            return true
        }
        responder.respond(response)
        return true
    }

    // MARK: The authorization endpoint

    /// `GET` with the query, or `POST` with a form (OpenID Connect Core §3.1.2.1).
    private func authorize(_ request: HTTPRequest) -> HTTPResponse {
        let text: String
        switch request.method {
        case "GET": text = String(request.query)
        case "POST":
            guard
                request.headers[field: "content-type"]?.lowercased().hasPrefix("application/x-www-form-urlencoded")
                    == true
            else { return pages.response(.error(message: "The sign-in request is not a form."), status: 400) }
            text = String(decoding: request.body, as: UTF8.self)
        default:
            return Problem.methodNotAllowed("\(request.pathOnly) takes GET or POST", allow: ["GET", "POST"]).response
        }
        guard let parameters = FormEncoding.decode(text) else {
            return pages.response(.error(message: "The sign-in request is not well formed."), status: 400)
        }
        do throws(AuthorizationRefusal) {
            let checked = try AuthorizationRequest.parse(parameters, settings: settings)
            // The sign-in itself (the user's name, the number, the phone) is not served yet: the client hears so,
            // as it would of any outage, and can offer its password.
            return answer(
                checked.redirectURI, checked.responseMode,
                [("error", "temporarily_unavailable"), ("error_description", "phone sign-in is not available yet")]
                    + (checked.state.map { [("state", $0)] } ?? []))
        } catch {
            switch error {
            case .page(let message): return pages.response(.error(message: message), status: 400)
            case .toClient(let uri, let mode, let error, let description, let state):
                return answer(
                    uri, mode,
                    [("error", error), ("error_description", description)] + (state.map { [("state", $0)] } ?? []))
            }
        }
    }

    /// An authorization response to the client's redirect URI: a redirect with the parameters in its query, or a
    /// page that posts them there (form_post).
    private func answer(
        _ redirectURI: String, _ mode: AuthorizationRequest.ResponseMode, _ fields: [(name: String, value: String)]
    ) -> HTTPResponse {
        switch mode {
        case .query:
            HTTPResponse(
                status: 302,
                headers: [
                    ("location", FormEncoding.appending(fields, to: redirectURI)), ("cache-control", "no-store"),
                    ("referrer-policy", "no-referrer"),
                ])
        case .formPost: pages.response(.formPost(action: redirectURI, fields: fields))
        }
    }
}
