// approvald as an OpenID provider (API.md, "OpenID Connect"): its discovery document and its signing keys' JWKS,
// both fixed for the life of the process and written once; the authorization endpoint, which checks each request
// and answers a refusal where the contract says (a page for what cannot go back to the client, else the client's
// redirect URI, by redirect or by form_post) before the sign-in (OIDCSignIns) takes it; and the token and userinfo
// endpoints (OIDCTokens).
import Core
import EventLoop
import Foundation
import HTTP
import Logging
import OIDC

/// The provider's endpoints. `@unchecked Sendable`: made before the loop runs, then used on its thread only.
public final class OIDCProvider: @unchecked Sendable {
    public let settings: OIDCSettings
    /// The first signs; all are published.
    let keys: [OIDCSigningKey]
    private let discovery: HTTPResponse
    private let keySet: HTTPResponse
    private let pages = OIDCPages()
    private let signIns: OIDCSignIns
    private let tokens: OIDCTokens

    /// Relying parties fetch both often and cache them; a key rotation is seen within this many seconds.
    static let cacheSeconds = 300

    /// - Parameters:
    ///   - hintKeyFiles: the keys of each client whose hints' keys are a file, by client id (read by the caller).
    ///   - loop: where key sets at URLs are fetched; nil fetches none (a provider that serves no sign-in).
    ///   - caFile: the CAs those fetches trust, else the system's.
    public init(
        settings: OIDCSettings, keys: [OIDCSigningKey], hintKeyFiles: [String: IssuerKeys] = [:], loop: EventLoop?,
        caFile: String? = nil, logger: Logger,
        clock: @escaping () -> UnixMillis = { UnixMillis(Date().timeIntervalSince1970 * 1000) }
    ) throws {
        precondition(!keys.isEmpty, "a provider signs with at least one key")
        self.settings = settings
        self.keys = keys
        let seal = FlowSeal(signingKey: keys[0])
        let hintKeys = try IssuerKeySources(
            sources: settings.hintKeySources, files: hintKeyFiles, loop: loop, caFile: caFile, logger: logger)
        signIns = OIDCSignIns(
            settings: settings, signer: keys[0], seal: seal, pages: pages, hintKeys: hintKeys, clock: clock)
        tokens = OIDCTokens(settings: settings, signer: keys[0], seal: seal, clock: clock)
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

    /// Answers the provider's routes; false for any other path. The sign-in's steps need `service`, which is
    /// nil while the broker recovers.
    func handle(_ request: HTTPRequest, _ responder: HTTPResponder, service: ApprovalService?) -> Bool {
        let response: HTTPResponse
        switch request.pathOnly {
        case Discovery.configurationPath: response = discovery
        case Discovery.jwksPath: response = keySet
        case Discovery.userinfoPath:
            tokens.userinfo(request, responder)
            return true
        case Discovery.authorizationPath, OIDCSignIns.pagePath, OIDCSignIns.statusPath, OIDCSignIns.cancelPath,
            Discovery.tokenPath:
            guard let service else {
                responder.respond(
                    pages.response(.error(message: "Sign-in is starting up: try again shortly."), status: 503))
                return true
            }
            route(request, responder, service)
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

    private func route(_ request: HTTPRequest, _ responder: HTTPResponder, _ service: ApprovalService) {
        switch request.pathOnly {
        case Discovery.authorizationPath: authorize(request, responder, service)
        case OIDCSignIns.pagePath where request.method == "POST": signIns.named(request, service: service, responder)
        case OIDCSignIns.pagePath: signIns.page(request, service: service, responder)
        case OIDCSignIns.statusPath: signIns.status(request, service: service, responder)
        case OIDCSignIns.cancelPath: signIns.cancel(request, service: service, responder)
        default: tokens.token(request, service: service, responder)
        }
    }

    // MARK: The authorization endpoint

    /// `GET` with the query, or `POST` with a form (OpenID Connect Core §3.1.2.1).
    private func authorize(_ request: HTTPRequest, _ responder: HTTPResponder, _ service: ApprovalService) {
        let text: String
        switch request.method {
        case "GET": text = String(request.query)
        case "POST":
            guard
                request.headers[field: "content-type"]?.lowercased().hasPrefix("application/x-www-form-urlencoded")
                    == true
            else { return refuse(pages.response(.error(message: "The sign-in request is not a form."), status: 400)) }
            text = String(decoding: request.body, as: UTF8.self)
        default:
            responder.respond(
                Problem.methodNotAllowed("\(request.pathOnly) takes GET or POST", allow: ["GET", "POST"]).response)
            return
        }
        func refuse(_ response: HTTPResponse, error: String = "invalid_request") {
            signIns.refused(error)
            responder.respond(response)
        }
        guard let parameters = FormEncoding.decode(text) else {
            return refuse(pages.response(.error(message: "The sign-in request is not well formed."), status: 400))
        }
        do throws(AuthorizationRefusal) {
            signIns.start(
                try AuthorizationRequest.parse(parameters, settings: settings), request, service: service, responder)
        } catch {
            switch error {
            case .page(let message): refuse(pages.response(.error(message: message), status: 400))
            case .toClient(let uri, let mode, let error, let description, let state):
                refuse(
                    OIDCResponse.authorization(
                        to: uri, mode,
                        [("error", error), ("error_description", description)] + (state.map { [("state", $0)] } ?? []),
                        pages: pages), error: error)
            }
        }
    }
}

extension OIDCProvider: MetricsSource {
    func writeMetrics(to writer: inout MetricsWriter) {
        writer.family(
            "approvald_oidc_authorizations_total", .counter,
            help: "OpenID Connect authorization responses, by what they carried: a code, an id_token, or the error.")
        signIns.results.write("approvald_oidc_authorizations_total", labelName: "result", to: &writer)
    }
}
