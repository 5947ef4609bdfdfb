// Several approvald instances on one Redis (a redis-server of the test's own, AOF with appendfsync always): any
// instance serves any request, deliveries cross to the instance that holds a stream or a long poll, the rules hold
// across instances, and a killed instance's results and expiries are taken over. Run with the Redis pass of the
// end-to-end suite (APPROVALD_TEST_STORE=redis), which `make test` runs.
import Foundation
import Glibc
import Locking
import TestSupport
import Testing

/// Instances on one Redis, each with the same IdP clients (results to `verifierURL`) and `extraConfig`.
func instances(
    _ count: Int, on redis: RedisServer, verifierURL: String, extraConfig: String = ""
) throws
    -> [ApprovaldProcess]
{
    try (0..<count).map { _ in
        try ApprovaldProcess(extraConfig: brokerConfiguration(verifierURL: verifierURL) + extraConfig, redis: redis)
    }
}

/// A long poll (`GET …?wait=`) run by curl in the background.
final class BackgroundPoll {
    private let process = Process()
    private let output: String

    convenience init(_ idp: IdP, challengeID: String, wait: Int) throws {
        try self.init(idp, path: "/v1/tenants/contoso/challenges/\(challengeID)?wait=\(wait)", wait: wait)
    }

    /// `path` names its `?wait=`.
    init(_ idp: IdP, path: String, wait: Int) throws {
        output = idp.broker.directory.appendingPathComponent("poll-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "curl", "-sS", "--http2-prior-knowledge", "--max-time", String(wait + 10), "-H",
            idp.signature("GET", path, ""), idp.broker.h2cURL + path,
        ]
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    deinit { if process.isRunning { process.terminate() } }

    /// The poll's answer once it came (within `seconds`), else nil.
    func answer(within seconds: Double) -> [String: Any]? {
        guard eventuallyBlocking(timeout: seconds, { !process.isRunning }) else { return nil }
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }
}

@Suite(.enabled(if: testsRunOnRedis, "runs in the Redis pass of the end-to-end suite"), .serialized)
struct ManyInstancesTests {
    @Test func aSignInCrossesThreeInstances() throws {
        let redis = try RedisServer()
        let verifier = try RecordingServer()
        defer { verifier.stop() }
        let brokers = try instances(3, on: redis, verifierURL: verifier.url)
        let (a, b, c) = (IdP(broker: brokers[0]), IdP(broker: brokers[1]), brokers[2])
        let phone = try SimulatedDevice("kim-phone")
        #expect(try a.register(phone, user: "kim@contoso.com").status == 201)
        let stream = try StreamReader(c, phone)
        #expect(eventuallyBlocking(timeout: 5) { routed(redis, phone.id) })

        let started = Date()
        let created = try b.challenge("cross-1", user: "kim@contoso.com", number: 17)
        #expect(created.status == 201)
        let challengeID = try #require(created.json["challenge_id"] as? String)
        #expect(stream.shows("event: challenge\nid: \(challengeID)"), "C's stream did not get B's challenge")
        print("create on B → event on C's stream: \(Int(Date().timeIntervalSince(started) * 1000)) ms (with curl)")

        let poll = try BackgroundPoll(b, challengeID: challengeID, wait: 20)
        try waitUntilWatched(redis, challengeID)
        let view = try #require(
            (try phone.call(brokers[0], "GET", "/v1/devices/kim-phone/challenges").json["challenges"]
                as? [[String: Any]])?.first)
        let answer = try phone.answer(brokers[0], view, approve: 17)
        #expect(answer.status == 200 && answer.json["status"] as? String == "approved")
        #expect(poll.answer(within: 10)?["status"] as? String == "approved", "B's long poll did not return")
        #expect(stream.shows("event: resolved\nid: \(challengeID)"))
        #expect(stream.text.contains("\"outcome\":\"approved\""))
        // One callback: A sends it, having committed the answer, and the partition's forwarder (whichever instance
        // that is) finds it held for A and does not send it too.
        #expect(eventuallyBlocking(timeout: 10) { verifier.received.count >= 1 })
        Thread.sleep(forTimeInterval: 2.5)
        #expect(verifier.received.compactMap { $0.headers["idempotency-key"] } == [challengeID])
    }

    @Test func simulateCrossesInstancesWithThePhonesOnAnother() throws {
        let redis = try RedisServer()
        var attempt = 1
        while true {
            // The simulation's verifier listens on a port that was free a moment ago (chosen again if taken).
            let probe = try RecordingServer()
            let port = probe.port
            probe.stop()
            let brokers = try instances(2, on: redis, verifierURL: "http://127.0.0.1:\(port)/verify")
            let run = try runCommand(
                [
                    approvaldBinary, "simulate", "--config",
                    brokers[0].directory.appendingPathComponent("approvald.toml").path, "--url", brokers[0].h2cURL,
                    "--device-url", brokers[1].h2cURL, "--devices", "3", "--flows", "4", "--mix",
                    "approve,wrong_number,second_sign_in",
                ], timeout: 60)
            if attempt < 3 && run.stdout.contains("Address already in use") {
                attempt += 1
                continue
            }
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            #expect(run.stdout.contains("(phones on \(brokers[1].h2cURL))"))
            #expect(run.stdout.contains("4 as expected, 0 not"))
            #expect(run.stdout.contains("results at the verifier: 4 of 4, 4 with a valid signature"))
            return
        }
    }

    @Test func theRulesHoldAcrossInstances() throws {
        let redis = try RedisServer()
        let policy = """

            [tenants.contoso]
            max_challenges_per_window = 3
            window_seconds = 600
            lockout_seconds = 600
            """
        let brokers = try instances(3, on: redis, verifierURL: "http://127.0.0.1:9/verify", extraConfig: policy)
        let idps = brokers.map { IdP(broker: $0) }
        let phone = try SimulatedDevice("lee-phone")
        #expect(try idps[0].register(phone, user: "lee@contoso.com").status == 201)

        // Idempotency: the same request_id on another instance is a replay of the same challenge.
        let first = try idps[0].challenge("lee-1", user: "lee@contoso.com")
        let replay = try idps[1].challenge("lee-1", user: "lee@contoso.com")
        #expect(first.status == 201 && replay.status == 200)
        #expect(replay.header("idempotent-replay") == "true")
        #expect(replay.json["challenge_id"] as? String == first.json["challenge_id"] as? String)
        // One unanswered challenge: a second sign-in on a third instance goes down the password path.
        let second = try idps[2].challenge("lee-2", user: "lee@contoso.com")
        #expect(second.json["status"] as? String == "password_fallback")
        #expect(second.json["reason"] as? String == "pending_challenge")
        // The rate window counts creations on every instance.
        let firstID = try #require(first.json["challenge_id"] as? String)
        #expect(try idps[1].call("DELETE", "/v1/tenants/contoso/challenges/\(firstID)").status == 200)
        let third = try idps[2].challenge("lee-3", user: "lee@contoso.com")
        #expect(third.status == 201)
        let thirdID = try #require(third.json["challenge_id"] as? String)
        #expect(try idps[0].call("DELETE", "/v1/tenants/contoso/challenges/\(thirdID)").status == 200)
        let fourth = try idps[1].challenge("lee-4", user: "lee@contoso.com")
        #expect(fourth.status == 201)
        let fourthID = try #require(fourth.json["challenge_id"] as? String)
        #expect(try idps[2].call("DELETE", "/v1/tenants/contoso/challenges/\(fourthID)").status == 200)
        let limited = try idps[2].challenge("lee-5", user: "lee@contoso.com")
        #expect(limited.json["reason"] as? String == "rate_limited")
        // A not_me on one instance locks the user out on the others.
        let other = try SimulatedDevice("max-phone")
        #expect(try idps[0].register(other, user: "max@contoso.com").status == 201)
        let signIn = try idps[1].challenge("max-1", user: "max@contoso.com")
        let view = try #require(
            (try other.call(brokers[2], "GET", "/v1/devices/max-phone/challenges").json["challenges"]
                as? [[String: Any]])?.first)
        #expect(signIn.status == 201)
        #expect(try other.answer(brokers[2], view, deny: "not_me").status == 200)
        #expect(try idps[0].challenge("max-2", user: "max@contoso.com").json["reason"] as? String == "locked_out")
    }

    /// Beside an instance of an older release that says it is alive without naming a state format, this release
    /// still keeps ended challenges apart (a key per challenge; 0.17.0, the oldest release it runs beside, reads
    /// them), and says it reads them, so that the functions record the switch that 0.17 and 0.18 instances wait for
    /// once the older one is gone.
    @Test func endedChallengesAreKeptApartBesideAnInstanceThatNamesNoFormat() throws {
        let redis = try RedisServer()
        @Sendable func cli(_ arguments: [String]) -> String {
            let run = try? runCommand(["redis-cli", "-p", String(redis.port)] + arguments, timeout: 5)
            return (run?.stdout ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        _ = cli(["ZADD", "ap:instances", String(Int64(Date().timeIntervalSince1970 * 1000)), "older"])
        let olderRuns = Locked(true)
        let olderStopped = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            while olderRuns.withLock({ $0 }) {
                _ = cli(["FCALL", "approvald_members", "0", "older", "6000"])
                Thread.sleep(forTimeInterval: 1)
            }
            olderStopped.signal()
        }
        let broker = try instances(1, on: redis, verifierURL: "http://127.0.0.1:9/verify")[0]
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("ola-phone")
        #expect(try idp.register(phone, user: "ola@contoso.com").status == 201)
        func signIn(_ requestID: String) throws -> String {
            let created = try idp.challenge(requestID, user: "ola@contoso.com", number: 5)
            #expect(created.status == 201)
            let view = try #require(
                (try phone.call(broker, "GET", "/v1/devices/ola-phone/challenges").json["challenges"]
                    as? [[String: Any]])?.first)
            #expect(try phone.answer(broker, view, approve: 5).status == 200)
            return try #require(created.json["challenge_id"] as? String)
        }
        func challengeKeys() -> [String] {
            cli(["--scan", "--pattern", "ap:{*}:c:*"]).split(separator: "\n").map(String.init)
        }
        let before = try signIn("ola-1")
        #expect(challengeKeys().map { $0.split(separator: ":").last.map(String.init) } == [before])
        #expect(cli(["HGET", "ap:membership", "format"]).isEmpty, "not recorded while the older instance lives")

        olderRuns.withLock { $0 = false }
        #expect(olderStopped.wait(timeout: .now() + 10) == .success)
        #expect(eventuallyBlocking(timeout: 15) { cli(["HGET", "ap:membership", "format"]) == "3" })
        let after = try signIn("ola-2")
        #expect(Set(challengeKeys().map { $0.split(separator: ":").last.map(String.init) }) == [before, after])
        for (requestID, challengeID) in [("ola-1", before), ("ola-2", after)] {
            let status = try idp.call("GET", "/v1/tenants/contoso/challenges/\(challengeID)")
            #expect(status.json["status"] as? String == "approved", "\(requestID)")
            let replay = try idp.challenge(requestID, user: "ola@contoso.com", number: 5)
            #expect(replay.status == 200 && replay.json["challenge_id"] as? String == challengeID, "\(requestID)")
        }
    }

    @Test func anEnrollmentMadeOnOneInstanceIsCompletedOnAnotherAndHeardOnAThird() throws {
        let redis = try RedisServer()
        let brokers = try instances(3, on: redis, verifierURL: "http://127.0.0.1:9/verify")
        let a = IdP(broker: brokers[0])
        let created = try a.call("POST", "/v1/tenants/contoso/enrollments", "{\"user_id\":\"jo@contoso.com\"}")
        #expect(created.status == 201)
        let enrollmentID = try #require(created.json["enrollment_id"] as? String)
        let code = try #require(created.json["activation_code"] as? String)
        let poll = try BackgroundPoll(
            IdP(broker: brokers[2]), path: "/v1/tenants/contoso/enrollments/\(enrollmentID)?wait=20", wait: 20)
        try waitUntilWatched(redis, enrollmentID)

        let phone = try EnrollingPhone()
        let completed = try send(brokers[1], "POST", "/v1/enroll", body: try phone.body(code: code), headers: [])
        #expect(completed.status == 201, "\(completed.body)")
        let deviceID = try #require(completed.json["device_id"] as? String)
        let heard = try #require(poll.answer(within: 15), "C's long poll did not hear of B's completion")
        #expect(heard["status"] as? String == "completed" && heard["device_id"] as? String == deviceID)
        // A knows the device, and a second phone with the same key is refused on either instance.
        let queuePath = "/v1/devices/\(deviceID)/challenges"
        let queue = try send(
            brokers[0], "GET", queuePath, body: nil, headers: [try phone.authorization(deviceID, "GET", queuePath)])
        #expect(queue.status == 200)
        let again = try a.call("POST", "/v1/tenants/contoso/enrollments", "{\"user_id\":\"jo@contoso.com\"}")
        let secondCode = try #require(again.json["activation_code"] as? String)
        let reused = try send(brokers[0], "POST", "/v1/enroll", body: try phone.body(code: secondCode), headers: [])
        #expect(reused.status == 409 && reused.json["code"] as? String == "device_tenant_conflict")
    }

    @Test func aCIBARequestTakenByOneInstanceIsAnsweredOnAnotherAndCalledBackOnce() throws {
        let redis = try RedisServer()
        let keycloak = try KeycloakStandIn()
        let brokers = try instances(
            3, on: redis, verifierURL: "http://127.0.0.1:9/verify", extraConfig: "\n" + keycloak.tenantConfig)
        let phone = try SimulatedDevice("ciba-phone")
        #expect(try IdP(broker: brokers[0]).register(phone, user: "ida@contoso.com").status == 201)
        let token = try keycloak.token()
        let created = try cibaRequest(brokers[0], token: token, user: "ida@contoso.com", bindingMessage: "27")
        #expect(created.status == 201, "\(created.body)")
        // Keycloak's retry reaches another instance: the same challenge.
        let retried = try cibaRequest(brokers[1], token: token, user: "ida@contoso.com", bindingMessage: "27")
        #expect(
            retried.status == 201 && retried.json["challenge_id"] as? String == created.json["challenge_id"] as? String)

        var view: [String: Any]?
        _ = eventuallyBlocking(timeout: 10) {
            view = (try? phone.call(brokers[2], "GET", "/v1/devices/\(phone.id)/challenges"))?.json["challenges"]
                .flatMap { ($0 as? [[String: Any]])?.first }
            return view != nil
        }
        #expect(try phone.answer(brokers[2], try #require(view), approve: 27).status == 200)
        #expect(keycloak.awaitResult(try jti(of: token)) == "SUCCEED")
        // Whichever instance forwarded it, Keycloak was called once: a second call would have met its 403.
        Thread.sleep(forTimeInterval: 1)
        #expect(keycloak.callbacks.count == 1, "\(keycloak.callbacks)")
    }

    @Test func twoDevicesAnsweringAtOnceOnTwoInstancesHaveOneWinner() throws {
        let redis = try RedisServer()
        let brokers = try instances(2, on: redis, verifierURL: "http://127.0.0.1:9/verify")
        let idp = IdP(broker: brokers[0])
        for round in 0..<5 {
            let phones = [try SimulatedDevice("one-\(round)"), try SimulatedDevice("two-\(round)")]
            let user = "nina-\(round)@contoso.com"
            for phone in phones { #expect(try idp.register(phone, user: user).status == 201) }
            let streams = [try StreamReader(brokers[0], phones[0]), try StreamReader(brokers[1], phones[1])]
            for phone in phones { #expect(eventuallyBlocking(timeout: 5) { routed(redis, phone.id) }) }
            let created = try idp.challenge("race-\(round)", user: user, number: 8)
            let challengeID = try #require(created.json["challenge_id"] as? String)
            let views = try phones.enumerated().map { index, phone in
                try #require(
                    (try phone.call(brokers[index], "GET", "/v1/devices/\(phone.id)/challenges").json["challenges"]
                        as? [[String: Any]])?.first)
            }
            let statuses = Locked<[Int]>([])
            let boxed = UncheckedBox(views)
            DispatchQueue.concurrentPerform(iterations: 2) { index in
                let reply = try? phones[index].answer(brokers[index], boxed.value[index], approve: 8)
                statuses.withLock { $0.append(reply?.status ?? 0) }
            }
            let answered = statuses.withLock { $0 }
            #expect(answered.filter { $0 == 200 }.count == 1, "round \(round): \(answered)")
            // The device whose answer lost is told so on its stream, on its own instance.
            let told = streams.map { $0.shows("\"outcome\":\"answered_elsewhere\"", within: 5) }
            #expect(told.filter { $0 }.count == 1, "round \(round): \(told)")
            let status = try idp.call("GET", "/v1/tenants/contoso/challenges/\(challengeID)")
            #expect(status.json["status"] as? String == "approved")
        }
    }

    @Test func aKilledInstancesResultsAndExpiriesAreTakenOver() throws {
        let redis = try RedisServer()
        let verifier = try RecordingServer()
        defer { verifier.stop() }
        let brokers = try instances(2, on: redis, verifierURL: verifier.url)
        let (survivor, doomed) = (brokers[0], brokers[1])
        let phones = try (0..<40).map { try SimulatedDevice("ledger-\($0)") }
        for (index, phone) in phones.enumerated() {
            #expect(try IdP(broker: brokers[index % 2]).register(phone, user: "u\(index)@contoso.com").status == 201)
        }
        // A phone streaming on the doomed instance, with a sign-in waiting for it.
        let roamer = try SimulatedDevice("roamer")
        #expect(try IdP(broker: survivor).register(roamer, user: "roamer@contoso.com").status == 201)
        let roaming = try StreamReader(doomed, roamer)
        #expect(eventuallyBlocking(timeout: 5) { routed(redis, roamer.id) })
        let waiting = try IdP(broker: survivor).challenge("roam-1", user: "roamer@contoso.com")
        let waitingID = try #require(waiting.json["challenge_id"] as? String)
        #expect(roaming.shows("id: \(waitingID)"))
        // The ledger: every 201 and every 200 answer, from both instances, while the doomed one is killed.
        let created = Locked<[String: Int]>([:])  // challenge id → its ttl_seconds
        let approved = Locked<Set<String>>([])
        let killedAt = Locked<Date?>(nil)
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for index in stride(from: worker, to: phones.count, by: 4) {
                let broker = brokers[index % 2]
                if index == 20 { killedAt.withLock { $0 = Date() }; _ = doomed.stop(signal: SIGKILL) }
                let phone = phones[index]
                let ttl = index % 3 == 0 ? 10 : 120
                guard
                    let reply = try? IdP(broker: broker).call(
                        "POST", "/v1/tenants/contoso/challenges",
                        "{\"request_id\":\"l-\(index)\",\"user_id\":\"u\(index)@contoso.com\",\"number\":3,"
                            + "\"ttl_seconds\":\(ttl)}"),
                    reply.status == 201, let id = reply.json["challenge_id"] as? String
                else { continue }
                created.withLock { $0[id] = ttl }
                guard ttl == 120,
                    let view =
                        (try? phone.call(broker, "GET", "/v1/devices/\(phone.id)/challenges").json[
                            "challenges"] as? [[String: Any]])?.first,
                    let answer = try? phone.answer(broker, view, approve: 3), answer.status == 200
                else { continue }
                approved.withLock { _ = $0.insert(id) }
            }
        }
        let ledger = created.withLock { $0 }
        #expect(ledger.count >= 20, "too few acknowledged creates: \(ledger.count)")
        let answered = approved.withLock { $0 }
        let shortLived = Set(ledger.filter { $0.value == 10 }.keys)
        // The phone reconnects to the survivor and gets its waiting challenge first.
        let reconnected = try StreamReader(survivor, roamer)
        #expect(reconnected.shows("event: challenge\nid: \(waitingID)"))
        // Every ended challenge's result reaches the verifier within a minute of the kill, whichever instance leased
        // its partition: the approved ones, and the short-lived ones, expired by the survivor's sweep (nothing reads
        // them before), though half were created on the killed instance.
        let ended = answered.union(shortLived)
        let sent = { Set(verifier.received.compactMap { $0.headers["idempotency-key"] }) }
        #expect(
            eventuallyBlocking(timeout: 60) { sent().isSuperset(of: ended) },
            "results not taken over: \(ended.subtracting(sent()))")
        // Nothing acknowledged is lost: the survivor knows every one, as it ended.
        let idp = IdP(broker: survivor)
        for (id, ttl) in ledger {
            let status = try idp.call("GET", "/v1/tenants/contoso/challenges/\(id)").json["status"] as? String
            // An answer the killed instance took without answering it may have been applied, or not.
            let allowed: Set = answered.contains(id) ? ["approved"] : ttl == 10 ? ["expired"] : ["pending", "approved"]
            #expect(status.map(allowed.contains) == true, "\(id): \(status ?? "missing")")
        }
        print("killed at \(killedAt.withLock { $0 }.map { "\($0)" } ?? "never"); \(ledger.count) created")
    }
}

/// Whether Redis routes the device's deliveries to some instance (its stream is open there).
func routed(_ redis: RedisServer, _ deviceID: String) -> Bool {
    (try? runCommand(["redis-cli", "-p", String(redis.port), "EXISTS", "ap:route:\(deviceID)"], timeout: 5))?.stdout
        .hasPrefix("1") == true
}

/// Waits until an instance watches the challenge for a long poll.
func waitUntilWatched(_ redis: RedisServer, _ challengeID: String) throws {
    let watched = eventuallyBlocking(timeout: 5) {
        (try? runCommand(["redis-cli", "-p", String(redis.port), "SCARD", "ap:lp:\(challengeID)"], timeout: 5))?
            .stdout.hasPrefix("1") == true
    }
    if !watched { throw TestFailure(description: "no instance watches \(challengeID)") }
}
