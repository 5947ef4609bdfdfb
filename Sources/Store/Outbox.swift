// The verifier outbox: every ended challenge's callback, stored in the same transaction as the ending, until a
// verifier acknowledges it or it becomes a dead letter.
import Core

/// Where a callback goes, and how it is authenticated there.
public enum CallbackTarget: Equatable, Sendable {
    /// The tenant's IdP client's verifier, signed with the client's key (API.md, "Callbacks to the verifier").
    case verifier
    /// The tenant's Keycloak CIBA callback endpoint, with the bearer token Keycloak issued for the request.
    case ciba(bearerToken: String)

    /// The token, kept beside the callback (never in its body, which the dead-letter API shows).
    public var bearerToken: String? {
        if case .ciba(let token) = self { return token }
        return nil
    }

    public init(bearerToken: String?) { self = bearerToken.map { .ciba(bearerToken: $0) } ?? .verifier }
}

/// One callback waiting for its verifier (or its CIBA callback endpoint).
public struct OutboxEntry: Equatable, Sendable {
    public let challengeID: String
    public let tenantID: String
    /// The partition of the challenge's user: callbacks are read (and, with many instances, leased) per partition.
    public let partition: Partition
    /// The callback's JSON body, as it will be signed and sent.
    public let body: String
    public let endedAt: UnixMillis
    /// Attempts made so far.
    public let attempts: Int
    public let nextAttemptAt: UnixMillis
    /// The create's `traceparent`, sent with the callback.
    public let traceparent: String?
    public let target: CallbackTarget

    public init(
        challengeID: String, tenantID: String, partition: Partition, body: String, endedAt: UnixMillis,
        attempts: Int = 0, nextAttemptAt: UnixMillis? = nil, traceparent: String? = nil,
        target: CallbackTarget = .verifier
    ) {
        self.challengeID = challengeID
        self.tenantID = tenantID
        self.partition = partition
        self.body = body
        self.endedAt = endedAt
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt ?? endedAt
        self.traceparent = traceparent
        self.target = target
    }
}

/// A callback the verifier refused for good, or that could not be delivered within the retry period.
public struct DeadLetter: Equatable, Sendable {
    public let entry: OutboxEntry
    /// The verifier's last HTTP status; 0 when there was no response.
    public let status: Int
    public let detail: String
    public let deadAt: UnixMillis

    public init(entry: OutboxEntry, status: Int, detail: String, deadAt: UnixMillis) {
        self.entry = entry
        self.status = status
        self.detail = detail
        self.deadAt = deadAt
    }
}

/// Changes to the outbox, committed together with the domain's events.
public enum OutboxChange: Sendable {
    case enqueue(OutboxEntry)
    case delivered(challengeID: String)
    case retry(challengeID: String, attempts: Int, nextAttemptAt: UnixMillis)
    case deadLetter(DeadLetter)
}

/// Where a page of due callbacks ended: the next page starts after it.
public struct OutboxCursor: Equatable, Sendable {
    public let dueAt: UnixMillis
    public let challengeID: String

    public init(dueAt: UnixMillis, challengeID: String) {
        self.dueAt = dueAt
        self.challengeID = challengeID
    }

    public init(after entry: OutboxEntry) { self.init(dueAt: entry.nextAttemptAt, challengeID: entry.challengeID) }
}

/// Callbacks due now, and when the next of the others falls due.
public struct DueCallbacks: Sendable {
    public var entries: [OutboxEntry]
    public var nextDueAt: UnixMillis?

    public init(entries: [OutboxEntry], nextDueAt: UnixMillis?) {
        self.entries = entries
        self.nextDueAt = nextDueAt
    }
}
