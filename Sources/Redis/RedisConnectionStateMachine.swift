// The life of the client's one connection, as a state machine without I/O: connect, log in (AUTH, SELECT), serve,
// and after any loss wait (exponential backoff with jitter) and connect again, until closed.

struct RedisConnectionStateMachine {
    enum State: Equatable {
        case idle
        /// TCP connect under way; `attempt` counts the failures since the last time the connection was ready.
        case connecting(attempt: Int)
        /// AUTH and SELECT sent, their replies awaited.
        case loggingIn(attempt: Int)
        case ready
        case waitingToReconnect(attempt: Int)
        case closed
    }

    enum Action: Equatable {
        case connect
        case logIn
        case announceReady
        /// Drop the connection (if any) and fail what waits on it with this error; then wait `after` seconds.
        /// `wasReady`: a ready connection was lost (not a connect or login that failed).
        case reconnect(after: Double, because: RedisError, wasReady: Bool)
        /// Drop the connection and fail what waits on it; no reconnect.
        case shutDown
        case none
    }

    struct Backoff: Equatable {
        var firstSeconds = 0.05
        var maxSeconds = 2.0

        /// The delay before attempt `attempt` (1, 2, …): doubling from `firstSeconds` to `maxSeconds`, drawn from its
        /// upper half so that instances that lost one Redis together do not all come back in the same millisecond.
        func delay(attempt: Int, unit: Double) -> Double {
            let ceiling = min(maxSeconds, firstSeconds * Double(1 << min(max(attempt - 1, 0), 20)))
            return ceiling / 2 + ceiling / 2 * unit
        }
    }

    private(set) var state = State.idle
    let needsLogIn: Bool
    let backoff: Backoff

    init(needsLogIn: Bool, backoff: Backoff = Backoff()) {
        self.needsLogIn = needsLogIn
        self.backoff = backoff
    }

    mutating func start() -> Action {
        guard state == .idle else { return .none }
        state = .connecting(attempt: 0)
        return .connect
    }

    mutating func connected() -> Action {
        guard case .connecting(let attempt) = state else { return .none }
        if needsLogIn {
            state = .loggingIn(attempt: attempt)
            return .logIn
        }
        state = .ready
        return .announceReady
    }

    mutating func loggedIn() -> Action {
        guard case .loggingIn = state else { return .none }
        state = .ready
        return .announceReady
    }

    /// The connect failed or timed out, the login was refused, the connection was lost, or a command timed out:
    /// `unit` is a random number in 0...1 for the jitter.
    mutating func failed(_ error: RedisError, unit: Double) -> Action {
        let attempt: Int
        switch state {
        case .connecting(let failures), .loggingIn(let failures): attempt = failures + 1
        case .ready: attempt = 1
        case .idle, .waitingToReconnect, .closed: return .none
        }
        let wasReady = state == .ready
        state = .waitingToReconnect(attempt: attempt)
        return .reconnect(after: backoff.delay(attempt: attempt, unit: unit), because: error, wasReady: wasReady)
    }

    mutating func reconnectDue() -> Action {
        guard case .waitingToReconnect(let attempt) = state else { return .none }
        state = .connecting(attempt: attempt)
        return .connect
    }

    mutating func close() -> Action {
        guard state != .closed else { return .none }
        state = .closed
        return .shutDown
    }

    var isReady: Bool { state == .ready }
}
