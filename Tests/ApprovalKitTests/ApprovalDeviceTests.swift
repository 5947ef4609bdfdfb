// The device SDK over a scripted transport: what it signs is checked with the public key against messages written
// here from API.md, and the prompt stream is taken through ends, failures, polling and a refusal.
import ApprovalKit
import Crypto
import Foundation
import JSONText
import Locking
import Testing

/// A transport that answers from a script and records what it was asked.
final class ScriptedTransport: ApprovalTransport, Sendable {
    enum Streamed: Sendable {
        case events(String, endStatus: Int)
        case failure
    }

    private let requests = Locked<[TransportRequest]>([])
    private let answers = Locked<[TransportResponse]>([])
    private let streams = Locked<[Streamed]>([])

    init(answers: [TransportResponse] = [], streams: [Streamed] = []) {
        self.answers.withLock { $0 = answers }
        self.streams.withLock { $0 = streams }
    }

    var sent: [TransportRequest] { requests.withLock { $0 } }

    func send(_ request: TransportRequest) async throws -> TransportResponse {
        requests.withLock { $0.append(request) }
        guard let answer = answers.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else {
            throw ApprovalError.unreachable("the script has no answer left")
        }
        return answer
    }

    func stream(_ request: TransportRequest) -> AsyncThrowingStream<StreamPart, any Error> {
        requests.withLock { $0.append(request) }
        let next = streams.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        return AsyncThrowingStream { continuation in
            switch next {
            case .events(let text, let status):
                // Split in two, anywhere: the reader must put events back together.
                let bytes = Array(text.utf8)
                continuation.yield(.bytes(Array(bytes.prefix(bytes.count / 2))))
                continuation.yield(.bytes(Array(bytes.dropFirst(bytes.count / 2))))
                continuation.yield(.ended(status: status))
                continuation.finish()
            case .failure, nil: continuation.finish(throwing: ApprovalError.unreachable("scripted failure"))
            }
        }
    }
}

let now: Int64 = 1_795_600_000
let credentials = DeviceCredentials(
    baseURL: "https://broker.example.com", tenantID: "contoso", deviceID: "dev_1", userID: "alice", displayName: "")

func challengeView(_ id: String) -> String {
    #"{"challenge_id":"\#(id)","tenant_id":"contoso","request_id":"r-\#(id)","user_id":"alice","choices":[17,42,88],"context":{"app":"Outlook"},"created_at":"2026-11-25T10:00:00.000Z","expires_at":"2026-11-25T10:02:00.000Z"}"#
}

func event(_ kind: String, _ id: String, _ data: String) -> String { "event: \(kind)\nid: \(id)\ndata: \(data)\n\n" }

/// Whether `header` is a valid `Approvald-Device` signature by `key` over the request.
func verifies(_ header: String, _ key: SoftwareDeviceKey, _ request: TransportRequest) throws -> Bool {
    let parts = Dictionary(
        uniqueKeysWithValues: header.dropFirst("Approvald-Device ".count).split(separator: ",").map {
            let pair = $0.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            return (String(pair[0]), String(pair[1]))
        })
    let message = Array("\(parts["t"] ?? "")\n\(request.method)\n\(request.path)\n".utf8) + request.body
    let signature = Base64URL.decode(parts["sig"] ?? "") ?? []
    return try P256PublicKey(spkiDER: key.publicKeySPKI).isValidSignature(signature, for: message)
}

@Suite struct ApprovalDeviceTests {
    @Test func enrollingSendsAProofByTheNewKeyAndKeepsTheCredentials() async throws {
        let key = try SoftwareDeviceKey()
        let transport = ScriptedTransport(answers: [
            TransportResponse(
                status: 201,
                body: Array(
                    #"{"device_id":"dev_9","tenant_id":"contoso","user_id":"alice","display_name":"Pixel"}"#.utf8))
        ])
        let uri = "approvald://enroll?v=1&url=https%3A%2F%2Fbroker.example.com%2Fsso&tenant=contoso&code=CODE123"
        let made = Locked<String?>(nil)
        let device = try await ApprovalDevice.enroll(activationURI: uri, key: key, displayName: "Pixel") { base in
            made.withLock { $0 = base }
            return transport
        }
        #expect(made.withLock { $0 } == "https://broker.example.com/sso")
        #expect(
            device.credentials
                == DeviceCredentials(
                    baseURL: "https://broker.example.com/sso", tenantID: "contoso", deviceID: "dev_9", userID: "alice",
                    displayName: "Pixel"))
        let request = try #require(transport.sent.first)
        #expect(request.method == "POST" && request.path == "/sso/v1/enroll")
        let body = try #require(JSONValue.parse(request.body))
        let publicKey = Data(key.publicKeySPKI).base64EncodedString()
        #expect(body["activation_code"]?.string == "CODE123" && body["public_key"]?.string == publicKey)
        let proof = try #require(body["proof"]?.string.flatMap { Base64URL.decode($0) })
        let message = Array("approvald-enroll-v1\nCODE123\n\(publicKey)".utf8)
        #expect(try P256PublicKey(spkiDER: key.publicKeySPKI).isValidSignature(proof, for: message))
        #expect(body["push"]?["provider"]?.string == "none")

        // The code that is not an activation URI is refused before anything is sent.
        await #expect(throws: ApprovalError.self) {
            try await ApprovalDevice.enroll(activationURI: "https://example.com", key: key) { _ in transport }
        }
    }

    @Test func aRefusedEnrollmentNamesTheProblem() async throws {
        let transport = ScriptedTransport(answers: [
            TransportResponse(
                status: 404, body: Array(#"{"code":"not_found","detail":"no such activation code"}"#.utf8))
        ])
        let uri = "approvald://enroll?v=1&url=http%3A%2F%2F127.0.0.1%3A8080&tenant=t&code=C"
        await #expect(throws: ApprovalError.refused(status: 404, code: "not_found", detail: "no such activation code"))
        {
            try await ApprovalDevice.enroll(activationURI: uri, key: try SoftwareDeviceKey()) { _ in transport }
        }
    }

    @Test func promptsComeOnceThroughReconnectsAndPollingUntilTheDeviceIsRefused() async throws {
        let key = try SoftwareDeviceKey()
        let queue = #"{"challenges":[\#(challengeView("ch_B"))]}"#
        let transport = ScriptedTransport(
            answers: [TransportResponse(status: 200, body: Array(queue.utf8))],
            streams: [
                .events(": keepalive\n\n" + event("challenge", "ch_A", challengeView("ch_A")), endStatus: 200),
                // After a reconnect the pending one comes first again: it is not yielded twice.
                .events(
                    event("challenge", "ch_A", challengeView("ch_A"))
                        + event("resolved", "ch_A", #"{"challenge_id":"ch_A","outcome":"answered_elsewhere"}"#),
                    endStatus: 200),
                .failure, .failure, .failure,
                .events(#"{"code":"unauthenticated","detail":"unknown device"}"#, endStatus: 401),
            ])
        var policy = ReconnectPolicy()
        policy.initialDelaySeconds = 0.001
        policy.maxDelaySeconds = 0.002
        let device = ApprovalDevice(credentials: credentials, key: key, transport: transport, clock: { now })
        var seen: [PromptEvent] = []
        var disconnections = 0
        do {
            for try await event in device.prompts(policy: policy) {
                if case .disconnected = event { disconnections += 1 } else { seen.append(event) }
            }
            Issue.record("the stream ended without the refusal")
        } catch let error as ApprovalError {
            #expect(error.code == "unauthenticated")
        }
        // Two streams ended and three failed; the refusal ends the sequence instead.
        #expect(disconnections == 5)
        #expect(seen.count == 3)
        guard seen.count == 3, case .prompt(let first) = seen[0], case .prompt(let polled) = seen[2] else { return }
        #expect(first.challengeID == "ch_A" && first.choices == [17, 42, 88] && first.context == ["app": "Outlook"])
        #expect(seen[1] == .withdrawn(challengeID: "ch_A", outcome: "answered_elsewhere"))
        #expect(polled.challengeID == "ch_B", "polled after three failures in a row")
        // Every stream and the poll are signed by the device key.
        for request in transport.sent {
            let authorization = try #require(request.headers.first { $0.0 == "authorization" }?.1)
            #expect(try verifies(authorization, key, request), "\(request.path)")
        }
        #expect(transport.sent.map(\.path).contains("/v1/devices/dev_1/challenges"))
    }

    @Test func anAnswerSignsTheDecisionAndReportsTheOutcome() async throws {
        let key = try SoftwareDeviceKey()
        let transport = ScriptedTransport(answers: [
            TransportResponse(
                status: 200, body: Array(#"{"challenge_id":"ch_A","status":"approved","reason":null}"#.utf8)),
            TransportResponse(status: 409, body: Array(#"{"code":"already_resolved","detail":"ended"}"#.utf8)),
        ])
        let device = ApprovalDevice(credentials: credentials, key: key, transport: transport, clock: { now })
        let view = try #require(JSONValue.parse(Array(challengeView("ch_A").utf8)))
        let prompt = try #require(Prompt(view: view))
        let outcome = try await device.approve(prompt, selecting: 42)
        #expect(outcome == AnswerOutcome(challengeID: "ch_A", outcome: "approved"))
        let sent = try #require(transport.sent.first)
        #expect(sent.path == "/v1/devices/dev_1/challenges/ch_A/response")
        let body = try #require(JSONValue.parse(sent.body))
        let signed = "approvald-decision-v1\ncontoso\nr-ch_A\nch_A\ndev_1\napprove\n42\n\n\(now)"
        let signature = try #require(body["signature"]?.string.flatMap { Base64URL.decode($0) })
        #expect(try P256PublicKey(spkiDER: key.publicKeySPKI).isValidSignature(signature, for: Array(signed.utf8)))
        await #expect(throws: ApprovalError.refused(status: 409, code: "already_resolved", detail: "ended")) {
            try await device.deny(prompt, reason: .notMe)
        }
        let denied = try #require(JSONValue.parse(transport.sent[1].body))
        #expect(denied["decision"]?.string == "deny" && denied["reason"]?.string == "not_me")
    }

    @Test func theDeviceRotatesItsTokenAndTurnsItselfOffWithSignedRequests() async throws {
        let key = try SoftwareDeviceKey()
        let transport = ScriptedTransport(answers: [
            TransportResponse(status: 204, body: []), TransportResponse(status: 204, body: []),
        ])
        let device = ApprovalDevice(credentials: credentials, key: key, transport: transport, clock: { now })
        try await device.updatePushToken(PushRegistration(provider: "fcm", token: "tok"))
        try await device.unenroll()
        let (rotate, remove) = (transport.sent[0], transport.sent[1])
        #expect(rotate.method == "PUT" && rotate.path == "/v1/devices/dev_1/push-token")
        #expect(JSONValue.parse(rotate.body)?["token"]?.string == "tok")
        #expect(remove.method == "DELETE" && remove.path == "/v1/devices/dev_1")
        for request in [rotate, remove] {
            let authorization = try #require(request.headers.first { $0.0 == "authorization" }?.1)
            #expect(try verifies(authorization, key, request))
        }
    }

    @Test func aKeyComesBackFromItsPEM() throws {
        let key = try SoftwareDeviceKey()
        #expect(try SoftwareDeviceKey(pem: key.pem).publicKeySPKI == key.publicKeySPKI)
    }
}
