// Wake-up pushes (API.md, "Wake-up pushes"): when a challenge is queued for a device with no open stream, the
// device's provider wakes the app. The payload says only that a request waits, and its challenge id: no user, no
// number, no context leaves through a third party. APNs over HTTP/2 with a token-based (ES256 JWT) provider
// credential; 429 and 5xx are retried with backoff while the challenge waits for that device; 410 clears the
// device's token. FCM devices are counted as unconfigured until the FCM relay exists.
import Core
import Crypto
import Foundation
import H2
import HeapModule
import JSONText
import Logging

/// `@unchecked Sendable`: confined to the event loop.
final class PushRelay: @unchecked Sendable {
    struct APNs {
        let keyID: String
        let teamID: String
        let key: P256PrivateKey
        let client: H2Client
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
    private let clock: () -> UnixMillis
    private let logger: Logger
    /// The device and challenge if a wake-up is still wanted: the challenge pending and queued to the device, and
    /// no stream open for it.
    private let stillWanted: (_ challengeID: String, _ deviceID: String) -> (Device, Challenge)?
    /// The provider said the token is no longer valid.
    private let clearToken: (_ deviceID: String, _ token: String) -> Void
    private var providerToken: (jwt: String, issuedAt: UnixMillis)?
    private var retries = Heap<Retry>()
    private var timer: LoopTimer!
    private var random = SystemRandomNumberGenerator()
    private(set) var results: [PushOutcome: UInt64] = [:]

    init(
        loop: EventLoop, apns: Configuration.APNs?, clock: @escaping () -> UnixMillis, logger: Logger,
        stillWanted: @escaping (String, String) -> (Device, Challenge)?,
        clearToken: @escaping (String, String) -> Void
    ) throws {
        if let apns {
            let tls = apns.endpoint.hasPrefix("https://") ? try TLSClientContext(caFile: apns.caFile) : nil
            self.apns = APNs(
                keyID: apns.keyID, teamID: apns.teamID, key: try P256PrivateKey(pem: apns.privateKeyPEM),
                client: try H2Client(loop: loop, origin: apns.endpoint, tls: tls, logger: logger))
        } else {
            self.apns = nil
        }
        self.clock = clock
        self.logger = logger
        self.stillWanted = stillWanted
        self.clearToken = clearToken
        timer = loop.makeTimer { [unowned self] in runDueRetries() }
    }

    /// A challenge was queued for `device`, which has no stream open.
    func wake(_ device: Device, for challenge: Challenge, failures: Int = 0) {
        let token = device.push.token
        guard device.push.provider != .none, !token.isEmpty else { return }
        guard device.push.provider == .apns, let apns else {
            return count(device.push.provider.rawValue, "unconfigured")
        }
        // Hex, as APNs issues them; anything else would not be a path segment of its own.
        guard token.utf8.allSatisfy({ isHexDigit($0) }), token.utf8.count <= 200 else {
            return count("apns", "invalid_token")
        }
        let body =
            "{\"aps\":{\"alert\":{\"title\":\"Sign-in request\",\"body\":\"Open the app to review it.\"},"
            + "\"sound\":\"default\"},\"challenge_id\":\(jsonString(challenge.id))}"
        apns.client.send(
            method: "POST", path: "/3/device/\(token)",
            headers: [
                ("authorization", "bearer \(apnsToken(apns))"), ("apns-topic", device.push.topic),
                ("apns-push-type", "alert"), ("apns-priority", "10"),
                ("apns-expiration", String(challenge.expiresAt / 1000)), ("apns-collapse-id", challenge.id),
            ], body: Array(body.utf8)
        ) { [self] result in
            answered(result, device: device, challenge: challenge, failures: failures)
        }
    }

    private func answered(
        _ result: Result<H2ClientResponse, H2ClientError>, device: Device, challenge: Challenge, failures: Int
    ) {
        let status = (try? result.get())?.status ?? 0
        switch status {
        case 200: return count("apns", "sent")
        case 410:
            count("apns", "unregistered")
            return clearToken(device.id, device.push.token)
        case 400..<500 where status != 429:
            // A refused provider token is signed anew for the next push.
            if status == 403 { providerToken = nil }
            let reason = (try? result.get()).map { String(decoding: $0.body.prefix(200), as: UTF8.self) } ?? ""
            logger.warning(
                "APNs refused a wake-up",
                metadata: ["status": "\(status)", "reason": "\(reason)", "device_id": "\(device.id)"])
            return count("apns", "rejected")
        default:
            // 429, 5xx, no answer: again later, while the challenge still waits for this device.
            let at = clock() + RetrySchedule.delayMillis(afterFailures: failures + 1, using: &random)
            guard at < challenge.expiresAt else { return count("apns", "expired") }
            count("apns", "retry")
            retries.insert(Retry(at: at, challengeID: challenge.id, deviceID: device.id, failures: failures + 1))
            armTimer()
        }
    }

    /// Sends the retries that are due by the clock, and sets the timer for the next.
    func runDueRetries() {
        let now = clock()
        while let next = retries.min, next.at <= now {
            retries.removeMin()
            if let (device, challenge) = stillWanted(next.challengeID, next.deviceID) {
                wake(device, for: challenge, failures: next.failures)
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
        let header = "{\"alg\":\"ES256\",\"kid\":\(jsonString(apns.keyID))}"
        let claims = "{\"iss\":\(jsonString(apns.teamID)),\"iat\":\(now / 1000)}"
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
