// Results to the verifier on the real binary: a sign-in ends at the verifier with the device's signed decision and
// the IdP client's signature; results that could not be delivered survive a kill -9 and arrive after the restart.
import Crypto
import Foundation
import Glibc
import TestSupport
import Testing

@Suite struct ResultsTests {
    @Test func aSignInEndsAtTheVerifierWithTheSignedResult() throws {
        let verifier = try RecordingServer()
        defer { verifier.stop() }
        let broker = try ApprovaldProcess(extraConfig: brokerConfiguration(verifierURL: verifier.url))
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("ada-phone")
        #expect(try idp.register(phone, user: "ada@contoso.com").status == 201)
        let created = try idp.challenge("signin-ada", user: "ada@contoso.com")
        let challengeID = try #require(created.json["challenge_id"] as? String)
        let queue = try phone.call(broker, "GET", "/v1/devices/ada-phone/challenges")
        let view = try #require((queue.json["challenges"] as? [[String: Any]])?.first)
        let signedAt = unixNow()
        #expect(try phone.answer(broker, view, approve: 42, signedAt: signedAt).status == 200)

        #expect(eventuallyBlocking { verifier.received.count == 1 })
        let callback = verifier.received[0]
        #expect(callback.path == "/approvald/results" && callback.headers["idempotency-key"] == challengeID)
        let signature = callback.headers["approvald-signature"] ?? ""
        let time = signature.split(separator: ",").first { $0.contains("t=") }?.split(separator: "=").last ?? ""
        let mac = HMACSHA256.authenticationCode(
            key: Array("a test secret that is at least thirty-two bytes".utf8),
            message: Array("\(time)\nPOST\n/approvald/results\n".utf8) + callback.body)
        #expect(signature == "key=test-idp, t=\(time), v1=\(hex(mac))")
        let body = callback.json
        #expect(body["outcome"] as? String == "approved" && body["device_id"] as? String == "ada-phone")
        #expect(body["request_id"] as? String == "signin-ada" && body["user_id"] as? String == "ada@contoso.com")
        let decision = try #require(body["decision"] as? [String: Any])
        #expect(decision["decision"] as? String == "approve" && decision["selected_number"] as? Int == 42)
        #expect(decision["signed_at_unix"] as? Int64 == signedAt && decision["reason"] is NSNull)
        // The device's own signature travels to the verifier, which can check it against the decision string.
        let lines = [
            "approvald-decision-v1", "contoso", "signin-ada", challengeID, "ada-phone", "approve", "42", "",
            String(signedAt),
        ]
        let deviceSignature = try #require(Base64URL.decode(decision["signature"] as? String ?? ""))
        #expect(
            try P256PublicKey(spkiDER: phone.key.spkiDER).isValidSignature(
                deviceSignature, for: lines.joined(separator: "\n")))

        #expect(
            eventuallyBlocking {
                let metrics = (try? broker.curl("/metrics").body) ?? ""
                return metrics.contains("approvald_forward_attempts_total{result=\"delivered\"} 1")
                    && metrics.contains("approvald_forward_queue_depth 0")
                    && metrics.contains("approvald_forward_latency_seconds_count 1")
            })
    }

    @Test func resultsQueuedWhileTheVerifierIsDownArriveAfterAKillAndARestart() throws {
        // A port that is free now: nothing answers there until the verifier comes up on it.
        let probe = try RecordingServer()
        let port = probe.port
        probe.stop()
        let url = "http://127.0.0.1:\(port)/approvald/results"
        let data = FileManager.default.temporaryDirectory.appendingPathComponent(
            "approvald-outbox-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: data) }
        var broker = try ApprovaldProcess(extraConfig: brokerConfiguration(verifierURL: url), dataDirectory: data)
        var idp = IdP(broker: broker)
        let ended = try (0..<3).map { try idp.cancelledSignIn($0) }
        #expect(resultsAreRetried(broker, count: 3))
        #expect(broker.stop(signal: SIGKILL) != nil)

        broker = try ApprovaldProcess(
            extraConfig: brokerConfiguration(verifierURL: url), dataDirectory: data, redis: broker.redis)
        idp = IdP(broker: broker)
        #expect(try broker.curl("/metrics").body.contains("approvald_forward_queue_depth 3"))
        let verifier = try RecordingServer(port: port)
        defer { verifier.stop() }
        #expect(
            eventuallyBlocking(timeout: 20) {
                Set(verifier.received.compactMap { $0.headers["idempotency-key"] }) == Set(ended)
            })
        #expect(verifier.received.allSatisfy { $0.json["outcome"] as? String == "cancelled" })
        #expect(
            eventuallyBlocking {
                (try? broker.curl("/metrics").body.contains("approvald_forward_queue_depth 0")) == true
            })
    }

    @Test func aDeadLetterRedrivenOnceTheVerifierIsMendedArrivesOnceEvenAfterAKill() throws {
        let refusing = try RecordingServer(status: 400)
        let port = refusing.port
        let data = FileManager.default.temporaryDirectory.appendingPathComponent(
            "approvald-redrive-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let configuration = brokerConfiguration(verifierURL: refusing.url)
        var broker = try ApprovaldProcess(extraConfig: configuration, dataDirectory: data)
        var idp = IdP(broker: broker)
        #expect(try idp.register(try SimulatedDevice("grace-phone"), user: "grace@contoso.com").status == 201)
        let challengeID = try #require(
            try idp.challenge("signin-grace", user: "grace@contoso.com").json["challenge_id"] as? String)
        #expect(try idp.call("DELETE", "/v1/tenants/contoso/challenges/\(challengeID)").status == 200)
        func deadLetters(_ idp: IdP) -> [String]? {
            ((try? idp.call("GET", "/v1/tenants/contoso/dead-letters").json["dead_letters"]) as? [[String: Any]])?
                .compactMap { $0["challenge_id"] as? String }
        }
        #expect(eventuallyBlocking { deadLetters(idp) == [challengeID] })
        refusing.stop()

        // Only the tenant's own dead letters, and only dead letters.
        var fabrikam = IdP(broker: broker)
        fabrikam.keyID = "fabrikam-idp"
        fabrikam.secret = "another secret that is at least thirty-two bytes"
        let other = try fabrikam.call("POST", "/v1/tenants/fabrikam/dead-letters/\(challengeID)/retry")
        #expect(other.status == 404 && other.body.contains("not_found"))
        #expect(try fabrikam.call("POST", "/v1/tenants/contoso/dead-letters/\(challengeID)/retry").status == 403)
        #expect(try idp.call("POST", "/v1/tenants/contoso/dead-letters/ch_unknown/retry").status == 404)
        #expect(try fabrikam.call("POST", "/v1/tenants/fabrikam/dead-letters/retry").json["requeued"] as? Int == 0)

        // Acknowledged while the verifier is still down, then the broker is killed: the redrive holds.
        let redriven = try idp.call("POST", "/v1/tenants/contoso/dead-letters/\(challengeID)/retry")
        #expect(redriven.status == 202 && redriven.json["requeued"] as? Int == 1)
        #expect(deadLetters(idp) == [])
        #expect(try idp.call("POST", "/v1/tenants/contoso/dead-letters/\(challengeID)/retry").status == 404)
        #expect(broker.stop(signal: SIGKILL) != nil)

        let verifier = try RecordingServer(port: port)
        defer { verifier.stop() }
        broker = try ApprovaldProcess(extraConfig: configuration, dataDirectory: data, redis: broker.redis)
        idp = IdP(broker: broker)
        #expect(eventuallyBlocking(timeout: 20) { verifier.received.count == 1 })
        let callback = try #require(verifier.received.first)
        #expect(callback.headers["idempotency-key"] == challengeID)
        #expect(
            callback.json["outcome"] as? String == "cancelled"
                && callback.json["request_id"] as? String == "signin-grace")
        Thread.sleep(forTimeInterval: 1)
        #expect(verifier.received.count == 1 && deadLetters(idp) == [])
        #expect(try idp.call("POST", "/v1/tenants/contoso/dead-letters/retry").json["requeued"] as? Int == 0)
    }

    /// The create's traceparent is stored with the challenge and its result (kill -9 and a restart between) and
    /// sent with the callback; an invalid one is ignored.
    @Test func theCreatesTraceparentReachesTheVerifierAcrossAKill() throws {
        let probe = try RecordingServer()
        let port = probe.port
        probe.stop()
        let data = FileManager.default.temporaryDirectory.appendingPathComponent(
            "approvald-trace-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let configuration = brokerConfiguration(verifierURL: "http://127.0.0.1:\(port)/approvald/results")
        var broker = try ApprovaldProcess(extraConfig: configuration, dataDirectory: data)
        let idp = IdP(broker: broker)
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        var ended: [String: String] = [:]
        for (user, header) in [("trace", traceparent), ("garbled", "00-not-a-trace-01")] {
            #expect(try idp.register(try SimulatedDevice("\(user)-phone"), user: "\(user)@contoso.com").status == 201)
            let created = try idp.challenge(
                "signin-\(user)", user: "\(user)@contoso.com", headers: ["traceparent: \(header)"])
            #expect(created.status == 201)
            let challengeID = try #require(created.json["challenge_id"] as? String)
            #expect(try idp.call("DELETE", "/v1/tenants/contoso/challenges/\(challengeID)").status == 200)
            ended[user] = challengeID
        }
        #expect(
            eventuallyBlocking {
                (try? broker.curl("/metrics").body.contains("approvald_forward_queue_depth 2")) == true
            })
        #expect(broker.log(tail: 200).contains("traceparent=\(traceparent)"))
        #expect(broker.stop(signal: SIGKILL) != nil)

        let verifier = try RecordingServer(port: port)
        defer { verifier.stop() }
        broker = try ApprovaldProcess(extraConfig: configuration, dataDirectory: data, redis: broker.redis)
        #expect(eventuallyBlocking(timeout: 20) { verifier.received.count == 2 })
        let byChallenge = Dictionary(
            verifier.received.map { ($0.headers["idempotency-key"] ?? "", $0.headers["traceparent"]) }
        ) { first, _ in first }
        #expect(byChallenge[ended["trace"] ?? ""] == .some(traceparent))
        #expect(byChallenge[ended["garbled"] ?? ""] == .some(nil))
    }
}

@Suite struct WakeUpTests {
    @Test func aPhoneWithoutAStreamIsWokenThroughAPNsAndATokenAPNsForgotIsCleared() throws {
        let apns = try RecordingServer()
        defer { apns.stop() }
        apns.answer([410], then: 200)
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("AuthKey-\(UUID()).p8").path
        defer { try? FileManager.default.removeItem(atPath: keyFile) }
        try P256PrivateKey().pem.write(toFile: keyFile, atomically: true, encoding: .utf8)
        let broker = try ApprovaldProcess(
            extraConfig: brokerConfig + """

                [push.apns]
                key_file = "\(keyFile)"
                key_id = "ABC123DEFG"
                team_id = "TEAM123456"
                endpoint = "\(apns.origin)"
                """)
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("ios-phone")
        let token = String(repeating: "ab", count: 32)
        let registration =
            "{\"user_id\":\"ios@contoso.com\",\"public_key\":\"\(Data(phone.key.spkiDER).base64EncodedString())\","
            + "\"push\":{\"provider\":\"apns\",\"token\":\"\(token)\",\"topic\":\"com.example.authenticator\"}}"
        #expect(try idp.call("PUT", "/v1/tenants/contoso/devices/ios-phone", registration).status == 201)
        // The first push finds the token unregistered: it is cleared, and the next challenge pushes nothing.
        let first = try idp.challenge("wake-1", user: "ios@contoso.com")
        #expect(eventuallyBlocking { apns.received.count == 1 })
        #expect(apns.received[0].path == "/3/device/\(token)")
        #expect(apns.received[0].headers["apns-collapse-id"] == first.json["challenge_id"] as? String)
        #expect(
            eventuallyBlocking {
                (try? broker.curl("/metrics").body)?.contains(
                    "approvald_push_notifications_total{provider=\"apns\",result=\"unregistered\"} 1") == true
            })
        let id = first.json["challenge_id"] as? String ?? ""
        #expect(try idp.call("DELETE", "/v1/tenants/contoso/challenges/\(id)").status == 200)
        #expect(try idp.challenge("wake-2", user: "ios@contoso.com").status == 201)
        usleep(300_000)
        #expect(apns.received.count == 1)
        // A new token from the app: pushes resume.
        let rotated = String(repeating: "cd", count: 32)
        let rotation = "{\"provider\":\"apns\",\"token\":\"\(rotated)\",\"topic\":\"com.example.authenticator\"}"
        #expect(try phone.call(broker, "PUT", "/v1/devices/ios-phone/push-token", rotation).status == 204)
        let pending = try #require(
            (try phone.call(broker, "GET", "/v1/devices/ios-phone/challenges").json["challenges"] as? [[String: Any]])?
                .first)
        #expect(
            try idp.call("DELETE", "/v1/tenants/contoso/challenges/\(pending["challenge_id"] as? String ?? "")").status
                == 200)
        #expect(try idp.challenge("wake-3", user: "ios@contoso.com").status == 201)
        #expect(eventuallyBlocking { apns.received.count == 2 })
        #expect(apns.received.last?.path == "/3/device/\(rotated)")
    }
}

/// `approvald verifier` on a free port, its output in a file; a broker sending it results, and a challenge it
/// cancelled, so that one result is on its way.
final class VerifierRun {
    let process = Process()
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("verifier-\(UUID()).log").path
    let broker: ApprovaldProcess
    let challengeID: String

    init(secret: String, user: String) throws {
        let probe = try RecordingServer()
        let port = probe.port
        probe.stop()
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        process.executableURL = URL(fileURLWithPath: approvaldBinary)
        process.arguments = ["verifier", "--port", String(port), "--key-id", "test-idp", "--secret", secret]
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        try process.run()
        let output = self.output
        #expect(
            eventuallyBlocking { (try? String(contentsOfFile: output, encoding: .utf8))?.contains("listening") == true }
        )
        broker = try ApprovaldProcess(extraConfig: brokerConfiguration(verifierURL: "http://127.0.0.1:\(port)/verify"))
        let idp = IdP(broker: broker)
        #expect(try idp.register(try SimulatedDevice("\(user)-phone"), user: "\(user)@contoso.com").status == 201)
        challengeID = try #require(
            try idp.challenge("\(user)-1", user: "\(user)@contoso.com").json["challenge_id"] as? String)
        #expect(try idp.call("DELETE", "/v1/tenants/contoso/challenges/\(challengeID)").status == 200)
    }

    var text: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }

    /// Stops the verifier, by force if SIGTERM does not do it within 10 s.
    func stop() {
        process.terminate()
        if !eventuallyBlocking(timeout: 10, { !self.process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(atPath: output)
    }
}

@Suite struct VerifierCommandTests {
    @Test func theVerifierCommandChecksAndPrintsResults() throws {
        let run = try VerifierRun(secret: "a test secret that is at least thirty-two bytes", user: "v")
        defer { run.stop() }
        #expect(
            eventuallyBlocking {
                run.text.contains(
                    "result \(run.challengeID) tenant=contoso request=v-1 outcome=cancelled device=- selected=- "
                        + "signature=valid")
            })
        #expect(
            eventuallyBlocking {
                (try? run.broker.curl("/metrics").body)?.contains(
                    "approvald_forward_attempts_total{result=\"delivered\"} 1") == true
            })
    }

    @Test func aResultSignedWithAnotherKeyIsRefusedAndDeadLettered() throws {
        let run = try VerifierRun(secret: "not the IdP's secret, though just as long as it", user: "w")
        defer { run.stop() }
        #expect(eventuallyBlocking { run.text.contains("signature=INVALID") })
        let idp = IdP(broker: run.broker)
        #expect(
            eventuallyBlocking {
                let letters =
                    (try? idp.call("GET", "/v1/tenants/contoso/dead-letters").json["dead_letters"])
                    as? [[String: Any]]
                return letters?.first?["challenge_id"] as? String == run.challengeID
                    && letters?.first?["status"] as? Int == 401
            })
    }
}
