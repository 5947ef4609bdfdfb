// An enrolled phone, as an authenticator app drives it: enroll from the QR code's URI, receive prompts (the event
// stream, reconnected with jittered backoff, falling back to polling), answer them with a signed decision, rotate the
// push token, and turn phone sign-in off. Every signature is made by the app's `DeviceKey` with the wire formats of
// the Protocol module, the very code the broker verifies with.
import Crypto
import Foundation
import JSONText
import Protocol

/// Where a phone is woken when no event stream is open: APNs or FCM, with its token, or nothing (stream or poll).
public struct PushRegistration: Sendable, Equatable {
    public var provider: String
    public var token: String
    public var topic: String

    /// `provider`: `apns`, `fcm` or `none`.
    public init(provider: String, token: String = "", topic: String = "") {
        self.provider = provider
        self.token = token
        self.topic = topic
    }

    public static let none = PushRegistration(provider: "none")

    var json: String {
        JSONWriter.object { push in
            push.string("provider", provider)
            if provider != "none" {
                push.string("token", token)
                push.string("topic", topic)
            }
        }
    }
}

/// What the prompt stream yields.
public enum PromptEvent: Sendable, Equatable {
    /// A sign-in waits for the user.
    case prompt(Prompt)
    /// A prompt is no longer to be answered: answered on another device, expired, cancelled (its `outcome`).
    case withdrawn(challengeID: String, outcome: String)
}

/// How the prompt stream reconnects.
public struct ReconnectPolicy: Sendable {
    /// The first wait after a failure; each failure in a row doubles it, up to `maxDelaySeconds`, with jitter.
    public var initialDelaySeconds = 0.5
    public var maxDelaySeconds = 30.0
    /// After this many failures in a row the queue is read by polling while the stream is retried.
    public var pollAfterFailures = 3

    public init() {}

    /// The wait after `failures` failures in a row: an exponential backoff with full jitter (a random point of it),
    /// so that phones cut off together do not come back together.
    func delay(afterFailures failures: Int, random: Double) -> Double {
        let ceiling = min(maxDelaySeconds, initialDelaySeconds * pow(2, Double(max(0, failures - 1))))
        return ceiling / 2 + ceiling / 2 * random
    }
}

public final class ApprovalDevice: Sendable {
    public let credentials: DeviceCredentials
    private let key: any DeviceKey
    private let transport: any ApprovalTransport
    /// Unix seconds, for request signatures and signed decisions.
    private let clock: @Sendable () -> Int64

    public init(
        credentials: DeviceCredentials, key: any DeviceKey, transport: any ApprovalTransport,
        clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }
    ) {
        self.credentials = credentials
        self.key = key
        self.transport = transport
        self.clock = clock
    }

    // MARK: Enrolling

    /// Completes the enrollment an activation URI (the QR code's text) names, with `key` as the device's key:
    /// the key's proof over the code is sent, never the private key. `transport` is made for the broker the URI
    /// names.
    public static func enroll(
        activationURI: String, key: any DeviceKey, push: PushRegistration = .none, displayName: String? = nil,
        transport makeTransport: (_ baseURL: String) throws -> any ApprovalTransport
    ) async throws -> ApprovalDevice {
        guard let activation = ActivationURI(activationURI) else {
            throw ApprovalError.invalidActivation(String(activationURI.prefix(80)))
        }
        let transport = try makeTransport(activation.baseURL)
        let publicKey = Data(key.publicKeySPKI).base64EncodedString()
        let proof = try key.signature(
            for: Array(enrollmentProofMessage(code: activation.code, publicKey: publicKey).utf8))
        let body = JSONWriter.object { enroll in
            enroll.string("activation_code", activation.code)
            enroll.string("public_key", publicKey)
            enroll.string("proof", Base64URL.encode(proof))
            enroll.raw("push", push.json)
            if let displayName { enroll.string("display_name", displayName) }
        }
        let basePath = URLComponents(string: activation.baseURL)?.path ?? ""
        let response = try await transport.send(
            TransportRequest(
                method: "POST", path: Self.join(basePath, "/v1/enroll"),
                headers: [("content-type", "application/json")], body: Array(body.utf8)))
        guard response.status == 200 || response.status == 201 else { throw ApprovalError.refusal(response) }
        guard let enrolled = JSONValue.parse(response.body), let deviceID = enrolled["device_id"]?.string,
            let tenantID = enrolled["tenant_id"]?.string, let userID = enrolled["user_id"]?.string
        else { throw ApprovalError.malformedResponse(String(decoding: response.body.prefix(200), as: UTF8.self)) }
        let credentials = DeviceCredentials(
            baseURL: activation.baseURL, tenantID: tenantID, deviceID: deviceID, userID: userID,
            displayName: enrolled["display_name"]?.string ?? "")
        return ApprovalDevice(credentials: credentials, key: key, transport: transport)
    }

    // MARK: Prompts

    /// The prompts for this device as they come: the event stream, opened again after every end or failure with
    /// jittered backoff (what is pending comes first each time, and what was yielded already is not yielded
    /// again), and the queue polled while the stream keeps failing. Ends with an error when the broker refuses the
    /// device (removed, or a key it does not know); cancelling the iterating task ends it.
    public func prompts(policy: ReconnectPolicy = ReconnectPolicy()) -> AsyncThrowingStream<PromptEvent, any Error> {
        AsyncThrowingStream { continuation in
            let task = Task { [self] in
                var shown = Set<String>()
                var failures = 0
                func emit(_ event: PromptEvent) {
                    switch event {
                    case .prompt(let prompt):
                        guard shown.insert(prompt.challengeID).inserted else { return }
                    case .withdrawn(let challengeID, _):
                        guard shown.remove(challengeID) != nil else { return }
                    }
                    continuation.yield(event)
                }
                while !Task.isCancelled {
                    do {
                        let ended = try await streamOnce { event in
                            failures = 0
                            emit(event)
                        }
                        if [401, 403, 404].contains(ended.status) { throw ApprovalError.refusal(ended) }
                        if ended.status != 200 { failures += 1 }
                    } catch let refusal as ApprovalError where refusal.code != nil {
                        return continuation.finish(throwing: refusal)
                    } catch {
                        failures += 1
                    }
                    if Task.isCancelled { break }
                    if failures >= policy.pollAfterFailures, let queue = try? await pendingPrompts() {
                        for prompt in queue { emit(.prompt(prompt)) }
                    }
                    let delay = policy.delay(afterFailures: max(failures, 1), random: Double.random(in: 0...1))
                    try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// One event stream, until it ends: each event to `deliver`; returns how it ended (status and body).
    private func streamOnce(_ deliver: (PromptEvent) -> Void) async throws -> TransportResponse {
        let path = devicePath("/stream")
        var events: [DeviceEvent] = []
        let parser = EventStreamParser { events.append($0) }
        var body: [UInt8] = []
        for try await part in transport.stream(try signed("GET", path)) {
            switch part {
            case .bytes(let bytes):
                bytes.withUnsafeBufferPointer { parser.feed($0) }
                if body.count < 4096 { body += bytes.prefix(4096 - body.count) }
                for event in events {
                    switch event {
                    case .challenge(let view): if let prompt = Prompt(view: view) { deliver(.prompt(prompt)) }
                    case .resolved(let challengeID, let outcome):
                        deliver(.withdrawn(challengeID: challengeID, outcome: outcome))
                    }
                }
                events.removeAll()
            case .ended(let status): return TransportResponse(status: status, body: body)
            }
        }
        return TransportResponse(status: 0, body: body)
    }

    /// What is queued for this device now, oldest first (the polling way).
    public func pendingPrompts() async throws -> [Prompt] {
        let response = try await transport.send(try signed("GET", devicePath("/challenges")))
        guard response.status == 200 else { throw ApprovalError.refusal(response) }
        guard case .array(let views)? = JSONValue.parse(response.body)?["challenges"] else {
            throw ApprovalError.malformedResponse("no challenges in the queue's answer")
        }
        return views.compactMap(Prompt.init(view:))
    }

    // MARK: Answering

    /// Approves with the number the user tapped; the broker says `approved`, or `denied` for a wrong number.
    public func approve(_ prompt: Prompt, selecting number: Int) async throws -> AnswerOutcome {
        try await answer(prompt, decision: "approve", selectedNumber: number, reason: nil)
    }

    /// Denies the prompt: `notMe` when the user did not start this sign-in.
    public func deny(_ prompt: Prompt, reason: DenyReason) async throws -> AnswerOutcome {
        try await answer(prompt, decision: "deny", selectedNumber: nil, reason: reason.rawValue)
    }

    private func answer(
        _ prompt: Prompt, decision: String, selectedNumber: Int?, reason: String?
    ) async throws -> AnswerOutcome {
        let body = try answerBody(
            to: prompt.view, device: credentials.deviceID, decision: decision, selectedNumber: selectedNumber,
            reason: reason, signedAtUnix: clock(), sign: key.signature(for:))
        let response = try await transport.send(
            TransportRequest(
                method: "POST", path: devicePath("/challenges/\(prompt.challengeID)/response"),
                headers: [("content-type", "application/json")], body: Array(body.utf8)))
        guard response.status == 200 else { throw ApprovalError.refusal(response) }
        let answered = JSONValue.parse(response.body)
        guard let outcome = answered?["status"]?.string else {
            throw ApprovalError.malformedResponse(String(decoding: response.body.prefix(200), as: UTF8.self))
        }
        return AnswerOutcome(challengeID: prompt.challengeID, outcome: outcome, reason: answered?["reason"]?.string)
    }

    // MARK: The device itself

    /// Replaces where the device is woken (a new APNs or FCM token).
    public func updatePushToken(_ push: PushRegistration) async throws {
        let response = try await transport.send(
            try signed("PUT", devicePath("/push-token"), body: Array(push.json.utf8)))
        guard response.status == 204 else { throw ApprovalError.refusal(response) }
    }

    /// Turns phone sign-in off: the broker forgets the device; its key signs nothing from now on.
    public func unenroll() async throws {
        let response = try await transport.send(try signed("DELETE", devicePath("")))
        guard response.status == 204 else { throw ApprovalError.refusal(response) }
    }

    // MARK: Requests

    private func devicePath(_ suffix: String) -> String {
        let basePath = URLComponents(string: credentials.baseURL)?.path ?? ""
        let device = credentials.deviceID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed)
        return Self.join(basePath, "/v1/devices/\(device ?? credentials.deviceID)\(suffix)")
    }

    /// A request signed with the device key (`Authorization: Approvald-Device …`), its body included.
    private func signed(_ method: String, _ path: String, body: [UInt8] = []) throws -> TransportRequest {
        let authorization = try DeviceSignature.header(
            device: credentials.deviceID, time: clock(), method: method, path: path, body: body,
            sign: key.signature(for:))
        var headers = [("authorization", authorization)]
        if !body.isEmpty { headers.append(("content-type", "application/json")) }
        return TransportRequest(method: method, path: path, headers: headers, body: body)
    }

    /// `path` under the base URL's path (a broker behind a proxy at `/approvald`).
    private static func join(_ basePath: String, _ path: String) -> String {
        basePath.hasSuffix("/") ? String(basePath.dropLast()) + path : basePath + path
    }
}
