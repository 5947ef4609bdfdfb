// The device SDK against the real binary: an app on ApprovalKit enrolls from the activation URI the IdP made,
// follows its prompts on the event stream, approves one sign-in by its number and denies another, finds its stream
// again after a kill -9 and restart of the broker, and reads its queue by polling when something between the phone
// and the broker refuses event streams. The IdP's side is curl, as in the other end-to-end tests.
import ApprovalKit
import Foundation
import Locking
import TestSupport
import Testing

/// How the app answers a request: approve with a number, or deny.
enum AppAnswer: Sendable {
    case approve(Int)
    case deny(DenyReason)
}

/// An app on ApprovalKit whose task follows its prompts on a loop thread of the test's own and answers each as the
/// test said for its request, keeping a line for each thing it saw: `prompt <request>`, `<outcome> <request>`,
/// `disconnected`, or `ended: <why>`.
final class AppOnApprovalKit: Sendable {
    let device: ApprovalDevice
    private let answers = Locked<[String: AppAnswer]>([:])
    private let seenLines = Locked<[String]>([])
    private let task = Locked<Task<Void, Never>?>(nil)

    /// A quick reconnect, so that a test does not wait out a phone's backoff.
    static let quickPolicy = {
        var policy = ReconnectPolicy()
        policy.initialDelaySeconds = 0.1
        policy.maxDelaySeconds = 0.4
        return policy
    }()

    init(_ device: ApprovalDevice) { self.device = device }

    var seen: [String] { seenLines.withLock { $0 } }

    /// How to answer `requestID`, said before the IdP creates it: its prompt may come before the create's answer.
    func willAnswer(_ requestID: String, _ answer: AppAnswer) { answers.withLock { $0[requestID] = answer } }

    func start(on loop: LoopThread) {
        let (device, answers, seenLines) = (device, answers, seenLines)
        task.withLock {
            $0 = Task(executorPreference: loop.loop) {
                do {
                    for try await event in device.prompts(policy: Self.quickPolicy) {
                        switch event {
                        case .prompt(let prompt):
                            seenLines.withLock { $0.append("prompt \(prompt.requestID)") }
                            let outcome: AnswerOutcome
                            switch answers.withLock({ $0[prompt.requestID] }) {
                            case .approve(let number)?: outcome = try await device.approve(prompt, selecting: number)
                            case .deny(let reason)?: outcome = try await device.deny(prompt, reason: reason)
                            case nil: continue
                            }
                            seenLines.withLock { $0.append("\(outcome.outcome) \(prompt.requestID)") }
                        case .withdrawn: break
                        case .disconnected: seenLines.withLock { $0.append("disconnected") }
                        }
                    }
                    seenLines.withLock { $0.append("ended: cancelled") }
                } catch {
                    seenLines.withLock { $0.append("ended: \(error)") }
                }
            }
        }
    }

    /// Cancels the task and waits for it to end.
    func stop() async {
        let running = task.withLock { $0 }
        running?.cancel()
        await running?.value
    }
}

/// A transport that passes requests to the broker but refuses every event stream with a 503, as a proxy that
/// does not carry long-lived responses would.
final class StreamRefusingTransport: ApprovalTransport, Sendable {
    let inner: EventLoopTransport
    private let refusals = Locked(0)

    init(_ inner: EventLoopTransport) { self.inner = inner }

    var streamsRefused: Int { refusals.withLock { $0 } }

    func send(_ request: TransportRequest) async throws -> TransportResponse { try await inner.send(request) }

    func stream(_ request: TransportRequest) -> AsyncThrowingStream<StreamPart, any Error> {
        refusals.withLock { $0 += 1 }
        return AsyncThrowingStream { continuation in
            continuation.yield(.ended(status: 503))
            continuation.finish()
        }
    }
}

@Suite struct ApprovalKitFlowTests {
    /// The activation URI of a new enrollment for `user`.
    func activationURI(_ idp: IdP, user: String) throws -> String {
        let created = try idp.call("POST", "/v1/tenants/contoso/enrollments", "{\"user_id\":\"\(user)\"}")
        #expect(created.status == 201, "\(created.body)")
        return try #require(created.json["activation_uri"] as? String)
    }

    /// The IdP starts a sign-in that the app will answer with `answer`, and waits (bounded) for its end.
    func signIn(
        _ idp: IdP, _ app: AppOnApprovalKit, _ requestID: String, number: Int, answer: AppAnswer
    ) async throws -> String {
        app.willAnswer(requestID, answer)
        let created = try await offThePool {
            try idp.challenge(requestID, user: app.device.credentials.userID, number: number)
        }
        #expect(created.status == 201, "\(created.body)")
        let challengeID = try #require(created.json["challenge_id"] as? String)
        let ended = try await offThePool {
            try idp.call("GET", "/v1/tenants/contoso/challenges/\(challengeID)?wait=20")
        }
        return ended.json["status"] as? String ?? "status \(ended.status): \(ended.body)"
    }

    @Test func anAppEnrollsAnswersByTheNumberAndFindsItsStreamAgainAfterTheBrokerIsKilled() async throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-sdk-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let first = try await offThePool { try ApprovaldProcess(extraConfig: brokerConfig, dataDirectory: data) }
        let loop = try LoopThread()
        defer { loop.stop() }
        let uri = try activationURI(IdP(broker: first), user: "nia@contoso.com")
        let transport = Locked<EventLoopTransport?>(nil)
        let device = try await ApprovalDevice.enroll(activationURI: uri, key: try SoftwareDeviceKey()) { baseURL in
            let made = try EventLoopTransport(baseURL: baseURL, loop: loop.loop)
            transport.withLock { $0 = made }
            return made
        }
        #expect(device.credentials.userID == "nia@contoso.com" && device.credentials.tenantID == "contoso")
        let app = AppOnApprovalKit(device)
        app.start(on: loop)

        #expect(try await signIn(IdP(broker: first), app, "sdk-1", number: 37, answer: .approve(37)) == "approved")
        #expect(try await signIn(IdP(broker: first), app, "sdk-2", number: 52, answer: .deny(.cancelled)) == "denied")
        #expect(
            app.seen.starts(with: ["prompt sdk-1", "approved sdk-1", "prompt sdk-2", "denied sdk-2"]), "\(app.seen)")

        let port = first.h2cPort
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        #expect(await eventually(timeout: 10) { app.seen.contains("disconnected") }, "\(app.seen)")
        let second = try await offThePool {
            try ApprovaldProcess(
                extraConfig: brokerConfig, dataDirectory: data, redis: first.redis, cleartextPort: port)
        }
        #expect(try await signIn(IdP(broker: second), app, "sdk-3", number: 64, answer: .approve(64)) == "approved")
        #expect(app.seen.suffix(2) == ["prompt sdk-3", "approved sdk-3"], "\(app.seen)")
        #expect(app.seen.filter { $0.hasPrefix("prompt") }.count == 3, "each prompt once: \(app.seen)")

        await app.stop()
        #expect(app.seen.last == "ended: cancelled")
        transport.withLock { $0?.close() }
    }

    @Test func anAppWhoseStreamsAreRefusedReadsItsQueueByPolling() async throws {
        let broker = try await offThePool { try ApprovaldProcess(extraConfig: brokerConfig) }
        let idp = IdP(broker: broker)
        let loop = try LoopThread()
        defer { loop.stop() }
        let uri = try activationURI(idp, user: "omar@contoso.com")
        let refusing = Locked<StreamRefusingTransport?>(nil)
        let device = try await ApprovalDevice.enroll(activationURI: uri, key: try SoftwareDeviceKey()) { baseURL in
            let made = StreamRefusingTransport(try EventLoopTransport(baseURL: baseURL, loop: loop.loop))
            refusing.withLock { $0 = made }
            return made
        }
        let app = AppOnApprovalKit(device)
        app.start(on: loop)

        #expect(try await signIn(idp, app, "poll-1", number: 23, answer: .approve(23)) == "approved")
        #expect(try await signIn(idp, app, "poll-2", number: 81, answer: .deny(.cancelled)) == "denied")
        let streamsRefused = refusing.withLock { $0?.streamsRefused ?? 0 }
        #expect(streamsRefused >= AppOnApprovalKit.quickPolicy.pollAfterFailures, "the prompts came by polling")
        #expect(app.seen.filter { $0.hasPrefix("prompt") } == ["prompt poll-1", "prompt poll-2"], "\(app.seen)")

        await app.stop()
        refusing.withLock { $0?.inner.close() }
    }
}
