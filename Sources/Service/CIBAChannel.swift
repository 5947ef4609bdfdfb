// `POST /v1/tenants/{tenant}/ciba` (API.md, "Keycloak CIBA authentication channel"): Keycloak hands a sign-in to
// approvald as its CIBA HTTP authentication channel. The bearer token is checked against the tenant's realm keys,
// the binding message becomes the number to match, the token's `jti` the request's idempotency key, and the
// challenge ends at the latest 5 s before the token does, so that even an expiry's callback carries a token
// Keycloak still takes. Keycloak accepts only 201: a request that falls back to the password is 201 too, and is
// called back UNAUTHORIZED.
import Core
import EventLoop
import Foundation
import HTTP
import Logging
import OIDC

/// `@unchecked Sendable`: made before the loop runs, then used on its thread only.
final class CIBAChannel: @unchecked Sendable {
    /// How long before the token's `exp` the challenge ends.
    static let marginSeconds: Int64 = 5

    private let settings: [String: CIBASettings]
    private let keys: IssuerKeySources
    private let clock: () -> UnixMillis
    private(set) var requests = LabelledCounter(known: [
        "created", "replayed", "fallback", "unauthenticated", "invalid_request", "not_found", "refused",
    ])

    /// - Parameters:
    ///   - settings: the tenants with a channel.
    ///   - keyFiles: the realm keys of each tenant whose keys are a file, read by the caller.
    ///   - loop: where key sets at URLs are fetched; nil fetches none.
    init(
        settings: [String: CIBASettings], keyFiles: [String: IssuerKeys], loop: EventLoop?, caFile: String?,
        logger: Logger, clock: @escaping () -> UnixMillis
    ) throws {
        self.settings = settings
        self.clock = clock
        keys = try IssuerKeySources(
            sources: settings.mapValues(\.keys), files: keyFiles, loop: loop, caFile: caFile, logger: logger)
    }

    func request(
        _ request: HTTPRequest, tenantID: String, service: ApprovalService,
        _ respond: @escaping (HTTPResponse) -> Void
    ) {
        let finish = { [self] (result: String, response: HTTPResponse) in
            requests.increment(result)
            respond(response)
        }
        guard let channel = settings[tenantID] else {
            return finish("not_found", Problem.notFound("tenant \(tenantID) has no CIBA channel").response)
        }
        guard let raw = Self.bearerToken(request) else {
            return finish("unauthenticated", Problem.unauthenticated("a Bearer token is required").response)
        }
        let now = clock() / 1000
        keys.verify(for: tenantID, unavailable: "the realm's keys are unavailable") { keys throws(JWTRefusal) in
            try CIBAToken.verify(raw, issuer: channel.issuer, keys: keys, now: now)
        } _: { [self] verified in
            let token: CIBAToken
            switch verified {
            case .failure(let refusal):
                return finish("unauthenticated", Problem.unauthenticated(refusal.description).response)
            case .success(let checked): token = checked
            }
            let notAfter = (token.expiresAt - Self.marginSeconds) * 1000
            guard notAfter - clock() >= Int64(ChallengeRequest.ttlSecondsRange.lowerBound) * 1000 else {
                return finish(
                    "unauthenticated",
                    Problem.unauthenticated("the bearer token expires too soon for a sign-in").response)
            }
            let challengeRequest: ChallengeRequest
            do throws(Problem) {
                let body: CIBARequest
                do throws(CIBARequestError) {
                    body = try CIBARequest(json: request.body)
                } catch {
                    throw Problem.invalidField(error.description)
                }
                // What the phone shows, cut to a context value's length: a long scope list is shown, not refused.
                let context = ["scope": body.scope, "client": token.clientID].compactMapValues { value in
                    value.flatMap { $0.isEmpty ? nil : Self.prefix($0, maxBytes: ChallengeContext.maximumValueBytes) }
                }
                // The user and the number are validated by the create, as the IdP's are.
                challengeRequest = ChallengeRequest(
                    requestID: "ciba-\(token.id)", userID: body.loginHint, number: body.number,
                    context: try core(ChallengeContext(validating: context)))
            } catch {
                return finish("invalid_request", error.response)
            }
            service.create(
                challengeRequest, in: tenantID, channel: .ciba(bearerToken: token.raw), notAfter: notAfter
            ) { created in
                switch created {
                case .success(.created(let challenge)): finish("created", .json(201, Views.challenge(challenge)))
                case .success(.replayedChallenge(let challenge)):
                    finish("replayed", .json(201, Views.challenge(challenge)))
                case .success(.fallback(let fallback)): finish("fallback", .json(201, Views.fallback(fallback)))
                case .success(.replayedFallback(let fallback)):
                    finish("replayed", .json(201, Views.fallback(fallback)))
                case .failure(let problem):
                    finish(problem.status == 400 ? "invalid_request" : "refused", problem.response)
                }
            }
        }
    }

    /// The longest prefix of `text` of at most `maxBytes` UTF-8 bytes that ends on a character.
    static func prefix(_ text: String, maxBytes: Int) -> String {
        guard text.utf8.count > maxBytes else { return text }
        var cut = ""
        for character in text {
            guard cut.utf8.count + character.utf8.count <= maxBytes else { break }
            cut.append(character)
        }
        return cut
    }

    /// The token after `Bearer ` in the `Authorization` field (the scheme in any case, RFC 7235).
    static func bearerToken(_ request: HTTPRequest) -> String? {
        guard let field = request.headers[field: "authorization"], field.utf8.count > 7,
            field.prefix(7).lowercased() == "bearer "
        else { return nil }
        let token = field.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

}

extension CIBAChannel: MetricsSource {
    func writeMetrics(to writer: inout MetricsWriter) {
        writer.family(
            "approvald_ciba_requests_total", .counter,
            help: "Keycloak CIBA authentication requests, by result: created, replayed, fallback (each answered 201), "
                + "unauthenticated, invalid_request, not_found, refused.")
        requests.write("approvald_ciba_requests_total", labelName: "result", to: &writer)
    }
}
