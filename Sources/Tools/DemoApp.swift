// `approvald demo-app`: a relying party of the broker's OpenID provider, for trying phone sign-in in a browser. It
// serves a page whose link starts the authorization code flow with PKCE, redeems the code it gets back, checks the ID
// token (the provider's signature by a key of its JWK Set, the issuer, the audience, the nonce, the expiry) and
// shows who signed in.
import ArgumentParser
import Broker
import Crypto
import EventLoop
import Foundation
import HTTP
import JSONText
import Logging
import OIDC

public struct DemoApp: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "demo-app",
        abstract: "A small web app that signs in with phone sign-in through the broker's OpenID provider (for trying).",
        discussion: """
            Listens where the client's redirect URI points (make run's demo-app client: http://127.0.0.1:8000) and \
            prints the address to open in a browser. Its link goes to the broker's authorization endpoint; once the \
            phone approves, the app redeems the code and shows the ID token it checked. Runs until interrupted.
            """)

    @Option(help: "The broker's configuration file: its [oidc] issuer and clients.") var config =
        "Config/approvald.toml"
    @Option(help: "The OpenID client to sign in as (default: the first with an http://127.0.0.1 redirect URI).")
    var clientID: String?
    @Option(help: "Where the browser and the app reach the broker (default: the issuer).") var url: String?

    public init() {}

    public func run() throws {
        let configuration: Configuration
        do {
            configuration = try Configuration.load(path: config)
        } catch let error as ConfigError {
            throw ValidationError("cannot use the configuration: \(error.description)")
        }
        guard let oidc = configuration.oidc else { throw ValidationError("\(config) has no [oidc] section") }
        let local = { (uri: String) in URLComponents(string: uri).map { $0.scheme == "http" && $0.port != nil } ?? false
        }
        guard
            let client = oidc.clients.first(where: { candidate in
                clientID.map { candidate.clientID == $0 } ?? candidate.redirectURIs.contains(where: local)
            }), let redirectURI = client.redirectURIs.first(where: local),
            let redirect = URLComponents(string: redirectURI), let host = redirect.host, let port = redirect.port
        else {
            throw ValidationError("\(config) has no OpenID client with an http:// redirect URI on this machine")
        }
        let broker = url ?? oidc.issuer
        let loop = try EventLoop()
        var logger = Logger(label: "approvald-demo-app")
        logger.logLevel = .error
        let tls = broker.hasPrefix("https://")
        let provider = try makeHTTPClient(
            loop: loop, origin: broker, tls: tls ? try TLSClientContext(caFile: configuration.tlsCertificatePath) : nil,
            speaking: tls ? .negotiated : .http1, options: HTTPClientOptions(), logger: logger)
        let app = RelyingParty(
            issuer: oidc.issuer, broker: broker, client: client, redirectURI: redirectURI, callbackPath: redirect.path,
            provider: provider)
        let server = HTTPServer(loop: loop, logger: logger) { request, responder in app.handle(request, responder) }
        _ = try server.listen(host: host, port: port)
        say("approvald demo-app: open http://\(host):\(port)/ in a browser to sign in as client \(client.clientID)")
        signal(SIGPIPE, SIG_IGN)
        let watchers = loop.watchTermination { _ in loop.stop() }
        loop.run()
        withExtendedLifetime((server, watchers)) {}
    }
}

/// The app: its pages, the sign-ins it started (by `state`), and the code exchange. Loop-bound.
final class RelyingParty: @unchecked Sendable {
    private struct Started {
        let nonce: String
        let verifier: String
    }

    private let issuer: String
    /// Where the browser reaches the provider.
    private let broker: String
    private let client: OIDCClient
    private let redirectURI: String
    private let callbackPath: String
    private let provider: any HTTPClient
    /// At most a hundred sign-ins wait for their return; the oldest is forgotten first.
    private var started: [(state: String, Started)] = []

    init(
        issuer: String, broker: String, client: OIDCClient, redirectURI: String, callbackPath: String,
        provider: any HTTPClient
    ) {
        self.issuer = issuer
        self.broker = broker
        self.client = client
        self.redirectURI = redirectURI
        self.callbackPath = callbackPath
        self.provider = provider
    }

    func handle(_ request: HTTPRequest, _ responder: HTTPResponder) {
        switch request.pathOnly {
        case "/": responder.respond(page("Demo app", #"<p><a href="/login">Sign in with your phone</a></p>"#))
        case "/login": responder.respond(login())
        case Substring(callbackPath): callback(request, responder)
        default: responder.respond(HTTPResponse(status: 404))
        }
    }

    private func login() -> HTTPResponse {
        let state = Base64URL.encode(SecureRandom.bytes(16))
        let sign = Started(
            nonce: Base64URL.encode(SecureRandom.bytes(16)), verifier: Base64URL.encode(SecureRandom.bytes(32)))
        started.append((state, sign))
        if started.count > 100 { started.removeFirst() }
        let location = FormEncoding.appending(
            [
                ("client_id", client.clientID), ("redirect_uri", redirectURI), ("response_type", "code"),
                ("scope", "openid profile"), ("state", state), ("nonce", sign.nonce),
                ("code_challenge", Base64URL.encode(SHA256.hash(Array(sign.verifier.utf8)))),
                ("code_challenge_method", "S256"),
            ], to: broker + Discovery.authorizationPath)
        return HTTPResponse(status: 302, headers: [("location", location)])
    }

    private func callback(_ request: HTTPRequest, _ responder: HTTPResponder) {
        let query = Dictionary((FormEncoding.decode(String(request.query)) ?? []).map { ($0.name, $0.value) }) { a, _ in
            a
        }
        guard let state = query["state"], let index = started.firstIndex(where: { $0.state == state }) else {
            responder.respond(page("Not signed in", "<p>This return names no sign-in this app started.</p>"))
            return
        }
        let sign = started.remove(at: index).1
        guard let code = query["code"] else {
            let why = "\(query["error"] ?? "no code") (\(query["error_description"] ?? "no description"))"
            say("not signed in: \(why)")
            responder.respond(page("Not signed in", "<p>\(escaped(why))</p>"))
            return
        }
        var form = [
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI),
            ("code_verifier", sign.verifier), ("client_id", client.clientID),
        ]
        if let secret = client.clientSecret { form.append(("client_secret", String(decoding: secret, as: UTF8.self))) }
        provider.send(
            method: "POST", path: Discovery.tokenPath,
            headers: [("content-type", "application/x-www-form-urlencoded")],
            body: Array(FormEncoding.encode(form).utf8)
        ) { [self] result in
            guard case .success(let response) = result, response.status == 200,
                let tokens = JSONValue.parse(response.body), let idToken = tokens["id_token"]?.string
            else {
                responder.respond(page("Not signed in", "<p>The token endpoint refused the code.</p>"))
                return
            }
            provider.send(method: "GET", path: Discovery.jwksPath) { [self] keys in
                guard case .success(let jwks) = keys,
                    let claims = checkedClaims(idToken, keySet: String(decoding: jwks.body, as: UTF8.self), sign)
                else {
                    responder.respond(page("Not signed in", "<p>The ID token did not check out.</p>"))
                    return
                }
                say("signed in: \(claims.userID) (sub \(claims.subject))")
                responder.respond(
                    page(
                        "Signed in",
                        "<p>Signed in as <strong>\(escaped(claims.userID))</strong> with your phone.</p>"
                            + "<p>The ID token's claims, checked:</p><pre>\(escaped(claims.json))</pre>"
                            + #"<p><a href="/login">Sign in again</a></p>"#))
            }
        }
    }

    /// The ID token's claims when the provider signed it with a key of its set for this client, and it carries the
    /// sign-in's nonce and has not expired. An ID token is checked as a hint is, and for its nonce and expiry too.
    private func checkedClaims(
        _ token: String, keySet: String, _ sign: Started
    ) -> (subject: String, userID: String, json: String)? {
        let now = Int64(Date().timeIntervalSince1970)
        guard let keys = IssuerKeys(jwkSet: keySet), let jws = JWT.Unverified(token),
            let claims = JSONValue.parse(Array(jws.claimsJSON.utf8)), claims["nonce"]?.string == sign.nonce,
            let expiry = claims["exp"]?.int, Int64(expiry) > now,
            let user = try? IDTokenHint.verify(
                token, trust: HintTrust(issuer: issuer, keys: .url(issuer), userClaim: "preferred_username"),
                clientID: client.clientID, keys: keys, now: now)
        else { return nil }
        return (user.subject, user.userID, jws.claimsJSON)
    }

    private func page(_ title: String, _ content: String) -> HTTPResponse {
        HTTPResponse(
            status: 200,
            headers: [
                ("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store"),
                ("content-security-policy", "default-src 'none'"),
            ],
            body: Array(
                "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>\(escaped(title))</title><h1>\(escaped(title))</h1>\(content)</html>"
                    .utf8))
    }

    private func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
