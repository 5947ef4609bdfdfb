// The sign-in behind the authorization endpoint (API.md, "OpenID Connect"): the user's name (or the client's hint),
// the challenge a create would make, the page that shows its number and follows it, and the return to the client.
// Nothing of a flow stays in memory: it travels sealed in its pages' URLs (SignInFlow), bound to the browser by
// the browser's cookie, and its challenge lives in the store like any other.
import Core
import Crypto
import Foundation
import HTTP
import JSONText
import OIDC

/// `@unchecked Sendable`: made before the loop runs, then used on its thread only.
final class OIDCSignIns: @unchecked Sendable {
    static let pagePath = "/oidc/sign-in"
    static let statusPath = "/oidc/sign-in/status"
    static let cancelPath = "/oidc/sign-in/cancel"

    /// What an authorization response carried, for `approvald_oidc_authorizations_total` (API.md): a code, an ID
    /// token, or its `error` (a refusal shown as a page, which never goes back to the client, counts as
    /// `invalid_request`).
    enum Result: String, CaseIterable, Comparable, CustomStringConvertible {
        case code
        case idToken = "id_token"
        case accessDenied = "access_denied"
        case invalidRequest = "invalid_request"
        case invalidScope = "invalid_scope"
        case unsupportedResponseType = "unsupported_response_type"
        case loginRequired = "login_required"
        case temporarilyUnavailable = "temporarily_unavailable"

        static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
        var description: String { rawValue }
    }

    private let settings: OIDCSettings
    private let signer: OIDCSigningKey
    private let seal: FlowSeal
    private let pages: OIDCPages
    private let cookie: BrowserCookie
    private let hintKeys: IssuerKeySources
    private let clock: () -> UnixMillis
    private var random = BufferedSecureRandom()
    private(set) var results = LabelledCounter(known: Result.allCases)

    init(
        settings: OIDCSettings, signer: OIDCSigningKey, seal: FlowSeal, pages: OIDCPages, hintKeys: IssuerKeySources,
        clock: @escaping () -> UnixMillis
    ) {
        self.settings = settings
        self.signer = signer
        self.seal = seal
        self.pages = pages
        self.hintKeys = hintKeys
        self.clock = clock
        cookie = BrowserCookie(issuer: settings.issuer)
    }

    private var nowSeconds: Int64 { clock() / 1000 }

    /// Counts an authorization request refused before its sign-in began.
    func refused(_ error: String) { results.increment(Result(rawValue: error) ?? .invalidRequest) }

    // MARK: Steps

    /// A checked authorization request: the name page, or with a `login_hint` the sign-in at once.
    func start(
        _ checked: AuthorizationRequest, _ request: HTTPRequest, service: ApprovalService, _ responder: HTTPResponder
    ) {
        let known = cookie.browser(of: request)
        let browser = known ?? Base64URL.encode(SecureRandom.bytes(16))
        let setCookie = known == nil ? cookie.setting(browser) : nil
        func respond(_ response: HTTPResponse) {
            var response = response
            if let setCookie { response.headers.append("set-cookie", setCookie) }
            responder.respond(response)
        }
        if let hint = checked.idTokenHint, let trust = checked.client.hintTrust {
            return verify(hint, trust, checked) { [self] verified in
                switch verified {
                case .success(let user):
                    let flow = SignInFlow(
                        browser: browser, request: checked, subject: user.subject, stage: .naming, now: nowSeconds)
                    challenge(user.userID, for: flow, request, service: service, respond)
                case .failure(let refusal):
                    // No push for a hint that does not verify: the client hears why, in its response mode.
                    results.increment(.invalidRequest)
                    respond(
                        answer(checked, [("error", "invalid_request"), ("error_description", refusal.description)]))
                }
            }
        }
        let flow = SignInFlow(browser: browser, request: checked, subject: nil, stage: .naming, now: nowSeconds)
        guard let userID = checked.loginHint else {
            var page = pages.response(
                .name(
                    client: checked.client.clientID, flow: flow.sealed(by: seal), returnTo: checked.redirectURI,
                    error: nil))
            if let setCookie { page.headers.append("set-cookie", setCookie) }
            responder.respond(page)
            return
        }
        challenge(userID, for: flow, request, service: service, respond)
    }

    /// The hint checked against its issuer's keys, fetched again once if it names a key they lack.
    private func verify(
        _ hint: String, _ trust: HintTrust, _ request: AuthorizationRequest,
        _ done: @escaping (Swift.Result<IDTokenHint.User, JWTRefusal>) -> Void
    ) {
        let clientID = request.client.clientID
        let now = nowSeconds
        hintKeys.verify(
            for: clientID, unavailable: "the id_token_hint issuer's keys are unavailable",
            { keys throws(JWTRefusal) in
                try IDTokenHint.verify(hint, trust: trust, clientID: clientID, keys: keys, now: now)
            }, done)
    }

    /// `POST /oidc/sign-in`: the name form, with its flow.
    func named(_ request: HTTPRequest, service: ApprovalService, _ responder: HTTPResponder) {
        guard request.method == "POST" else {
            responder.respond(Problem.methodNotAllowed("\(request.pathOnly) takes POST", allow: ["POST"]).response)
            return
        }
        guard let form = form(request, responder), let flow = flow(form["f"], of: request, responder) else { return }
        let name = (form["username"] ?? "").trimmingCharacters(in: .whitespaces)
        guard (try? Validate.userID(name)) != nil else {
            responder.respond(
                pages.response(
                    .name(
                        client: flow.request.client.clientID, flow: form["f"] ?? "", returnTo: flow.request.redirectURI,
                        error: "Type your user name: 1 to 256 characters."),
                    status: 400))
            return
        }
        challenge(name, for: flow, request, service: service) { responder.respond($0) }
    }

    /// `GET /oidc/sign-in?f=`: the number page while the challenge is pending, else the return to the client.
    func page(_ request: HTTPRequest, service: ApprovalService, _ responder: HTTPResponder) {
        guard request.method == "GET" else {
            responder.respond(Problem.methodNotAllowed("\(request.pathOnly) takes GET", allow: ["GET"]).response)
            return
        }
        guard let sealed = Self.parameter("f", of: request), let flow = flow(sealed, of: request, responder) else {
            return
        }
        guard case .challenged(_, let challengeID, let number) = flow.stage else {
            responder.respond(
                pages.response(
                    .name(
                        client: flow.request.client.clientID, flow: sealed, returnTo: flow.request.redirectURI,
                        error: nil)))
            return
        }
        service.follow(challengeID, of: flow.request.client.tenant, wait: 0, responder) { [self] challenge in
            guard challenge.isPending else { return end(flow, challenge) }
            let left = max(0, (challenge.expiresAt - clock() + 999) / 1000)
            return pages.response(
                .number(
                    client: flow.request.client.clientID, number: number, secondsLeft: Int(left), flow: sealed,
                    returnTo: flow.request.redirectURI))
        }
    }

    /// `GET /oidc/sign-in/status?f=&wait=`: whether the flow's challenge is still pending, answered once it ends
    /// or `wait` seconds (at most 30) have passed; the number page's script asks.
    func status(_ request: HTTPRequest, service: ApprovalService, _ responder: HTTPResponder) {
        guard request.method == "GET" else {
            responder.respond(Problem.methodNotAllowed("\(request.pathOnly) takes GET", allow: ["GET"]).response)
            return
        }
        guard let flow = flow(Self.parameter("f", of: request), of: request, responder, asJSON: true) else { return }
        guard case .challenged(_, let challengeID, _) = flow.stage else {
            responder.respond(Problem.notFound("the sign-in has not started").response)
            return
        }
        let wait = Self.parameter("wait", of: request).flatMap(Double.init).map { min(max($0, 0), 30) } ?? 0
        service.follow(challengeID, of: flow.request.client.tenant, wait: wait, responder) { challenge in
            var response = HTTPResponse.json(
                200, JSONWriter.object { $0.string("status", challenge.isPending ? "pending" : "ended") })
            response.headers.append("cache-control", "no-store")
            return response
        }
    }

    /// `POST /oidc/sign-in/cancel`: "Use your password instead" cancels the challenge and returns to the client.
    func cancel(_ request: HTTPRequest, service: ApprovalService, _ responder: HTTPResponder) {
        guard request.method == "POST" else {
            responder.respond(Problem.methodNotAllowed("\(request.pathOnly) takes POST", allow: ["POST"]).response)
            return
        }
        guard let form = form(request, responder), let flow = flow(form["f"], of: request, responder) else { return }
        guard case .challenged(_, let challengeID, _) = flow.stage else {
            responder.respond(finish(flow, "cancelled"))
            return
        }
        service.cancel(challengeID, of: flow.request.client.tenant) { [self] result in
            switch result {
            case .success(let challenge): responder.respond(end(flow, challenge))
            case .failure: responder.respond(unavailable(flow.request))
            }
        }
    }

    // MARK: Deciding

    /// Asks the user's phones as a create would: the client's tenant, a fresh request id, a number picked here, and
    /// a context naming the client and the browser; a password fallback returns to the client at once.
    private func challenge(
        _ userID: String, for flow: SignInFlow, _ request: HTTPRequest, service: ApprovalService,
        _ done: @escaping (HTTPResponse) -> Void
    ) {
        let number = Int.random(in: 10...99, using: &random)
        var context = ["app": String(flow.request.client.clientID.prefix(256))]
        if let browser = BrowserName.of(userAgent: request.headers[field: "user-agent"]) {
            context["browser"] = browser
        }
        let challengeRequest = ChallengeRequest(
            requestID: "oidc-" + Base64URL.encode(SecureRandom.bytes(16)), userID: userID, number: number,
            context: (try? ChallengeContext(validating: context)) ?? [:])
        service.create(challengeRequest, in: flow.request.client.tenant, channel: .browser(codeRedeemed: false)) {
            [self] result in
            switch result {
            case .success(.created(let challenge)), .success(.replayedChallenge(let challenge)):
                var next = flow
                next.stage = .challenged(userID: userID, challengeID: challenge.id, number: number)
                let location = "sign-in?" + FormEncoding.encode([("f", next.sealed(by: seal))])
                done(HTTPResponse(status: 303, headers: [("location", location), ("cache-control", "no-store")]))
            case .success(.fallback(let fallback)), .success(.replayedFallback(let fallback)):
                done(finish(flow, "password_fallback:\(fallback.reason.rawValue)"))
            case .failure(let problem) where problem.status == 400:
                done(finish(flow, "the user name is not one this service takes"))
            case .failure:
                done(unavailable(flow.request))
            }
        }
    }

    /// The return to the client of a flow whose challenge has ended.
    private func end(_ flow: SignInFlow, _ challenge: Challenge) -> HTTPResponse {
        guard let resolution = challenge.resolution else { return unavailable(flow.request) }
        switch resolution.status {
        case .approved: return approve(flow, challenge, at: resolution.at / 1000)
        case .denied: return finish(flow, "denied:\(resolution.reason?.rawValue ?? "cancelled")")
        case .expired: return finish(flow, "expired")
        case .cancelled, .pending: return finish(flow, "cancelled")
        }
    }

    /// An approval, returned as a code (redeemed at the token endpoint) or as a signed ID token.
    private func approve(_ flow: SignInFlow, _ challenge: Challenge, at authTime: Int64) -> HTTPResponse {
        let request = flow.request
        let userID = challenge.request.userID
        let subject = flow.subject ?? userID
        var fields: [(name: String, value: String)]
        switch request.responseType {
        case .code:
            let code = AuthorizationCode(
                clientID: request.client.clientID, redirectURI: request.redirectURI,
                codeChallenge: request.codeChallenge, tenantID: request.client.tenant, userID: userID,
                subject: subject, challengeID: challenge.id, nonce: request.nonce, requested: request.claims,
                authTime: authTime)
            fields = [("code", code.sealed(by: seal))]
        case .idToken:
            let claims = IDToken.claims(
                issuer: settings.issuer, clientID: request.client.clientID, subject: subject, userID: userID,
                nonce: request.nonce, challengeID: challenge.id, authTime: authTime, issuedAt: nowSeconds,
                requested: request.claims)
            guard let token = try? signer.sign(claimsJSON: claims) else { return unavailable(request) }
            fields = [("id_token", token)]
        }
        if let state = request.state { fields.append(("state", state)) }
        results.increment(request.responseType == .code ? .code : .idToken)
        return OIDCResponse.authorization(to: request.redirectURI, request.responseMode, fields, pages: pages)
    }

    /// `error=access_denied` with the end's description.
    private func finish(_ flow: SignInFlow, _ description: String) -> HTTPResponse {
        results.increment(.accessDenied)
        return answer(flow.request, [("error", "access_denied"), ("error_description", description)])
    }

    private func unavailable(_ request: AuthorizationRequest) -> HTTPResponse {
        results.increment(.temporarilyUnavailable)
        return answer(
            request, [("error", "temporarily_unavailable"), ("error_description", "phone sign-in is unavailable")])
    }

    private func answer(_ request: AuthorizationRequest, _ fields: [(name: String, value: String)]) -> HTTPResponse {
        OIDCResponse.authorization(
            to: request.redirectURI, request.responseMode, fields + (request.state.map { [("state", $0)] } ?? []),
            pages: pages)
    }

    // MARK: Reading requests

    /// The flow sealed in `sealed`, when it is valid and this browser's; else the refusal is sent and nil returned.
    private func flow(
        _ sealed: String?, of request: HTTPRequest, _ responder: HTTPResponder, asJSON: Bool = false
    ) -> SignInFlow? {
        guard let sealed, let flow = SignInFlow(sealed, seal: seal, settings: settings, now: nowSeconds) else {
            results.increment(.invalidRequest)
            responder.respond(
                asJSON
                    ? Problem.notFound("no such sign-in").response
                    : pages.response(.error(message: "This sign-in link is not valid, or it has expired."), status: 400)
            )
            return nil
        }
        guard let browser = cookie.browser(of: request),
            constantTimeEquals(Array(browser.utf8), Array(flow.browser.utf8))
        else {
            results.increment(.invalidRequest)
            responder.respond(
                asJSON
                    ? Problem.notFound("no such sign-in").response
                    : pages.response(
                        .error(
                            message: "This sign-in was started in another browser, or this browser's cookie is gone."),
                        status: 403))
            return nil
        }
        return flow
    }

    /// A form body's fields, the last of each name; for a body that is no form, the refusal is sent and nil
    /// returned.
    private func form(_ request: HTTPRequest, _ responder: HTTPResponder) -> [String: String]? {
        guard
            request.headers[field: "content-type"]?.lowercased().hasPrefix("application/x-www-form-urlencoded")
                == true, let fields = FormEncoding.decode(String(decoding: request.body, as: UTF8.self))
        else {
            results.increment(.invalidRequest)
            responder.respond(
                pages.response(.error(message: "The sign-in form did not arrive as a form."), status: 400))
            return nil
        }
        return Dictionary(fields.map { ($0.name, $0.value) }) { _, last in last }
    }

    private static func parameter(_ name: String, of request: HTTPRequest) -> String? {
        FormEncoding.decode(String(request.query))?.last { $0.name == name }?.value
    }
}
