// The token endpoint (RFC 6749 §4.1.3, OpenID Connect Core §3.1.3) and userinfo (§5.3). A code is what the sign-in
// sealed; that it is redeemed once, on any instance, is a commit on its challenge (Rules.redeemCode).
import Core
import HTTP
import JSONText
import OIDC

/// `@unchecked Sendable`: made before the loop runs, then used on its thread only.
final class OIDCTokens: @unchecked Sendable {
    private let settings: OIDCSettings
    private let signer: OIDCSigningKey
    private let seal: FlowSeal
    private let clock: () -> UnixMillis

    init(settings: OIDCSettings, signer: OIDCSigningKey, seal: FlowSeal, clock: @escaping () -> UnixMillis) {
        self.settings = settings
        self.signer = signer
        self.seal = seal
        self.clock = clock
    }

    private var nowSeconds: Int64 { clock() / 1000 }

    /// `POST /oidc/token`: an authorization code for an ID token and an access token.
    func token(_ request: HTTPRequest, service: ApprovalService, _ responder: HTTPResponder) {
        guard request.method == "POST" else {
            responder.respond(Problem.methodNotAllowed("\(request.pathOnly) takes POST", allow: ["POST"]).response)
            return
        }
        guard
            request.headers[field: "content-type"]?.lowercased().hasPrefix("application/x-www-form-urlencoded")
                == true, let form = FormEncoding.decode(String(decoding: request.body, as: UTF8.self))
        else {
            responder.respond(
                Self.refusal(TokenRefusal.invalidRequest("the body must be application/x-www-form-urlencoded")))
            return
        }
        let tokenRequest: TokenRequest
        do throws(TokenRefusal) {
            tokenRequest = try TokenRequest.parse(
                form: form, authorization: request.headers[field: "authorization"], settings: settings)
        } catch {
            responder.respond(Self.refusal(error))
            return
        }
        guard let code = AuthorizationCode(code: tokenRequest.code, seal: seal),
            code.redeemable(by: tokenRequest, now: nowSeconds)
        else {
            responder.respond(
                Self.refusal(
                    .invalidGrant(
                        "the code is not valid, has expired, or was issued for another client, redirect URI "
                            + "or code_verifier")))
            return
        }
        service.redeemCode(of: code.challengeID, in: code.tenantID) { [self] result in
            switch result {
            case .success: responder.respond(tokens(for: code))
            case .failure(let problem) where problem.status == 503:
                responder.respond(
                    Self.noStore(.json(503, JSONWriter.object { $0.string("error", "temporarily_unavailable") })))
            case .failure: responder.respond(Self.refusal(.invalidGrant("the code was redeemed already")))
            }
        }
    }

    /// `GET` or `POST /oidc/userinfo` with the access token as a Bearer token.
    func userinfo(_ request: HTTPRequest, _ responder: HTTPResponder) {
        guard request.method == "GET" || request.method == "POST" else {
            responder.respond(
                Problem.methodNotAllowed("\(request.pathOnly) takes GET or POST", allow: ["GET", "POST"]).response)
            return
        }
        guard let authorization = request.headers[field: "authorization"], authorization.count > 7,
            authorization.prefix(7).lowercased() == "bearer ",
            let token = AccessToken(String(authorization.dropFirst(7)), seal: seal, now: nowSeconds)
        else {
            // RFC 6750 §3.1.
            responder.respond(
                HTTPResponse(
                    status: 401,
                    headers: [
                        ("www-authenticate", "Bearer error=\"invalid_token\""), ("cache-control", "no-store"),
                    ]))
            return
        }
        responder.respond(Self.noStore(.json(200, token.userinfo)))
    }

    /// The token response of a redeemed code.
    private func tokens(for code: AuthorizationCode) -> HTTPResponse {
        let now = nowSeconds
        let claims = IDToken.claims(
            issuer: settings.issuer, clientID: code.clientID, subject: code.subject, userID: code.userID,
            nonce: code.nonce, challengeID: code.challengeID, authTime: code.authTime, issuedAt: now,
            requested: code.requested)
        guard let idToken = try? signer.sign(claimsJSON: claims) else {
            return Self.noStore(.json(503, JSONWriter.object { $0.string("error", "temporarily_unavailable") }))
        }
        let access = AccessToken(clientID: code.clientID, subject: code.subject, userID: code.userID, issuedAt: now)
        return Self.noStore(
            .json(
                200,
                JSONWriter.object { body in
                    body.string("access_token", access.sealed(by: seal))
                    body.string("token_type", "Bearer")
                    body.integer("expires_in", AccessToken.lifetimeSeconds)
                    body.string("id_token", idToken)
                }))
    }

    /// RFC 6749 §5.2: the error as JSON; a 401 for a client that tried Basic names the scheme.
    private static func refusal(_ refusal: TokenRefusal) -> HTTPResponse {
        var response = noStore(.json(refusal.status, refusal.body))
        if refusal.status == 401 && refusal.basic {
            response.headers.append("www-authenticate", "Basic realm=\"approvald\"")
        }
        return response
    }

    /// Token responses are never cached (RFC 6749 §5.1).
    private static func noStore(_ response: HTTPResponse) -> HTTPResponse {
        var response = response
        response.headers.append("cache-control", "no-store")
        response.headers.append("pragma", "no-cache")
        return response
    }
}
