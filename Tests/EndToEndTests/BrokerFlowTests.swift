// The broker end to end on the real binary: register, create, the device sees it on its stream and by polling,
// answers, the IdP's long poll sees the outcome; fallbacks, replays, authentication, a restart.
import Foundation
import Glibc
import TestSupport
import Testing

@Suite struct BrokerFlowTests {
    /// Every labelled series a dashboard or alert reads exists from the start, at 0, not only after its first event.
    @Test func aFreshBrokerExportsItsLabelledSeriesAtZero() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let metrics = Set(try broker.curl("/metrics").body.split(separator: "\n").map(String.init))
        let expected =
            ["approved", "denied", "expired", "cancelled"].map {
                "approvald_challenges_resolved_total{outcome=\"\($0)\"} 0"
            }
            + ["pending_challenge", "no_device", "policy", "rate_limited", "locked_out"].map {
                "approvald_password_fallback_total{reason=\"\($0)\"} 0"
            }
            + ["delivered", "retry", "dead_letter"].map { "approvald_forward_attempts_total{result=\"\($0)\"} 0" }
            + ["idp", "device"].map { "approvald_auth_failures_total{kind=\"\($0)\"} 0" }
            + ["apns", "fcm"].map { "approvald_push_notifications_total{provider=\"\($0)\",result=\"sent\"} 0" }
            + ["contoso", "fabrikam"].map { "approvald_tenant_queue_depth{tenant=\"\($0)\"} 0" }
        #expect(Set(expected).subtracting(metrics).isEmpty, "\(Set(expected).subtracting(metrics))")
    }

    /// Every call of both parties over h2c, and again over HTTP/1.1 (the event stream a chunked response).
    @Test(arguments: CleartextProtocol.allCases)
    func aSignInFromCreationToApproval(over cleartextProtocol: CleartextProtocol) throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        broker.cleartextProtocol = cleartextProtocol
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("alice-phone")
        let tablet = try SimulatedDevice("alice-tablet")
        #expect(try idp.register(phone, user: "alice@contoso.com").status == 201)
        #expect(try idp.register(phone, user: "alice@contoso.com").status == 200)
        #expect(try idp.register(tablet, user: "alice@contoso.com").status == 201)
        let phoneStream = try StreamReader(broker, phone)
        let tabletStream = try StreamReader(broker, tablet)
        #expect(
            eventuallyBlocking { (try? broker.curl("/metrics").body.contains("approvald_device_streams 2")) == true })

        let created = try idp.challenge("signin-1", user: "alice@contoso.com")
        #expect(created.status == 201)
        let challengeID = try #require(created.json["challenge_id"] as? String)
        #expect(challengeID.hasPrefix("ch_") && challengeID.count == 25)
        #expect(created.json["status"] as? String == "pending")
        #expect(created.json["devices"] as? [String] == ["alice-phone", "alice-tablet"])
        #expect((created.json["expires_at"] as? String)?.hasSuffix("Z") == true)

        // The device sees it on its stream and by polling; never the number itself.
        #expect(phoneStream.shows("event: challenge\nid: \(challengeID)"))
        let queue = try phone.call(broker, "GET", "/v1/devices/alice-phone/challenges")
        #expect(queue.status == 200)
        let views = try #require(queue.json["challenges"] as? [[String: Any]])
        #expect(views.count == 1)
        let view = views[0]
        #expect(view["number"] == nil)
        let choices = try #require(view["choices"] as? [Int])
        #expect(choices.count == 3 && choices.contains(42))
        #expect((view["context"] as? [String: String])?["app"] == "Outlook")

        // The IdP waits; the phone approves with the right number.
        let longPoll = inBackground { try idp.call("GET", "/v1/tenants/contoso/challenges/\(challengeID)?wait=15") }
        usleep(300_000)
        let answered = try phone.answer(broker, view, approve: 42)
        #expect(answered.status == 200)
        #expect(answered.json["status"] as? String == "approved")
        let outcome = try longPoll.value(within: 20)
        #expect(outcome.json["status"] as? String == "approved")
        #expect(outcome.json["device_id"] as? String == "alice-phone")
        #expect(phoneStream.shows("\"outcome\":\"approved\""))
        #expect(tabletStream.shows("\"outcome\":\"answered_elsewhere\""))
        // The same answer signed anew (a new time, a new ECDSA signature) is a retry: the same outcome. Another
        // answer from the phone, or any from the tablet, is too late.
        let retried = try phone.answer(broker, view, approve: 42, signedAt: unixNow() + 1)
        #expect(retried.status == 200 && retried.json["status"] as? String == "approved")
        #expect(try phone.answer(broker, view, approve: 17).status == 409)
        #expect(try tablet.answer(broker, view, approve: 42).status == 409)

        let metrics = try broker.curl("/metrics").body
        #expect(metrics.contains("approvald_challenges_created_total 1"))
        #expect(metrics.contains("approvald_challenges_resolved_total{outcome=\"approved\"} 1"))
        #expect(metrics.contains("approvald_queue_depth 0"))
        #expect(metrics.contains("approvald_pending_challenges 0"))
        #expect(
            metrics.contains(
                "approvald_http_connections{protocol=\"\(cleartextProtocol == .h2c ? "h2" : "http/1.1")\"} 3"))
    }

    @Test func streamsCarryKeepalivesAndTenantGauges() throws {
        let broker = try ApprovaldProcess(extraConfig: "[http2]\nstream_keepalive_seconds = 0.5\n" + brokerConfig)
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("ivan-phone")
        #expect(try idp.register(phone, user: "ivan@contoso.com").status == 201)
        let stream = try StreamReader(broker, phone)
        #expect(stream.shows(": keepalive\n\n", within: 5))
        // A second tenant's client registers its own user: per-tenant queue depth separates them.
        var fabrikam = IdP(broker: broker)
        fabrikam.keyID = "fabrikam-idp"
        fabrikam.secret = "another secret that is at least thirty-two bytes"
        let other = try SimulatedDevice("judy-phone")
        #expect(try fabrikam.register(other, user: "judy@fabrikam.com", tenant: "fabrikam").status == 201)
        #expect(try idp.challenge("one", user: "ivan@contoso.com").status == 201)
        #expect(try fabrikam.challenge("two", user: "judy@fabrikam.com", tenant: "fabrikam").status == 201)
        // Shared gauges: on Redis read again every second.
        #expect(
            eventuallyBlocking(timeout: 5) {
                let metrics = (try? broker.curl("/metrics").body) ?? ""
                return metrics.contains("approvald_tenant_queue_depth{tenant=\"contoso\"} 1")
                    && metrics.contains("approvald_tenant_queue_depth{tenant=\"fabrikam\"} 1")
                    && metrics.contains("approvald_queue_depth 2")
            })
        // The contoso client cannot see fabrikam's challenge, even by id.
        let theirs = try fabrikam.challenge("two", user: "judy@fabrikam.com", tenant: "fabrikam")
        let id = theirs.json["challenge_id"] as? String ?? ""
        #expect(try idp.call("GET", "/v1/tenants/fabrikam/challenges/\(id)").status == 403)
        #expect(try idp.call("GET", "/v1/tenants/contoso/challenges/\(id)").status == 404)
    }

    @Test func fallbacksReplaysAndConflicts() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("bob-phone")
        #expect(try idp.register(phone, user: "bob@contoso.com").status == 201)
        let first = try idp.challenge("a", user: "bob@contoso.com")
        #expect(first.status == 201)
        let second = try idp.challenge("b", user: "bob@contoso.com")
        #expect(second.status == 200)
        #expect(second.json["status"] as? String == "password_fallback")
        #expect(second.json["reason"] as? String == "pending_challenge")
        let replay = try idp.challenge("a", user: "bob@contoso.com")
        #expect(replay.status == 200 && replay.header("idempotent-replay") == "true")
        #expect(replay.json["challenge_id"] as? String == first.json["challenge_id"] as? String)
        let conflict = try idp.challenge("a", user: "bob@contoso.com", number: 7)
        #expect(conflict.status == 409 && conflict.json["code"] as? String == "idempotency_conflict")
        let noDevice = try idp.challenge("c", user: "nobody@contoso.com")
        #expect(noDevice.json["reason"] as? String == "no_device")
        // A wrong number denies; a not_me locks the user out.
        let view = try #require(
            (try phone.call(broker, "GET", "/v1/devices/bob-phone/challenges").json["challenges"] as? [[String: Any]])?
                .first)
        let denied = try phone.answer(broker, view, deny: "not_me")
        #expect(denied.json["status"] as? String == "denied")
        #expect(try idp.challenge("d", user: "bob@contoso.com").json["reason"] as? String == "locked_out")
        let cancelled = try idp.call(
            "DELETE", "/v1/tenants/contoso/challenges/\(first.json["challenge_id"] as? String ?? "")")
        #expect(cancelled.status == 200 && cancelled.json["status"] as? String == "denied")
        let metrics = try broker.curl("/metrics").body
        #expect(metrics.contains("approvald_password_fallback_total{reason=\"pending_challenge\"} 1"))
        #expect(metrics.contains("approvald_duplicate_requests_total 1"))
    }

    @Test func authenticationAndTenantScope() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idp = IdP(broker: broker)
        let path = "/v1/tenants/contoso/policy"
        #expect(try send(broker, "GET", path, body: nil, headers: []).status == 401)
        var wrongSecret = idp
        wrongSecret.secret = "not the secret but just as long as the real one is"
        #expect(try wrongSecret.call("GET", path).status == 401)
        #expect(try idp.call("GET", path, skew: -301).status == 401)
        #expect(try idp.call("GET", path, skew: 299).status == 200)
        var unknown = idp
        unknown.keyID = "nobody"
        #expect(try unknown.call("GET", path).status == 401)
        let otherTenant = try idp.call("GET", "/v1/tenants/fabrikam/policy")
        #expect(otherTenant.status == 403 && otherTenant.json["code"] as? String == "forbidden")
        // A tampered body no longer matches its signature.
        let body = "{\"passwordless\":false}"
        let header = idp.signature("PUT", path, body)
        #expect(try send(broker, "PUT", path, body: "{\"passwordless\":true} ", headers: [header]).status == 401)
        #expect(try idp.call("GET", path).json["passwordless"] as? Bool == true)

        // Devices: a key that is not the registered one, and a device acting for another.
        let phone = try SimulatedDevice("carol-phone")
        let other = try SimulatedDevice("dave-phone")
        #expect(try idp.register(phone, user: "carol@contoso.com").status == 201)
        #expect(try idp.register(other, user: "dave@contoso.com").status == 201)
        let impostor = try SimulatedDevice("carol-phone")
        #expect(try impostor.call(broker, "GET", "/v1/devices/carol-phone/challenges").status == 401)
        // Signing as carol-phone with dave's key: the signature fails against carol's key.
        let crossPath = "/v1/devices/carol-phone/challenges"
        let cross = try send(
            broker, "GET", crossPath, body: nil,
            headers: [try other.authorization("GET", crossPath, "", as: "carol-phone")])
        #expect(cross.status == 401)
        // Authenticated as itself, dave-phone may not read carol's queue.
        let asOther = try send(
            broker, "GET", "/v1/devices/carol-phone/challenges", body: nil,
            headers: [try other.authorization("GET", "/v1/devices/carol-phone/challenges", "", as: "dave-phone")])
        #expect(asOther.status == 403)
        #expect(try broker.curl("/metrics").body.contains("approvald_auth_failures_total{kind=\"idp\"}"))
    }

    @Test func registrationRules() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("erin-phone")
        #expect(try idp.register(phone, user: "erin@contoso.com").status == 201)
        let conflict = try idp.register(phone, user: "frank@contoso.com")
        #expect(conflict.status == 409 && conflict.json["code"] as? String == "device_tenant_conflict")
        let badKey = try idp.call(
            "PUT", "/v1/tenants/contoso/devices/x", "{\"user_id\":\"erin@contoso.com\",\"public_key\":\"AAAA\"}")
        #expect(badKey.status == 400 && badKey.json["code"] as? String == "invalid_field")
        let badJSON = try idp.call("PUT", "/v1/tenants/contoso/devices/x", "{not json")
        #expect(badJSON.status == 400 && badJSON.json["code"] as? String == "invalid_json")
        let wrongType = try idp.call(
            "POST", "/v1/tenants/contoso/challenges", "{\"request_id\":\"r\",\"user_id\":\"u\",\"number\":\"42\"}")
        #expect(wrongType.status == 400 && (wrongType.json["detail"] as? String)?.contains("number") == true)
        let managed = try idp.call(
            "PUT", "/v1/tenants/contoso/devices/y",
            "{\"user_id\":\"gina@contoso.com\",\"mam_restricted\":true,\"public_key\":\"\(Data(phone.key.spkiDER).base64EncodedString())\"}"
        )
        #expect(managed.status == 403 && managed.json["code"] as? String == "mam_restricted")
        let list = try idp.call("GET", "/v1/tenants/contoso/users/erin%40contoso.com/devices")
        #expect((list.json["devices"] as? [[String: Any]])?.first?["device_id"] as? String == "erin-phone")
        #expect(try idp.call("DELETE", "/v1/tenants/contoso/devices/erin-phone").status == 204)
        #expect(try idp.call("DELETE", "/v1/tenants/contoso/devices/erin-phone").status == 404)
    }

    @Test func pendingChallengesSurviveARestartAndStillExpireOnTime() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent(
            "approvald-restart-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: data) }
        var broker = try ApprovaldProcess(extraConfig: brokerConfig, dataDirectory: data)
        var idp = IdP(broker: broker)
        let phone = try SimulatedDevice("hana-phone")
        #expect(try idp.register(phone, user: "hana@contoso.com").status == 201)
        let short = try idp.call(
            "POST", "/v1/tenants/contoso/challenges",
            "{\"request_id\":\"short\",\"user_id\":\"hana@contoso.com\",\"number\":5,\"ttl_seconds\":10}")
        #expect(short.status == 201)
        #expect(broker.stop(signal: SIGKILL) != nil)

        broker = try ApprovaldProcess(extraConfig: brokerConfig, dataDirectory: data, redis: broker.redis)
        idp = IdP(broker: broker)
        let id = short.json["challenge_id"] as? String ?? ""
        let after = try idp.call("GET", "/v1/tenants/contoso/challenges/\(id)")
        #expect(after.json["status"] as? String == "pending")
        #expect(after.json["expires_at"] as? String == short.json["expires_at"] as? String)
        // The replay still knows it; the device still has it; then it expires at its deadline.
        #expect(
            try idp.call(
                "POST", "/v1/tenants/contoso/challenges",
                "{\"request_id\":\"short\",\"user_id\":\"hana@contoso.com\",\"number\":5,\"ttl_seconds\":10}"
            ).header("idempotent-replay") == "true")
        #expect(
            (try phone.call(broker, "GET", "/v1/devices/hana-phone/challenges").json["challenges"] as? [Any])?.count
                == 1)
        let expired = try idp.call("GET", "/v1/tenants/contoso/challenges/\(id)?wait=15")
        #expect(expired.json["status"] as? String == "expired")
    }
}

/// Work on a thread of its own: these tests block, and would starve Swift's cooperative pool of the thread a
/// Task needs.
final class Background<Value>: @unchecked Sendable {
    private var result: Result<Value, any Error>?
    private let done = DispatchSemaphore(value: 0)

    init(_ work: @escaping @Sendable () throws -> Value) {
        let thread = Thread { [self] in
            result = Result { try work() }
            done.signal()
        }
        thread.start()
    }

    /// The work's value, or an error after `seconds`.
    func value(within seconds: Double) throws -> Value {
        guard done.wait(timeout: .now() + seconds) == .success, let result else {
            throw ApprovaldError(description: "timed out after \(seconds) s")
        }
        return try result.get()
    }
}

func inBackground<Value>(_ work: @escaping @Sendable () throws -> Value) -> Background<Value> { Background(work) }

@Suite struct BenchToolTests {
    @Test(arguments: ["creates", "roundtrips", "streams"])
    func theLoadToolCompletesSignInsWithoutFailures(mode: String) throws {
        // Users take turns, but a phone that answers faster may take a fifth sign-in of the forty: the rate window
        // (5 by default) is not what this test is about.
        let broker = try ApprovaldProcess(
            extraConfig: brokerConfig + "\n[tenants.contoso]\nmax_challenges_per_window = 40\n")
        let result = try runCommand(
            [
                approvaldBinary, "bench", "--url", broker.h2cURL, "--key-id", "test-idp", "--secret",
                "a test secret that is at least thirty-two bytes", "--tenant", "contoso", "--mode", mode, "--requests",
                "40",
                "--concurrency", "8", "--connections", "2", "--hold", "1", "--users", "10",
            ], timeout: 60)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let summary = result.stdout.split(separator: "\n").first { $0.hasPrefix("bench \(mode) ") } ?? ""
        #expect(summary.contains("requests=40") && summary.contains("failures=0"), "\(result.stdout)")
        #expect(summary.contains("p99="))
        let metrics = try broker.curl("/metrics").body
        if mode == "streams" {
            // Every device held its stream for the hold time without it ending early.
            #expect(result.stdout.contains("holding 40 streams"))
            #expect(!result.stdout.contains("failures while holding"))
            return
        }
        #expect(metrics.contains("approvald_challenges_created_total 40"))
        if mode == "roundtrips" {
            // Ten phones on their streams, four sign-ins each, every one approved.
            #expect(result.stdout.contains("bench register requests=10 "))
            #expect(metrics.contains("approvald_challenges_resolved_total{outcome=\"approved\"} 40"))
        }
    }

    @Test func aWrongSecretMakesTheLoadToolFail() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let result = try runCommand(
            [
                approvaldBinary, "bench", "--url", broker.h2cURL, "--key-id", "test-idp", "--secret",
                "not the secret, but as long as the real one is", "--tenant", "contoso", "--requests", "5",
            ], timeout: 60)
        #expect(result.status != 0)
        #expect(result.stdout.contains("first failure: register: 401"))
    }
}
