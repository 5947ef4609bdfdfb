// The OpenID provider on several instances of one Redis: nothing of a sign-in lives in one instance's memory, so the
// page, its follow-up and the token request each go to another instance, and a code redeemed on two instances at
// once is redeemed once. Run with the Redis pass of the end-to-end suite (APPROVALD_TEST_STORE=redis).
import Foundation
import Glibc
import Locking
import TestSupport
import Testing

@Suite(.enabled(if: testsRunOnRedis, "runs in the Redis pass of the end-to-end suite"), .serialized)
struct OIDCInstancesTests {
    @Test func aSignInCrossesThreeInstancesAndItsCodeIsRedeemedOnceAmongThem() throws {
        let redis = try RedisServer()
        let brokers = try instances(
            3, on: redis, verifierURL: "http://127.0.0.1:9/verify",
            extraConfig: try oidcSection(issuer: "http://login.contoso.test", clients: OIDCSignInTests.webappClient))
        let phone = try SimulatedDevice("lee-phone")
        #expect(try IdP(broker: brokers[0]).register(phone, user: "lee@contoso.com").status == 201)

        // One browser (one cookie jar: cookies are the host's, whatever the port) on three instances.
        let first = Browser(brokers[0])
        let second = Browser(brokers[1], jar: first.jar)
        let started = try first.get(
            "/oidc/authorize?" + OIDCSignInTests().authorizeQuery([("login_hint", "lee@contoso.com")]))
        #expect(started.status == 303, "\(started.body)")
        let path = "/oidc/" + (started.header("location") ?? "")
        let page = try second.get(path)
        let shown = try #require(pageValue(page.body, after: "aria-label=\"the number ").flatMap { Int($0) })
        let view = try #require(
            (try phone.call(brokers[2], "GET", "/v1/devices/lee-phone/challenges").json["challenges"]
                as? [[String: Any]])?.first)
        #expect(try phone.answer(brokers[2], view, approve: shown).status == 200)
        let status = try first.get(path.replacingOccurrences(of: "sign-in?", with: "sign-in/status?") + "&wait=5")
        #expect(status.json["status"] as? String == "ended")
        let back = try second.get(path)
        let code = try #require(queryParameters(back.header("location") ?? "")["code"])

        // The client redeems the code on two instances at once: one gets the tokens, the other invalid_grant.
        let replies = Locked<[Reply]>([])
        DispatchQueue.concurrentPerform(iterations: 2) { index in
            let browser = Browser(brokers[1 + index])
            let reply = try? browser.post(
                "/oidc/token",
                form: OIDCSignInTests.redemption(code))
            if let reply { replies.withLock { $0.append(reply) } }
        }
        let statuses = replies.withLock { $0.map(\.status) }.sorted()
        #expect(statuses == [200, 400], "\(replies.withLock { $0.map(\.body) })")
        let refused = replies.withLock { $0.first { $0.status == 400 } }
        #expect(refused?.json["error"] as? String == "invalid_grant")
        // And once more on the first instance, which redeemed nothing.
        let third = try first.post(
            "/oidc/token",
            form: OIDCSignInTests.redemption(code))
        #expect(third.status == 400 && third.json["error"] as? String == "invalid_grant")
    }
}

@Suite struct OIDCRestartTests {
    /// The flow is the browser's and the challenge the store's: a `kill -9` between the number page and the
    /// approval, and a restart on the same data, lose nothing.
    @Test func aKillBetweenTheNumberAndTheApprovalLosesNoSignIn() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-data-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let config =
            try brokerConfig
            + oidcSection(issuer: "http://login.contoso.test", clients: OIDCSignInTests.webappClient)
        var broker = try ApprovaldProcess(extraConfig: config, dataDirectory: data)
        let phone = try SimulatedDevice("max-phone")
        #expect(try IdP(broker: broker).register(phone, user: "max@contoso.com").status == 201)
        let browser = Browser(broker)
        let started = try browser.get(
            "/oidc/authorize?" + OIDCSignInTests().authorizeQuery([("login_hint", "max@contoso.com")]))
        let path = "/oidc/" + (started.header("location") ?? "")
        let shown = try #require(
            pageValue(try browser.get(path).body, after: "aria-label=\"the number ").flatMap { Int($0) })

        #expect(broker.stop(signal: SIGKILL) != nil)
        broker = try ApprovaldProcess(extraConfig: config, dataDirectory: data, redis: broker.redis)
        let again = Browser(broker, jar: browser.jar)
        let view = try #require(
            (try phone.call(broker, "GET", "/v1/devices/max-phone/challenges").json["challenges"] as? [[String: Any]])?
                .first)
        #expect(try phone.answer(broker, view, approve: shown).status == 200)
        let back = try again.get(path)
        let code = try #require(queryParameters(back.header("location") ?? "")["code"])
        let tokens = try again.post(
            "/oidc/token",
            form: OIDCSignInTests.redemption(code))
        #expect(
            tokens.status == 200
                && jwtClaims(tokens.json["id_token"] as? String ?? "")["sub"] as? String
                    == "max@contoso.com"
        )
    }
}
