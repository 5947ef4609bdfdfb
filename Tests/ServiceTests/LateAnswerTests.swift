// An answer that arrives after a challenge's expiry, before the sweep has reached it: the expiry is committed and
// delivered (its result joins the outbox, the gauges drop) and then the device hears 410 `expired`.
import Core
import Crypto
import Foundation
import Locking
import Protocol
import Store
import Testing

@testable import Service

@Suite struct LateAnswerTests {
    @Test func anAnswerAfterTheExpiryCommitsTheExpiryThenGets410() async throws {
        let now = Locked(UnixMillis(Date().timeIntervalSince1970 * 1000))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try await InProcessBroker(clock: { now.withLock { $0 } }) { loop in
            try! SQLiteJournal(directory: directory) { work in loop.execute(work) }
        }
        defer { broker.stop() }
        let key = try P256PrivateKey()
        let registered = try await broker.idp(
            "PUT", "/v1/tenants/contoso/devices/phone-1", InProcessBroker.registration("alice", key))
        #expect(registered.status == 201)
        let created = try await broker.idp(
            "POST", "/v1/tenants/contoso/challenges",
            "{\"request_id\":\"r-1\",\"user_id\":\"alice\",\"number\":42,\"ttl_seconds\":10}")
        #expect(created.status == 201)
        let view = try #require(try JSONSerialization.jsonObject(with: Data(created.body)) as? [String: Any])
        let challengeID = try #require(view["challenge_id"] as? String)

        // Eleven seconds later by the broker's clock; its sweep timer, set for ten real seconds, has not fired.
        let later = now.withLock { clock -> UnixMillis in
            clock += 11_000
            return clock
        }
        let signedAt = later / 1000
        let decision = decisionString(
            tenantID: "contoso", requestID: "r-1", challengeID: challengeID, deviceID: "phone-1", decision: "approve",
            selectedNumber: 42, reason: nil, signedAtUnix: signedAt)
        let signature = Base64URL.encode(try key.signature(for: decision))
        let answer = try await broker.send(
            "POST", "/v1/devices/phone-1/challenges/\(challengeID)/response",
            "{\"decision\":\"approve\",\"selected_number\":42,\"signed_at_unix\":\(signedAt),\"signature\":\"\(signature)\"}"
        )
        #expect(answer.status == 410)
        #expect(String(decoding: answer.body, as: UTF8.self).contains("\"code\":\"expired\""))
        // The expiry this answer found was made durable and delivered: ended, counted, its result in the outbox (the
        // verifier at port 9 never takes it).
        let (pending, forward, expired) = try await broker.onLoop {
            ($0.gauges.pendingChallenges, $0.gauges.forwardQueueDepth, $0.metrics.resolved["expired"])
        }
        #expect(pending == 0 && forward == 1 && expired == 1)
        let polled = try await broker.idp("GET", "/v1/tenants/contoso/challenges/\(challengeID)", at: signedAt)
        #expect(String(decoding: polled.body, as: UTF8.self).contains("\"status\":\"expired\""))
    }
}
