// What a rule decided: its outcome, the user's new state, what must become durable and what goes out once it is.

public struct Transition<Outcome> {
    public let outcome: Outcome
    /// The user's state after the rule, at the version it was decided on.
    public let state: UserState
    /// What the store must make durable, in one commit.
    public let changes: [Change]
    /// What goes out once the changes are durable.
    public let deliveries: [Delivery]

    /// Nothing to commit: the rule only read, or changed what need not outlive the process (a lapsed lockout, the
    /// trimmed rate window).
    public var changesNothing: Bool { changes.isEmpty }

    public func map<Other>(_ transform: (Outcome) -> Other) -> Transition<Other> {
        Transition<Other>(outcome: transform(outcome), state: state, changes: changes, deliveries: deliveries)
    }
}

/// State a store makes durable. Large payloads are boxed (`indirect`): a commit's changes are gathered into one
/// list per loop turn, and a list of pointers grows without copying whole challenges.
public enum Change: Equatable, Sendable {
    indirect case policySaved(tenantID: String, TenantPolicy)
    /// Registered, or registered again with another key: stored, and found by its id and its key.
    indirect case deviceSaved(Device)
    /// Seen, or given a new push target or name, its id and key as they were: stored, its indexes left as they are.
    indirect case deviceUpdated(Device)
    /// The device as it was.
    indirect case deviceRemoved(Device)
    /// Created, or ended.
    indirect case challengeSaved(Challenge)
    indirect case fallbackSaved(Fallback)
    case lockoutSaved(UserKey, until: UnixMillis)
    /// The remembering window ended: the challenge (or fallback) and its `request_id` are forgotten.
    case forgotten(RequestKey, challengeID: String?)
    /// The challenge ended: its result joins the outbox in the same commit.
    indirect case resultDue(Challenge)
    /// A CIBA request fell back to the password: its callback, with the request's bearer token, joins the outbox in
    /// the same commit as the fallback (Keycloak accepts only 201, so it hears of the fallback this way).
    indirect case fallbackResultDue(Fallback, bearerToken: String)
    /// Created, or ended.
    indirect case enrollmentSaved(Enrollment)
    /// Its remembering window ended: the enrollment and its activation code's index are forgotten.
    indirect case enrollmentForgotten(Enrollment)
}

/// What goes out once a commit is durable (large payloads boxed, as for `Change`).
public enum Delivery: Equatable, Sendable {
    /// A new entry in a device's queue: send it on the device's stream, or wake the device.
    indirect case queued(Challenge, Device)
    /// An entry left a device's queue: tell the device's stream.
    case unqueued(challengeID: String, deviceID: String, outcome: DeviceOutcome)
    /// The challenge ended: answer its long polls.
    indirect case ended(Challenge)
    /// The device is gone: close its streams.
    case deviceRemoved(deviceID: String)
    /// The enrollment ended: answer its long polls.
    indirect case enrollmentEnded(Enrollment)
}

/// A transition being made: the state as it changes and what the changes cause.
struct Work {
    var state: UserState
    var changes: [Change] = []
    var deliveries: [Delivery] = []

    init(_ state: UserState) { self.state = state }

    func finish<Outcome>(_ outcome: Outcome) -> Transition<Outcome> {
        Transition(outcome: outcome, state: state, changes: changes, deliveries: deliveries)
    }
}
