// Wake-up pushes (API.md, "Wake-up pushes"): when a challenge is queued for a device with no open stream, the
// device's provider wakes the app. The payload says only that a request waits, and its challenge id: no user, no
// number, no context leaves through a third party. APNs over HTTP/2 with a token-based (ES256 JWT) provider
// credential; FCM HTTP v1 with an OAuth2 access token obtained for a service-account assertion (RS256 JWT) and
// cached until it expires. Throttling and provider errors are retried with backoff while the challenge waits for
// that device; a token the provider no longer knows (APNs 410, FCM UNREGISTERED) is cleared from the device.
import Core
import Crypto
import EventLoop
import Foundation
import HTTP
import HeapModule
import JSONText
import Logging

/// What the relay asks of the broker's state.
protocol WakeUpSource: AnyObject {
    /// The device and challenge if a wake-up is still wanted: the challenge pending and queued to the device, and no
    /// stream open for it.
    func stillWanted(challengeID: String, deviceID: String, then: @escaping ((Device, Challenge)?) -> Void)
    /// The provider said the token is no longer valid.
    func clearToken(_ token: String, of deviceID: String)
}

/// `@unchecked Sendable`: confined to the event loop.
final class PushRelay: @unchecked Sendable {
    struct APNs {
        let keyID: String
        let teamID: String
        let key: P256PrivateKey
        let client: BoundedClient
    }

    struct FCM {
        let projectID: String
        let clientEmail: String
        let keyID: String
        let key: RSAPrivateKey
        let tokenURL: String
        let tokenPath: String
        let tokenClient: any HTTPClient
        let client: BoundedClient
    }

    /// Wake-ups in flight on one provider connection; the rest wait in order.
    static let maxInFlightPerProvider = 256

    /// What a provider's answer means for the wake-up.
    private enum Outcome {
        case sent
        case unregistered
        case retry
        case rejected(String)
    }

    /// A provider token is used for this long, then signed anew (Apple: not more often than every 20 minutes,
    /// and never older than 60).
    static let tokenLifetimeMillis: UnixMillis = 40 * 60 * 1000

    private struct Retry: Comparable {
        let at: UnixMillis
        let challengeID: String
        let deviceID: String
        let failures: Int

        static func < (lhs: Retry, rhs: Retry) -> Bool {
            (lhs.at, lhs.challengeID, lhs.deviceID) < (rhs.at, rhs.challengeID, rhs.deviceID)
        }
    }

    private let apns: APNs?
    private let fcm: FCM?
    private var accessToken: (token: String, expiresAt: UnixMillis)?
    private var fetchingAccessToken = false
    private var waitingForAccessToken: [(String?) -> Void] = []
    private let clock: () -> UnixMillis
    private let logger: Logger
    private unowned let source: WakeUpSource
    private var providerToken: (jwt: String, issuedAt: UnixMillis)?
    private var retries = Heap<Retry>()
    private let loop: EventLoop
    /// Made on first use, on the loop.
    private lazy var timer = loop.makeTimer { [unowned self] in runDueRetries() }
    private var random = SystemRandomNumberGenerator()
    /// Pushes by provider and result; the usual results start at 0 (see `LabelledCounter.init(known:)`).
    private(set) var results: [PushOutcome: UInt64] = Dictionary(
        uniqueKeysWithValues: ["apns", "fcm"].flatMap { provider in
            ["sent", "retry", "unregistered", "rejected", "expired"].map {
                (PushOutcome(provider: provider, result: $0), 0)
            }
        })

    init(
        loop: EventLoop, apns: APNsSettings?, fcm: FCMSettings?, clock: @escaping () -> UnixMillis,
        logger: Logger, source: WakeUpSource
    ) throws {
        if let apns {
            let client = try connect(to: apns.endpoint, caFile: apns.caFile, loop: loop, logger: logger).client
            self.apns = APNs(
                keyID: apns.keyID, teamID: apns.teamID, key: try P256PrivateKey(pem: apns.privateKeyPEM),
                client: BoundedClient(client, limit: Self.maxInFlightPerProvider))
        } else {
            self.apns = nil
        }
        if let fcm {
            let token = try connect(to: fcm.tokenURL, caFile: fcm.caFile, loop: loop, logger: logger)
            let messages = try connect(to: fcm.endpoint, caFile: fcm.caFile, loop: loop, logger: logger).client
            self.fcm = FCM(
                projectID: fcm.projectID, clientEmail: fcm.clientEmail, keyID: fcm.privateKeyID,
                key: try RSAPrivateKey(pem: fcm.privateKeyPEM), tokenURL: fcm.tokenURL, tokenPath: token.path,
                tokenClient: token.client, client: BoundedClient(messages, limit: Self.maxInFlightPerProvider))
        } else {
            self.fcm = nil
        }
        self.clock = clock
        self.logger = logger
        self.source = source
        self.loop = loop
    }

    /// A challenge was queued for `device`, which has no stream open.
    func wake(_ device: Device, for challenge: Challenge, failures: Int = 0) {
        let token = device.push.token
        guard !token.isEmpty else { return }
        switch device.push.provider {
        case .none: return
        case .apns:
            guard let apns else { return count("apns", "unconfigured") }
            // Hex, as APNs issues them; anything else would not be a path segment of its own.
            guard token.utf8.allSatisfy({ isHexDigit($0) }), token.utf8.count <= 200 else {
                return count("apns", "invalid_token")
            }
            wakeThroughAPNs(apns, device, challenge, failures)
        case .fcm:
            guard let fcm else { return count("fcm", "unconfigured") }
            withAccessToken(fcm) { [self] accessToken in
                guard let accessToken else { return handle(.retry, "fcm", device, challenge, failures) }
                wakeThroughFCM(fcm, accessToken, device, challenge, failures)
            }
        }
    }

    private func wakeThroughAPNs(_ apns: APNs, _ device: Device, _ challenge: Challenge, _ failures: Int) {
        // No user data: the app fetches the challenge itself.
        let body = JSONWriter.object { payload in
            payload.object("aps") { aps in
                aps.object("alert") { alert in
                    alert.string("title", "Sign-in request")
                    alert.string("body", "Open the app to review it.")
                }
                aps.string("sound", "default")
            }
            payload.string("challenge_id", challenge.id)
        }
        apns.client.send(
            method: "POST", path: "/3/device/\(device.push.token)",
            headers: [
                ("authorization", "bearer \(apnsToken(apns))"), ("apns-topic", device.push.topic),
                ("apns-push-type", "alert"), ("apns-priority", "10"),
                ("apns-expiration", String(challenge.expiresAt / 1000)), ("apns-collapse-id", challenge.id),
            ], body: Array(body.utf8)
        ) { [self] result in
            let response = try? result.get()
            let outcome: Outcome
            switch response?.status ?? 0 {
            case 200: outcome = .sent
            case 410: outcome = .unregistered
            case 429, 500...599, 0: outcome = .retry
            case let status:
                // A refused provider token is signed anew for the next push.
                if status == 403 { providerToken = nil }
                outcome = .rejected("\(status) \(String(decoding: response?.body.prefix(200) ?? [], as: UTF8.self))")
            }
            handle(outcome, "apns", device, challenge, failures)
        }
    }

    private func wakeThroughFCM(
        _ fcm: FCM, _ accessToken: String, _ device: Device, _ challenge: Challenge, _ failures: Int
    ) {
        let ttl = max(0, (challenge.expiresAt - clock()) / 1000)
        let body = JSONWriter.object { payload in
            payload.object("message") { message in
                message.string("token", device.push.token)
                message.object("data") { $0.string("challenge_id", challenge.id) }
                message.object("android") { android in
                    android.string("priority", "HIGH")
                    android.string("ttl", "\(ttl)s")
                    android.string("collapse_key", challenge.id)
                }
            }
        }
        fcm.client.send(
            method: "POST", path: "/v1/projects/\(fcm.projectID)/messages:send",
            headers: [("authorization", "Bearer \(accessToken)"), ("content-type", "application/json")],
            body: Array(body.utf8)
        ) { [self] result in
            let response = try? result.get()
            let status = response?.status ?? 0
            let error =
                (response.flatMap { try? JSONSerialization.jsonObject(with: Data($0.body)) } as? [String: Any])?[
                    "error"] as? [String: Any]
            let details = error?["details"] as? [[String: Any]] ?? []
            let code = details.compactMap { $0["errorCode"] as? String }.first ?? error?["status"] as? String ?? ""
            let outcome: Outcome
            switch (status, code) {
            case (200, _): outcome = .sent
            case (_, "UNREGISTERED"): outcome = .unregistered
            case (_, "QUOTA_EXCEEDED"), (_, "UNAVAILABLE"), (_, "INTERNAL"), (429, _), (500...599, _), (0, _):
                outcome = .retry
            case (401, _):
                // The access token is no longer accepted: fetch another for the next attempt.
                self.accessToken = nil
                outcome = .retry
            default: outcome = .rejected("\(status) \(code)")
            }
            handle(outcome, "fcm", device, challenge, failures)
        }
    }

    private func handle(
        _ outcome: Outcome, _ provider: String, _ device: Device, _ challenge: Challenge, _ failures: Int
    ) {
        switch outcome {
        case .sent: count(provider, "sent")
        case .unregistered:
            count(provider, "unregistered")
            source.clearToken(device.push.token, of: device.id)
        case .rejected(let detail):
            logger.warning(
                "a push provider refused a wake-up",
                metadata: ["provider": "\(provider)", "detail": "\(detail)", "device_id": "\(device.id)"])
            count(provider, "rejected")
        case .retry:
            // Again later, while the challenge still waits for this device.
            let at = clock() + RetrySchedule.delayMillis(afterFailures: failures + 1, using: &random)
            guard at < challenge.expiresAt else { return count(provider, "expired") }
            count(provider, "retry")
            retries.insert(Retry(at: at, challengeID: challenge.id, deviceID: device.id, failures: failures + 1))
            armTimer()
        }
    }

    /// A valid FCM access token, fetched (once for every wake-up waiting) when there is none or it is about to
    /// expire; nil if the token endpoint does not give one.
    private func withAccessToken(_ fcm: FCM, _ body: @escaping (String?) -> Void) {
        if let accessToken, accessToken.expiresAt - 60_000 > clock() { return body(accessToken.token) }
        waitingForAccessToken.append(body)
        guard !fetchingAccessToken else { return }
        fetchingAccessToken = true
        let now = clock() / 1000
        let header = JSONWriter.object { header in
            header.string("alg", "RS256")
            header.string("typ", "JWT")
            header.string("kid", fcm.keyID)
        }
        let claims = JSONWriter.object { claims in
            claims.string("iss", fcm.clientEmail)
            claims.string("scope", "https://www.googleapis.com/auth/firebase.messaging")
            claims.string("aud", fcm.tokenURL)
            claims.integer("iat", now)
            claims.integer("exp", now + 3600)
        }
        let assertion = (try? JWT.signRS256(headerJSON: header, claimsJSON: claims, key: fcm.key)) ?? ""
        let form = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=\(assertion)"
        fcm.tokenClient.send(
            method: "POST", path: fcm.tokenPath, headers: [("content-type", "application/x-www-form-urlencoded")],
            body: Array(form.utf8)
        ) { [self] result in
            fetchingAccessToken = false
            let granted = (try? result.get()).flatMap { response -> (String, Int)? in
                guard response.status == 200,
                    let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
                    let token = object["access_token"] as? String, !token.isEmpty
                else { return nil }
                return (token, object["expires_in"] as? Int ?? 3600)
            }
            if let (token, seconds) = granted {
                accessToken = (token, clock() + UnixMillis(seconds) * 1000)
            } else {
                // The status or the error only: a body from a token endpoint may hold credentials.
                let outcome = (try? result.get()).map { "status \($0.status)" } ?? "\(result)"
                logger.error("the FCM token endpoint gave no access token", metadata: ["result": "\(outcome)"])
            }
            let waiting = waitingForAccessToken
            waitingForAccessToken = []
            for body in waiting { body(granted?.0) }
        }
    }

    /// Sends the retries that are due by the clock, and sets the timer for the next.
    func runDueRetries() {
        let now = clock()
        while let next = retries.min, next.at <= now {
            retries.removeMin()
            source.stillWanted(challengeID: next.challengeID, deviceID: next.deviceID) { [self] wanted in
                if let (device, challenge) = wanted { wake(device, for: challenge, failures: next.failures) }
            }
        }
        armTimer()
    }

    private func armTimer() {
        guard let next = retries.min else { return timer.cancel() }
        timer.schedule(after: Double(max(0, next.at - clock())) / 1000)
    }

    /// The provider token, reused until it is `tokenLifetimeMillis` old.
    private func apnsToken(_ apns: APNs) -> String {
        let now = clock()
        if let providerToken, now - providerToken.issuedAt < Self.tokenLifetimeMillis { return providerToken.jwt }
        let header = JSONWriter.object { header in
            header.string("alg", "ES256")
            header.string("kid", apns.keyID)
        }
        let claims = JSONWriter.object { claims in
            claims.string("iss", apns.teamID)
            claims.integer("iat", now / 1000)
        }
        guard let jwt = try? JWT.signES256(headerJSON: header, claimsJSON: claims, key: apns.key) else {
            logger.error("cannot sign the APNs provider token")
            return ""
        }
        providerToken = (jwt, now)
        return jwt
    }

    private func count(_ provider: String, _ result: String) {
        results[PushOutcome(provider: provider, result: result), default: 0] += 1
    }
}

struct PushOutcome: Hashable, Comparable {
    let provider: String
    let result: String

    static func < (lhs: PushOutcome, rhs: PushOutcome) -> Bool {
        (lhs.provider, lhs.result) < (rhs.provider, rhs.result)
    }
}

private func isHexDigit(_ byte: UInt8) -> Bool {
    (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
}

extension PushRelay: MetricsSource {
    func writeMetrics(to writer: inout MetricsWriter) {
        writer.family("approvald_push_notifications_total", .counter, help: "Wake-up pushes, by provider and result.")
        for (outcome, value) in results.sorted(by: { $0.key < $1.key }) {
            writer.sample(
                "approvald_push_notifications_total", Double(value),
                labels: ["provider": outcome.provider, "result": outcome.result])
        }
    }
}
