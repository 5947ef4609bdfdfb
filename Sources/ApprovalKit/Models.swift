// What the SDK hands an app: the credentials to keep, a prompt to show, the outcome of an answer, and typed errors.
import JSONText

/// What an app keeps after enrolling (in its keychain or a file of its own; it holds no secret: the private key
/// stays in its `DeviceKey`).
public struct DeviceCredentials: Codable, Sendable, Equatable {
    /// Where the broker is (`public_url`).
    public var baseURL: String
    public var tenantID: String
    public var deviceID: String
    public var userID: String
    public var displayName: String

    public init(baseURL: String, tenantID: String, deviceID: String, userID: String, displayName: String) {
        self.baseURL = baseURL
        self.tenantID = tenantID
        self.deviceID = deviceID
        self.userID = userID
        self.displayName = displayName
    }
}

/// A sign-in waiting for the user: show the choices and the context, and answer with the number the user taps.
public struct Prompt: Sendable, Equatable, Identifiable {
    public var id: String { challengeID }
    public let challengeID: String
    public let tenantID: String
    public let requestID: String
    public let userID: String
    /// The numbers to show; one is the number the browser shows.
    public let choices: [Int]
    /// What the IdP says of the sign-in (app, place, browser, …), by field name.
    public let context: [String: String]
    /// RFC 3339, as the broker sent them.
    public let createdAt: String
    public let expiresAt: String

    /// A prompt from the device's view of a challenge (API.md); nil when a field is missing.
    public init?(view: JSONValue) {
        guard let challengeID = view["challenge_id"]?.string, let tenantID = view["tenant_id"]?.string,
            let requestID = view["request_id"]?.string, let userID = view["user_id"]?.string,
            case .array(let numbers)? = view["choices"], let createdAt = view["created_at"]?.string,
            let expiresAt = view["expires_at"]?.string
        else { return nil }
        var context: [String: String] = [:]
        if case .object(let fields)? = view["context"] {
            for (name, value) in fields { context[name] = value.string }
        }
        self.challengeID = challengeID
        self.tenantID = tenantID
        self.requestID = requestID
        self.userID = userID
        choices = numbers.compactMap { if case .integer(let number) = $0 { number } else { nil } }
        self.context = context
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }

    /// The view the decision string is made of.
    var view: JSONValue {
        .object([
            ("tenant_id", .string(tenantID)), ("request_id", .string(requestID)),
            ("challenge_id", .string(challengeID)),
        ])
    }
}

/// What the broker said of an answer: `approved`, `denied`, `expired`, `answered_elsewhere`, …
public struct AnswerOutcome: Sendable, Equatable {
    public let challengeID: String
    public let outcome: String
    /// Why it was denied: `wrong_number`, `not_me` or `cancelled`.
    public let reason: String?

    public init(challengeID: String, outcome: String, reason: String? = nil) {
        self.challengeID = challengeID
        self.outcome = outcome
        self.reason = reason
    }
}

/// Why the user denies a prompt.
public enum DenyReason: String, Sendable, CaseIterable {
    /// "It wasn't me": the broker locks the user's passwordless sign-in for a while.
    case notMe = "not_me"
    case cancelled
}

/// The ways a call fails: the broker's problem codes, and the SDK's own.
public enum ApprovalError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The broker refused: its HTTP status, its problem `code` (API.md) and detail.
    case refused(status: Int, code: String, detail: String)
    /// No answer came: the broker could not be reached, or the connection failed.
    case unreachable(String)
    /// An activation URI that is not one.
    case invalidActivation(String)
    /// The broker answered something the SDK cannot read.
    case malformedResponse(String)

    /// The problem code, for a refusal.
    public var code: String? {
        if case .refused(_, let code, _) = self { code } else { nil }
    }

    public var description: String {
        switch self {
        case .refused(let status, let code, let detail): "\(status) \(code): \(detail)"
        case .unreachable(let detail): "unreachable: \(detail)"
        case .invalidActivation(let detail): "not an activation URI: \(detail)"
        case .malformedResponse(let detail): "malformed response: \(detail)"
        }
    }

    /// The problem a response carries.
    static func refusal(_ response: TransportResponse) -> ApprovalError {
        let problem = JSONValue.parse(response.body)
        return .refused(
            status: response.status, code: problem?["code"]?.string ?? "unknown",
            detail: problem?["detail"]?.string ?? String(decoding: response.body.prefix(200), as: UTF8.self))
    }
}
