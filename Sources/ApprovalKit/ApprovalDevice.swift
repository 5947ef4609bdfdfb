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
    /// The event stream ended or failed (`reason`); it is opened again after the backoff, and prompts that came
    /// meanwhile are yielded then. An app may show that it is offline until the next prompt.
    case disconnected(reason: String)
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
    /// The device's path on the broker, `/v1/devices/{device_id}` under the base URL's path.
    private let devicePrefix: String

    public init(
        credentials: DeviceCredentials, key: any DeviceKey, transport: any ApprovalTransport,
        clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }
    ) {
        self.credentials = credentials
        self.key = key
        self.transport = transport
        self.clock = clock
        let device = credentials.deviceID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed)
        devicePrefix = Self.join(
            Self.basePath(of: credentials.baseURL), "/v1/devices/\(device ?? credentials.deviceID)")
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
        let response = try await transport.send(
            TransportRequest(
                method: "POST", path: Self.join(basePath(of: activation.baseURL), "/v1/enroll"),
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
    /// again), and the queue polled while the stream keeps failing. Throws when the broker refuses the device
    /// (removed, or a key it does not know). Its work happens in `next()` and nowhere else: when the caller stops
    /// iterating, nothing is left running.
    public func prompts(policy: ReconnectPolicy = ReconnectPolicy()) -> PromptSequence {
        PromptSequence(device: self, policy: policy)
    }

    /// The device's event stream, signed.
    func eventStream() throws -> AsyncThrowingStream<StreamPart, any Error> {
        transport.stream(try signed("GET", devicePath("/stream")))
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

    private func devicePath(_ suffix: String) -> String { devicePrefix + suffix }

    /// The base URL's path (a broker behind a proxy at `/approvald`).
    private static func basePath(of baseURL: String) -> String { URLComponents(string: baseURL)?.path ?? "" }

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
