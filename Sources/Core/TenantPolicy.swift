// A tenant's policy: who is offered passwordless sign-in, and the limits around it.

public struct TenantPolicy: Equatable, Sendable {
    public enum Target: String, Sendable, CaseIterable {
        case all
        /// Only `users`.
        case selected
    }

    public var passwordless = true
    public var target = Target.all
    public var users: Set<String> = []
    public var maxDevicesPerUser = 5
    public var challengeTTLSeconds = 120
    public var choices = 3
    public var maxPendingPerUser = 1
    public var maxChallengesPerWindow = 5
    public var windowSeconds = 600
    public var lockoutSeconds = 1200

    public init() {}

    /// Whether the user is offered passwordless sign-in at all.
    public func offersPasswordless(to user: String) -> Bool {
        passwordless && targets(user)
    }

    /// Whether the user is within the policy's target (devices may be registered for them).
    public func targets(_ user: String) -> Bool {
        target == .all || users.contains(user)
    }

    /// The bounds every field must keep; the message names the field.
    public func validate() throws(CoreError) {
        func check(_ value: Int, _ range: ClosedRange<Int>, _ field: String) throws(CoreError) {
            guard range.contains(value) else {
                throw CoreError(.invalidField, "\(field) must be within \(range.lowerBound)...\(range.upperBound)")
            }
        }
        try check(maxDevicesPerUser, 1...100, "max_devices_per_user")
        try check(challengeTTLSeconds, ChallengeRequest.ttlSecondsRange, "challenge_ttl_seconds")
        try check(choices, 2...10, "choices")
        try check(maxPendingPerUser, 1...100, "max_pending_per_user")
        try check(maxChallengesPerWindow, 1...100_000, "max_challenges_per_window")
        try check(windowSeconds, 1...86_400, "window_seconds")
        try check(lockoutSeconds, 0...2_592_000, "lockout_seconds")
        guard users.count <= 10_000 else { throw CoreError(.invalidField, "users holds more than 10000 entries") }
        for user in users { try Validate.userID(user) }
    }
}
