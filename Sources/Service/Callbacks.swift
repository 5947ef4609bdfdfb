// The outbox entries a commit adds: an ended challenge's callback, to its IdP's verifier (API.md, "Callbacks to the
// verifier") or to Keycloak's CIBA callback endpoint, and the callback of a CIBA request that fell back to the
// password (API.md, "Keycloak CIBA authentication channel").
import Core
import Crypto
import OIDC
import Store

extension OutboxEntry {
    /// The callbacks `changes` make due, each first sent `holdMillis` after now (see `InstanceMembership`).
    static func callbacks(for changes: [Change], now: UnixMillis, holdMillis: UnixMillis) -> [OutboxEntry] {
        changes.compactMap { change in
            switch change {
            case .resultDue(let challenge):
                let endedAt = challenge.resolution?.at ?? now
                let (body, target): (String, CallbackTarget) =
                    switch challenge.channel {
                    case .ciba(let token): (CIBAStatus(challenge.status).callbackBody, .ciba(bearerToken: token))
                    case .verifier, .browser: (Views.callback(challenge), .verifier)
                    }
                return OutboxEntry(
                    challengeID: challenge.id, tenantID: challenge.tenantID, partition: challenge.user.partition,
                    body: body, endedAt: endedAt, nextAttemptAt: endedAt + holdMillis,
                    traceparent: challenge.traceparent, target: target)
            case .fallbackResultDue(let fallback, let token):
                return OutboxEntry(
                    challengeID: fallbackCallbackID(fallback), tenantID: fallback.tenantID,
                    partition: fallback.user.partition, body: CIBAStatus.unauthorized.callbackBody,
                    endedAt: fallback.decidedAt, nextAttemptAt: fallback.decidedAt + holdMillis,
                    target: .ciba(bearerToken: token))
            default:
                return nil
            }
        }
    }

    /// A fallback has no challenge id: its callback is named after its request, so that the same request decided
    /// again (a commit retried) adds no second callback. `fb_` and 22 base64url characters, as a challenge id is long.
    static func fallbackCallbackID(_ fallback: Fallback) -> String {
        "fb_"
            + Base64URL.encode(SHA256.hash(Array("\(fallback.tenantID)\n\(fallback.request.requestID)".utf8)))
            .prefix(22)
    }
}

extension CIBAStatus {
    /// How an ended challenge is told to Keycloak: approved succeeds, cancelled is cancelled, every other end
    /// (denied, expired) is unauthorized.
    init(_ status: ChallengeStatus) {
        switch status {
        case .approved: self = .succeed
        case .cancelled: self = .cancelled
        case .denied, .expired, .pending: self = .unauthorized
        }
    }
}
