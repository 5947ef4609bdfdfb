// Enrollment against the real binary, with curl: the IdP makes an activation code and its QR code (decoded back by
// librsvg and zbar), a phone completes it with a key of its own and a proof (written here from API.md, not with the
// project's Protocol module), the IdP's long poll hears of it, and the phone then signs its requests with that key;
// retries, other keys, bad proofs, cancellation, a restart between creation and completion, and a device turning
// itself off. On Redis in the third end-to-end pass, and across two instances there.
import Crypto
import Foundation
import Glibc
import Locking
import TestSupport
import Testing

/// A phone that has scanned an activation URI: its new key, and the proof it signs with it.
struct EnrollingPhone {
    let key: P256PrivateKey
    var publicKey: String { Data(key.spkiDER).base64EncodedString() }

    init() throws { key = try P256PrivateKey() }

    /// The body of `POST /v1/enroll` for `code`, its proof signed by this phone's key (or `signer`'s).
    func body(code: String, signedBy signer: P256PrivateKey? = nil, displayName: String? = nil) throws -> String {
        let proof = try (signer ?? key).signature(for: "approvald-enroll-v1\n\(code)\n\(publicKey)")
        return
            "{\"activation_code\":\"\(code)\",\"public_key\":\"\(publicKey)\",\"proof\":\"\(Base64URL.encode(proof))\""
            + (displayName.map { ",\"display_name\":\"\($0)\"" } ?? "") + "}"
    }

    /// `Authorization: Approvald-Device …` for a request as `deviceID`.
    func authorization(_ deviceID: String, _ method: String, _ path: String) throws -> String {
        let time = String(unixNow())
        let signature = try key.signature(for: "\(time)\n\(method)\n\(path)\n")
        return "Authorization: Approvald-Device device=\(deviceID), t=\(time), sig=\(Base64URL.encode(signature))"
    }
}

/// The text zbar reads from an SVG QR code, rendered by librsvg.
func decodedQRCode(_ svg: String, in directory: URL) throws -> String {
    let source = directory.appendingPathComponent("qr-\(UUID().uuidString).svg").path
    let image = source + ".png"
    try svg.write(toFile: source, atomically: true, encoding: .utf8)
    _ = try runCommand(["rsvg-convert", "--format", "png", "--output", image, source], timeout: 30)
    return try runCommand(["zbarimg", "--quiet", "--raw", image], timeout: 30).stdout
        .trimmingCharacters(in: .newlines)
}

/// The query value `name` of an activation URI.
func activationValue(_ uri: String, _ name: String) -> String? {
    URLComponents(string: uri)?.queryItems?.first { $0.name == name }?.value
}

@Suite struct EnrollmentFlowTests {
    func enroll(_ idp: IdP, user: String, extra: String = "") throws -> Reply {
        try idp.call("POST", "/v1/tenants/contoso/enrollments", "{\"user_id\":\"\(user)\"\(extra)}")
    }

    @Test func aPhoneEnrollsWithTheCodeTheIdPShowsAndSignsInWithItsNewKey() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idp = IdP(broker: broker)
        let created = try enroll(idp, user: "erin@contoso.com", extra: ",\"display_name\":\"Erin's phone\"")
        #expect(created.status == 201, "\(created.body)")
        let enrollmentID = try #require(created.json["enrollment_id"] as? String)
        let code = try #require(created.json["activation_code"] as? String)
        let uri = try #require(created.json["activation_uri"] as? String)
        #expect(enrollmentID.hasPrefix("en_") && created.json["status"] as? String == "pending")
        #expect(code.utf8.count >= 22 && code.utf8.allSatisfy { $0 < 128 })
        #expect(uri.hasPrefix("approvald://enroll?v=1&url="))
        #expect(activationValue(uri, "url") == broker.h2cURL, "the first listener as bound")
        #expect(activationValue(uri, "tenant") == "contoso" && activationValue(uri, "code") == code)
        let svg = try #require(created.json["activation_qr_svg"] as? String)
        #expect(try decodedQRCode(svg, in: broker.directory) == uri)

        // The IdP waits for the phone.
        let path = "/v1/tenants/contoso/enrollments/\(enrollmentID)"
        let waited = Locked<Reply?>(nil)
        let waiting = Thread { waited.withLock { $0 = try? idp.call("GET", path + "?wait=20") } }
        waiting.start()
        Thread.sleep(forTimeInterval: 0.5)

        let phone = try EnrollingPhone()
        let completed = try send(broker, "POST", "/v1/enroll", body: try phone.body(code: code), headers: [])
        #expect(completed.status == 201, "\(completed.body)")
        let deviceID = try #require(completed.json["device_id"] as? String)
        #expect(deviceID.hasPrefix("dev_") && deviceID.utf8.count == 26)
        #expect(
            completed.json["tenant_id"] as? String == "contoso"
                && completed.json["user_id"] as? String == "erin@contoso.com")
        #expect(completed.json["display_name"] as? String == "Erin's phone")

        #expect(eventuallyBlocking(timeout: 10) { waited.withLock { $0 } != nil })
        let heard = try #require(waited.withLock { $0 })
        #expect(heard.status == 200 && heard.json["status"] as? String == "completed")
        #expect(heard.json["device_id"] as? String == deviceID && heard.json["completed_at"] is String)
        #expect(heard.json["activation_code"] == nil, "the code is never returned again")

        // The phone is a device of the user: its queue answers its signature, and a sign-in reaches it.
        let queuePath = "/v1/devices/\(deviceID)/challenges"
        let queue = try send(
            broker, "GET", queuePath, body: nil, headers: [try phone.authorization(deviceID, "GET", queuePath)])
        #expect(queue.status == 200, "\(queue.body)")
        #expect(try idp.challenge("erin-1", user: "erin@contoso.com").status == 201)
        let devices = try idp.call("GET", "/v1/tenants/contoso/users/erin@contoso.com/devices")
        #expect(devices.body.contains(deviceID))

        // The same code and key again: the same answer; another key, or no enrollment at all: one answer, 404.
        let again = try send(broker, "POST", "/v1/enroll", body: try phone.body(code: code), headers: [])
        #expect(again.status == 200 && again.json["device_id"] as? String == deviceID)
        let other = try send(broker, "POST", "/v1/enroll", body: try EnrollingPhone().body(code: code), headers: [])
        #expect(other.status == 404 && other.json["code"] as? String == "not_found")
        let unknown = try send(
            broker, "POST", "/v1/enroll", body: try EnrollingPhone().body(code: "AAAAAAAAAAAAAAAAAAAAAA"), headers: [])
        #expect(unknown.status == 404 && unknown.body == other.body)

        // The code is in no log line.
        #expect(!(try String(contentsOfFile: broker.logPath, encoding: .utf8)).contains(code))
        let metrics = try broker.curl("/metrics").body
        #expect(metrics.contains("approvald_enrollments_total{result=\"created\"} 1"))
        #expect(metrics.contains("approvald_enrollments_total{result=\"completed\"} 1"))

        // "Turn off phone sign-in": the device removes itself, and its key no longer signs anything.
        let devicePath = "/v1/devices/\(deviceID)"
        let removed = try send(
            broker, "DELETE", devicePath, body: nil, headers: [try phone.authorization(deviceID, "DELETE", devicePath)])
        #expect(removed.status == 204)
        let after = try send(
            broker, "GET", queuePath, body: nil, headers: [try phone.authorization(deviceID, "GET", queuePath)])
        #expect(after.status == 401)
    }

    @Test func aBadProofLeavesTheCodeUsableAndACancelledCodeIsGone() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idp = IdP(broker: broker)
        let created = try enroll(idp, user: "finn@contoso.com")
        let code = try #require(created.json["activation_code"] as? String)
        let enrollmentID = try #require(created.json["enrollment_id"] as? String)
        let phone = try EnrollingPhone()
        // Signed by another key than the one it names.
        let forged = try send(
            broker, "POST", "/v1/enroll", body: try phone.body(code: code, signedBy: try P256PrivateKey()), headers: [])
        #expect(forged.status == 400 && forged.json["code"] as? String == "bad_signature")
        let notAKey = try send(
            broker, "POST", "/v1/enroll",
            body: "{\"activation_code\":\"\(code)\",\"public_key\":\"AAAA\",\"proof\":\"AAAA\"}", headers: [])
        #expect(notAKey.status == 400 && notAKey.json["code"] as? String == "invalid_field")

        // Cancelled: the status says so, the code is refused like an unknown one, and cancelling again changes nothing.
        let path = "/v1/tenants/contoso/enrollments/\(enrollmentID)"
        let cancelled = try idp.call("DELETE", path)
        #expect(cancelled.status == 200 && cancelled.json["status"] as? String == "cancelled")
        let refused = try send(broker, "POST", "/v1/enroll", body: try phone.body(code: code), headers: [])
        #expect(refused.status == 404)
        #expect(try idp.call("DELETE", path).json["status"] as? String == "cancelled")
        #expect(try idp.call("GET", path + "?wait=5").json["status"] as? String == "cancelled")
        // Another tenant's key learns nothing of it.
        let foreign = IdP(
            broker: broker, keyID: "fabrikam-idp", secret: "another secret that is at least thirty-two bytes")
        #expect(try foreign.call("GET", path.replacingOccurrences(of: "contoso", with: "fabrikam")).status == 404)
    }

    @Test func theRulesAndTheirLimitsApply() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idp = IdP(broker: broker)
        for _ in 0..<5 { #expect(try enroll(idp, user: "gus@contoso.com").status == 201) }
        let sixth = try enroll(idp, user: "gus@contoso.com")
        #expect(sixth.status == 429 && sixth.json["code"] as? String == "rate_limited")
        let mam = try enroll(idp, user: "hal@contoso.com", extra: ",\"mam_restricted\":true")
        #expect(mam.status == 403 && mam.json["code"] as? String == "mam_restricted")
        for ttl in [59, 3601] {
            #expect(try enroll(idp, user: "hal@contoso.com", extra: ",\"ttl_seconds\":\(ttl)").status == 400)
        }
        #expect(try idp.call("GET", "/v1/tenants/contoso/enrollments/en_unknown").status == 404)
        #expect(try idp.call("GET", "/v1/tenants/contoso/enrollments/x?wait=31").status == 400)
    }

    /// 60 s, the shortest life the contract allows: the enrollment ends `expired` by itself (its long poll hears
    /// of it), its code is refused like an unknown one, and it no longer counts against the user's five pending.
    @Test func anEnrollmentExpiresAndFreesItsPlace() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idp = IdP(broker: broker)
        var created: [Reply] = []
        for _ in 0..<5 { created.append(try enroll(idp, user: "jo@contoso.com", extra: ",\"ttl_seconds\":60")) }
        #expect(created.allSatisfy { $0.status == 201 })
        #expect(try enroll(idp, user: "jo@contoso.com").status == 429)
        let code = try #require(created[0].json["activation_code"] as? String)
        // The last made is the last to expire.
        let path = "/v1/tenants/contoso/enrollments/\(try #require(created[4].json["enrollment_id"] as? String))"
        let deadline = Date().addingTimeInterval(90)
        var status = "pending"
        while status == "pending" && Date() < deadline {
            status = try idp.call("GET", path + "?wait=15").json["status"] as? String ?? "?"
        }
        #expect(status == "expired")
        let late = try send(broker, "POST", "/v1/enroll", body: try EnrollingPhone().body(code: code), headers: [])
        #expect(late.status == 404 && late.json["code"] as? String == "not_found")
        #expect(try enroll(idp, user: "jo@contoso.com").status == 201)
        #expect(try broker.curl("/metrics").body.contains("approvald_enrollments_total{result=\"expired\"} 5"))
    }

    @Test(.disabled(if: testsRunOnRedis, "the Redis store's durability is the Redis outage suite's"))
    func anEnrollmentOutlivesAKillOfTheBroker() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-enroll-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let code: String
        let enrollmentID: String
        do {
            let first = try ApprovaldProcess(extraConfig: brokerConfig, dataDirectory: data)
            let created = try enroll(IdP(broker: first), user: "ida@contoso.com")
            code = try #require(created.json["activation_code"] as? String)
            enrollmentID = try #require(created.json["enrollment_id"] as? String)
            kill(first.process.processIdentifier, SIGKILL)
            first.process.waitUntilExit()
        }
        // Killed again as soon as the completion is answered: a phone whose answer was lost retries with the same
        // code and key, and gets the same device from the next start.
        let phone = try EnrollingPhone()
        let deviceID: String
        do {
            let second = try ApprovaldProcess(extraConfig: brokerConfig, dataDirectory: data)
            let completed = try send(second, "POST", "/v1/enroll", body: try phone.body(code: code), headers: [])
            #expect(completed.status == 201, "\(completed.body)")
            deviceID = try #require(completed.json["device_id"] as? String)
            kill(second.process.processIdentifier, SIGKILL)
            second.process.waitUntilExit()
        }
        let third = try ApprovaldProcess(extraConfig: brokerConfig, dataDirectory: data)
        let retried = try send(third, "POST", "/v1/enroll", body: try phone.body(code: code), headers: [])
        #expect(retried.status == 200 && retried.json["device_id"] as? String == deviceID, "\(retried.body)")
        let status = try IdP(broker: third).call("GET", "/v1/tenants/contoso/enrollments/\(enrollmentID)")
        #expect(status.json["status"] as? String == "completed" && status.json["device_id"] as? String == deviceID)
    }
}
