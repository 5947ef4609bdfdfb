// Wake-ups through APNs, in process against a local HTTP/2 server: the provider token (ES256 JWT: kid, iss, iat,
// reused, then refreshed), the exact headers, a payload without user data, 410 clearing the token, 429 retried
// when due by an injected clock, and no wake-up for a device whose stream is open.
import Core
import Crypto
import Foundation
import HTTP
import Store
import TestSupport
import Testing

@testable import Service

@Suite struct PushRelayTests {
    static let token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

    struct Setup {
        let broker: InProcessBroker
        let apns: RecordingServer
        let clock: ManualClock
        let providerKey: P256PrivateKey

        func stop() {
            broker.stop()
            apns.stop()
        }

        func register(_ deviceID: String, user: String, token: String = PushRelayTests.token) async throws {
            let push = "{\"provider\":\"apns\",\"token\":\"\(token)\",\"topic\":\"com.example.authenticator\"}"
            let reply = try await broker.idp(
                "PUT", "/v1/tenants/contoso/devices/\(deviceID)",
                InProcessBroker.registration(user, try P256PrivateKey(), push: push))
            #expect(reply.status == 201)
        }

        func create(_ requestID: String, user: String) async throws -> [String: Any] {
            let reply = try await broker.idp(
                "POST", "/v1/tenants/contoso/challenges",
                "{\"request_id\":\"\(requestID)\",\"user_id\":\"\(user)\",\"number\":42,"
                    + "\"context\":{\"app\":\"Outlook\",\"ip\":\"203.0.113.7\"}}", at: clock.millis / 1000)
            return try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any] ?? [:]
        }

        func relay<Value: Sendable>(_ read: @escaping @Sendable (PushRelay) -> Value) async throws -> Value {
            try await broker.onLoop { read($0.pushRelay) }
        }
    }

    func setUp() async throws -> Setup {
        let apns = try RecordingServer()
        let clock = ManualClock()
        let providerKey = try P256PrivateKey()
        var settings = APNsSettings(privateKeyPEM: providerKey.pem, keyID: "ABC123DEFG", teamID: "TEAM123456")
        settings.endpoint = apns.origin
        let broker = try await InProcessBroker(clock: { clock.millis }, apns: settings) { loop in
            // swift-format-ignore: NeverUseForceTry
            try! SQLiteJournal(
                directory: FileManager.default.temporaryDirectory.appendingPathComponent("approvald-push-\(UUID())")
                    .path
            ) { work in loop.execute(work) }
        }
        return Setup(broker: broker, apns: apns, clock: clock, providerKey: providerKey)
    }

    /// The JWT's header and claims, after checking its ES256 signature with `key`.
    func verifiedJWT(_ token: String, _ key: P256PublicKey) throws -> ([String: Any], [String: Any]) {
        let parts = token.split(separator: ".").map(String.init)
        try #require(parts.count == 3)
        let raw = try #require(Base64URL.decode(parts[2]))
        try #require(raw.count == 64)
        func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
            var value = Array(bytes.drop { $0 == 0 })
            if value.isEmpty || value[0] & 0x80 != 0 { value.insert(0, at: 0) }
            return [0x02, UInt8(value.count)] + value
        }
        let body = integer(raw[0..<32]) + integer(raw[32..<64])
        #expect(key.isValidSignature([0x30, UInt8(body.count)] + body, for: "\(parts[0]).\(parts[1])"))
        func object(_ part: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(try #require(Base64URL.decode(part)))) as? [String: Any] ?? [:]
        }
        return (try object(parts[0]), try object(parts[1]))
    }

    @Test func aDeviceWithoutAStreamIsWokenWithNothingButTheChallengeID() async throws {
        let setup = try await setUp()
        defer { setup.stop() }
        try await setup.register("phone-1", user: "alice")
        let created = try await setup.create("r-1", user: "alice")
        let challengeID = try #require(created["challenge_id"] as? String)
        #expect(await eventually { setup.apns.received.count == 1 })
        let push = setup.apns.received[0]
        #expect(push.method == "POST" && push.path == "/3/device/\(Self.token)")
        #expect(push.headers["apns-topic"] == "com.example.authenticator")
        #expect(push.headers["apns-push-type"] == "alert" && push.headers["apns-priority"] == "10")
        #expect(push.headers["apns-collapse-id"] == challengeID)
        let expiresAt = try #require(created["expires_at"] as? String)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let expiry = try #require(formatter.date(from: expiresAt))
        #expect(push.headers["apns-expiration"] == String(Int64(expiry.timeIntervalSince1970)))
        let bearer = try #require(push.headers["authorization"])
        #expect(bearer.hasPrefix("bearer "))
        let (header, claims) = try verifiedJWT(String(bearer.dropFirst(7)), setup.providerKey.publicKey)
        #expect(header["alg"] as? String == "ES256" && header["kid"] as? String == "ABC123DEFG")
        #expect(claims["iss"] as? String == "TEAM123456")
        #expect(claims["iat"] as? Int64 == setup.clock.millis / 1000)
        // Only that a request waits and which: no user, number or context.
        let payload = push.json
        #expect(Set(payload.keys) == ["aps", "challenge_id"] && payload["challenge_id"] as? String == challengeID)
        let aps = try #require(payload["aps"] as? [String: Any])
        #expect(Set(aps.keys) == ["alert", "sound"] && aps["sound"] as? String == "default")
        #expect(
            aps["alert"] as? [String: String] == ["title": "Sign-in request", "body": "Open the app to review it."])
        expectNoUserData(
            in: payload, besides: challengeID, secrets: ["alice", "Outlook", "203.0.113.7", "r-1", "contoso"])
        #expect(
            try await eventually {
                try await setup.relay { $0.results[PushOutcome(provider: "apns", result: "sent")] } == 1
            })
    }

    @Test func theProviderTokenIsReusedThenRefreshedByAge() async throws {
        let setup = try await setUp()
        defer { setup.stop() }
        for (index, user) in ["u1", "u2", "u3"].enumerated() {
            try await setup.register("phone-\(user)", user: user)
            if index == 2 { setup.clock.advance(by: PushRelay.tokenLifetimeMillis) }
            _ = try await setup.create("r-\(user)", user: user)
            #expect(await eventually { setup.apns.received.count == index + 1 })
        }
        let tokens = setup.apns.received.map { $0.headers["authorization"] ?? "" }
        #expect(tokens[0] == tokens[1] && tokens[1] != tokens[2])
        let (_, refreshed) = try verifiedJWT(String(tokens[2].dropFirst(7)), setup.providerKey.publicKey)
        #expect(refreshed["iat"] as? Int64 == setup.clock.millis / 1000)
    }

    @Test func unregisteredClearsTheTokenAndThrottlingIsRetriedWhenDue() async throws {
        let setup = try await setUp()
        defer { setup.stop() }
        // 410: the token is gone, and the next challenge for that device pushes nothing.
        setup.apns.answer([410])
        try await setup.register("phone-gone", user: "gone")
        let first = try #require(try await setup.create("r-gone-1", user: "gone")["challenge_id"] as? String)
        #expect(
            try await eventually {
                try await setup.relay { $0.results[PushOutcome(provider: "apns", result: "unregistered")] } == 1
            })
        #expect(try await setup.broker.idp("DELETE", "/v1/tenants/contoso/challenges/\(first)").status == 200)
        let second = try await setup.create("r-gone-2", user: "gone")
        #expect(second["status"] as? String == "pending")
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(setup.apns.received.count == 1)

        // 429: tried again once the clock says so, not before.
        setup.apns.answer([429], then: 200)
        try await setup.register("phone-busy", user: "busy")
        _ = try await setup.create("r-busy", user: "busy")
        #expect(
            try await eventually {
                try await setup.relay { $0.results[PushOutcome(provider: "apns", result: "retry")] } == 1
            })
        try await setup.relay { $0.runDueRetries() }
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(setup.apns.received.count == 2)
        setup.clock.advance(by: 1000)
        try await setup.relay { $0.runDueRetries() }
        #expect(
            try await eventually {
                try await setup.relay { $0.results[PushOutcome(provider: "apns", result: "sent")] } == 1
            })
        #expect(setup.apns.received.count == 3)
    }

    @Test func aTokenThatIsNotHexIsNeverPutInAPath() async throws {
        let setup = try await setUp()
        defer { setup.stop() }
        try await setup.register("phone-odd", user: "odd", token: "..%2F3%2Fdevice%2Fother")
        _ = try await setup.create("r-odd", user: "odd")
        #expect(
            try await eventually {
                try await setup.relay { $0.results[PushOutcome(provider: "apns", result: "invalid_token")] } == 1
            })
        #expect(setup.apns.received.isEmpty)
    }

    @Test func aDeviceWithItsStreamOpenGetsNoWakeUp() async throws {
        let setup = try await setUp()
        defer { setup.stop() }
        let key = try P256PrivateKey()
        let push = "{\"provider\":\"apns\",\"token\":\"\(Self.token)\",\"topic\":\"com.example.authenticator\"}"
        #expect(
            try await setup.broker.idp(
                "PUT", "/v1/tenants/contoso/devices/phone-s", InProcessBroker.registration("streamer", key, push: push)
            ).status == 201)
        let path = "/v1/devices/phone-s/stream"
        let authorization = UncheckedBox(try InProcessBroker.deviceAuthorization(key, "phone-s", "GET", path))
        let recorder = StreamRecorder()
        let client = setup.broker.client
        try await setup.broker.thread.run {
            _ = client.send(
                method: "GET", path: path, headers: [("authorization", authorization.value)], timeoutSeconds: 30,
                onData: recorder.append
            ) { _ in }
        }
        #expect(try await eventually { try await setup.broker.onLoop { $0.streams.count } == 1 })
        _ = try await setup.create("r-s", user: "streamer")
        #expect(await eventually { recorder.received.contains("event: challenge") })
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(setup.apns.received.isEmpty)
    }
}

@Suite struct FCMRelayTests {
    static let token = "fcm-registration-token:APA91bH-example_token"

    struct Setup {
        let broker: InProcessBroker
        let fcm: RecordingServer
        let tokens: RecordingServer
        let clock: ManualClock
        let directory: String

        func stop() {
            broker.stop()
            fcm.stop()
            tokens.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }

        func register(_ deviceID: String, user: String) async throws {
            let push = "{\"provider\":\"fcm\",\"token\":\"\(FCMRelayTests.token)\"}"
            let reply = try await broker.idp(
                "PUT", "/v1/tenants/contoso/devices/\(deviceID)",
                InProcessBroker.registration(user, try P256PrivateKey(), push: push), at: clock.millis / 1000)
            #expect(reply.status == 201)
        }

        func create(_ requestID: String, user: String) async throws -> String {
            let reply = try await broker.idp(
                "POST", "/v1/tenants/contoso/challenges",
                "{\"request_id\":\"\(requestID)\",\"user_id\":\"\(user)\",\"number\":42,\"context\":{\"app\":\"Outlook\"}}",
                at: clock.millis / 1000)
            let object = try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any] ?? [:]
            return try #require(object["challenge_id"] as? String)
        }

        func results(_ result: String) async throws -> UInt64? {
            try await broker.onLoop { $0.pushRelay.results[PushOutcome(provider: "fcm", result: result)] }
        }
    }

    func setUp() async throws -> Setup {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-fcm-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let keyPath = directory + "/service-account-key.pem"
        let made = try runCommand(
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", keyPath])
        try #require(made.status == 0)
        let fcm = try RecordingServer()
        fcm.body("{\"name\":\"projects/approvald-test/messages/1\"}", for: 200)
        fcm.body(
            #"{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#,
            for: 404)
        fcm.body(
            #"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"QUOTA_EXCEEDED"}]}}"#,
            for: 429)
        let tokens = try RecordingServer()
        tokens.body(
            "{\"access_token\":\"ya29.test-access-token\",\"expires_in\":3599,\"token_type\":\"Bearer\"}", for: 200)
        var settings = FCMSettings(
            projectID: "approvald-test", clientEmail: "push@approvald-test.iam.gserviceaccount.com",
            privateKeyID: "key-1", privateKeyPEM: try String(contentsOfFile: keyPath, encoding: .utf8),
            tokenURL: tokens.origin + "/token")
        settings.endpoint = fcm.origin
        let clock = ManualClock()
        let broker = try await InProcessBroker(clock: { clock.millis }, fcm: settings) { loop in
            // swift-format-ignore: NeverUseForceTry
            try! SQLiteJournal(directory: directory + "/data") { work in loop.execute(work) }
        }
        return Setup(broker: broker, fcm: fcm, tokens: tokens, clock: clock, directory: directory)
    }

    @Test func aWakeUpCarriesOnlyTheChallengeIDWithACachedAccessToken() async throws {
        let setup = try await setUp()
        defer { setup.stop() }
        try await setup.register("android-1", user: "ana")
        let challengeID = try await setup.create("r-1", user: "ana")
        #expect(await eventually { setup.fcm.received.count == 1 })

        // The assertion exchanged for the access token: RS256, the service account, the messaging scope.
        #expect(setup.tokens.received.count == 1)
        let grant = setup.tokens.received[0]
        #expect(grant.method == "POST" && grant.path == "/token")
        #expect(grant.headers["content-type"] == "application/x-www-form-urlencoded")
        #expect(grant.text.hasPrefix("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="))
        let assertion = String(grant.text.split(separator: "=").last ?? "")
        let parts = assertion.split(separator: ".").map(String.init)
        try #require(parts.count == 3)
        let header =
            try JSONSerialization.jsonObject(with: Data(try #require(Base64URL.decode(parts[0])))) as? [String: Any]
        let claims =
            try JSONSerialization.jsonObject(with: Data(try #require(Base64URL.decode(parts[1])))) as? [String: Any]
        #expect(header?["alg"] as? String == "RS256" && header?["kid"] as? String == "key-1")
        #expect(claims?["iss"] as? String == "push@approvald-test.iam.gserviceaccount.com")
        #expect(claims?["scope"] as? String == "https://www.googleapis.com/auth/firebase.messaging")
        #expect(claims?["aud"] as? String == setup.tokens.origin + "/token")

        let push = setup.fcm.received[0]
        #expect(push.path == "/v1/projects/approvald-test/messages:send")
        #expect(push.headers["authorization"] == "Bearer ya29.test-access-token")
        let message = try #require(push.json["message"] as? [String: Any])
        #expect(message["token"] as? String == Self.token)
        #expect(message["data"] as? [String: String] == ["challenge_id": challengeID])
        #expect(Set(message.keys) == ["token", "data", "android"])
        expectNoUserData(in: push.json, besides: challengeID, secrets: ["ana", "Outlook", "r-1", "contoso"])

        // The access token is reused until it is about to expire, then fetched again.
        try await setup.register("android-2", user: "ben")
        _ = try await setup.create("r-2", user: "ben")
        #expect(await eventually { setup.fcm.received.count == 2 })
        #expect(setup.tokens.received.count == 1)
        setup.clock.advance(by: 3600 * 1000)
        try await setup.register("android-3", user: "cai")
        _ = try await setup.create("r-3", user: "cai")
        #expect(await eventually { setup.fcm.received.count == 3 })
        #expect(setup.tokens.received.count == 2)
        // Counted once the provider's answer is read, a moment after the provider has the request.
        #expect(try await eventually { try await setup.results("sent") == 3 })
    }

    @Test func aTokenEndpointThatFailsIsTriedAgainWhenTheWakeUpIsDue() async throws {
        let setup = try await setUp()
        defer { setup.stop() }
        setup.tokens.answer([503], then: 200)
        try await setup.register("android-wait", user: "wait")
        _ = try await setup.create("r-wait", user: "wait")
        #expect(try await eventually { try await setup.results("retry") == 1 })
        #expect(setup.fcm.received.isEmpty && setup.tokens.received.count == 1)
        setup.clock.advance(by: 1000)
        try await setup.broker.onLoop { $0.pushRelay.runDueRetries() }
        #expect(try await eventually { try await setup.results("sent") == 1 })
        #expect(setup.tokens.received.count == 2 && setup.fcm.received.count == 1)
    }

    @Test func unregisteredClearsTheTokenAndQuotaIsRetriedWhenDue() async throws {
        let setup = try await setUp()
        defer { setup.stop() }
        setup.fcm.answer([404, 429], then: 200)
        try await setup.register("android-gone", user: "gone")
        let first = try await setup.create("r-gone", user: "gone")
        #expect(try await eventually { try await setup.results("unregistered") == 1 })
        #expect(
            try await setup.broker.idp(
                "DELETE", "/v1/tenants/contoso/challenges/\(first)", at: setup.clock.millis / 1000
            ).status == 200)
        _ = try await setup.create("r-gone-2", user: "gone")
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(setup.fcm.received.count == 1)

        try await setup.register("android-busy", user: "busy")
        _ = try await setup.create("r-busy", user: "busy")
        #expect(try await eventually { try await setup.results("retry") == 1 })
        setup.clock.advance(by: 1000)
        try await setup.broker.onLoop { $0.pushRelay.runDueRetries() }
        #expect(try await eventually { try await setup.results("sent") == 1 })
        #expect(setup.fcm.received.count == 3)
    }
}

/// Every value of a push payload, the challenge id aside, is free of the user's data: no secret within a string and
/// no number at all (the sign-in's number is 42, which a random challenge id may well contain, so the id is left
/// out of the search rather than searched as text).
func expectNoUserData(in payload: Any, besides challengeID: String, secrets: [String]) {
    switch payload {
    case let object as [String: Any]:
        for value in object.values { expectNoUserData(in: value, besides: challengeID, secrets: secrets) }
    case let array as [Any]:
        for value in array { expectNoUserData(in: value, besides: challengeID, secrets: secrets) }
    case let text as String:
        guard text != challengeID else { return }
        for secret in secrets { #expect(!text.contains(secret), "the payload mentions \(secret)") }
        #expect(!text.contains("42"), "the payload mentions the number: \(text)")
    default:
        Issue.record("the payload holds a value that is not text: \(payload)")
    }
}
