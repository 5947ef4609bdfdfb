// The life of one server connection, without I/O: which timer runs, when the session ends, and how many resets
// the client may make the server send. ServerConnection feeds it inputs and carries out the actions.

/// `waitingForPreface → idle ⇄ open → draining → closing → closed`. A stream counts as activity once its request is complete (or
/// answered early): one whose request is still arriving leaves the connection idle, so a header block or body
/// that never ends cannot hold it.
struct ConnectionStateMachine {
    enum State: Equatable {
        /// Accepted; the client's preface (after the TLS handshake) has not all arrived. The preface timer runs.
        case waitingForPreface
        /// No stream with a complete request: the idle timer runs.
        case idle
        /// At least one stream with a complete request.
        case open
        /// GOAWAY sent for shutdown: open streams go on, no new ones; the session ends with the last stream.
        case draining
        /// The session is ending (GOAWAY queued with its error code): what is queued is written, then it closes.
        case closing
        case closed
    }

    enum Action: Equatable {
        case none
        /// Arms the connection timer with the preface timeout.
        case armTimer(seconds: Double)
        /// Arms the connection timer with the idle timeout, a duration every connection shares.
        case armIdleTimer(seconds: Double)
        case cancelTimer
        /// Ends the session: GOAWAY with this code, written before the socket closes.
        case endSession(H2ErrorCode)
        /// Graceful shutdown: GOAWAY(NO_ERROR), streamed responses end; with no stream open, the session ends too.
        case goAway(endSession: Bool)
        /// Arms the request timer for the oldest request still arriving.
        case armRequestTimer(seconds: Double)
        /// Closes the socket at once.
        case close
    }

    struct Timeouts: Equatable {
        var preface: Double
        var idle: Double
        var request: Double
    }

    private(set) var state = State.waitingForPreface
    let timeouts: Timeouts
    /// Open streams, and those of them whose request is complete or answered.
    private(set) var streams = 0
    private(set) var activeStreams = 0
    private var requestTimerArmed = false
    /// Every RST_STREAM the server sends costs a token: a client that provokes stream errors ("MadeYouReset",
    /// CVE-2025-8671) cannot make the server reset, and so start, requests without bound.
    private var resetBudget: TokenBucket

    init(timeouts: Timeouts, resetBurst: UInt64, resetRatePerSecond: UInt64, now: Double) {
        self.timeouts = timeouts
        resetBudget = TokenBucket(burst: resetBurst, ratePerSecond: resetRatePerSecond, now: now)
    }

    /// Streams whose request is still arriving.
    var arrivingStreams: Int { streams - activeStreams }

    /// Whether the client has sent its preface: frames may go out.
    var speaksHTTP2: Bool {
        switch state {
        case .idle, .open, .draining, .closing: true
        case .waitingForPreface, .closed: false
        }
    }

    // MARK: Inputs

    /// The connection was accepted.
    func start() -> Action { .armTimer(seconds: timeouts.preface) }

    mutating func prefaceReceived() -> Action {
        guard state == .waitingForPreface else { return .none }
        state = .idle
        return .armIdleTimer(seconds: timeouts.idle)
    }

    /// The first bytes are not HTTP/2's preface (a client that chose h2 by ALPN and then spoke something else).
    mutating func badPreface() -> Action {
        guard state == .waitingForPreface else { return .none }
        state = .closed
        return .close
    }

    mutating func streamOpened() {
        streams += 1
    }

    /// A stream's request is complete, or answered before it was.
    mutating func requestSettled() -> Action {
        activeStreams += 1
        guard state == .idle else { return .none }
        state = .open
        return .cancelTimer
    }

    mutating func streamClosed(wasActive: Bool) -> Action {
        streams -= 1
        if wasActive { activeStreams -= 1 }
        switch state {
        case .open where activeStreams == 0:
            state = .idle
            return .armIdleTimer(seconds: timeouts.idle)
        case .draining where streams == 0:
            state = .closing
            return .endSession(.noError)
        default:
            return .none
        }
    }

    /// The connection timer fired: the preface or idle time is up.
    mutating func timerFired() -> Action {
        switch state {
        case .waitingForPreface:
            state = .closed
            return .close
        case .idle:
            state = .closing
            return .endSession(.noError)
        case .open, .draining, .closing, .closed:
            return .none
        }
    }

    /// A read has been handled: with a request left unfinished, the request timer must run. Armed once per
    /// wait rather than per request, as most requests arrive whole in one read.
    mutating func readEnded() -> Action {
        guard arrivingStreams > 0, !requestTimerArmed, speaksHTTP2 else { return .none }
        requestTimerArmed = true
        return .armRequestTimer(seconds: timeouts.request)
    }

    /// The request timer fired: requests that began arriving at or before the returned time have timed out.
    mutating func requestTimerFired(now: Double) -> Double {
        requestTimerArmed = false
        return now - timeouts.request
    }

    /// After the expired requests are reset: the oldest still arriving began at `oldest` (nil: none is left).
    mutating func requestsStillArriving(oldest: Double?, now: Double) -> Action {
        guard let oldest, !requestTimerArmed else { return .none }
        requestTimerArmed = true
        return .armRequestTimer(seconds: max(0, oldest + timeouts.request - now))
    }

    /// The server sent a RST_STREAM. Past the budget, the session ends with ENHANCE_YOUR_CALM.
    mutating func resetSent(now: Double) -> Action {
        guard !resetBudget.take(now: now) else { return .none }
        switch state {
        case .idle, .open, .draining:
            state = .closing
            return .endSession(.enhanceYourCalm)
        case .waitingForPreface, .closing, .closed:
            return .none
        }
    }

    /// The server shuts down.
    mutating func shutdownRequested() -> Action {
        switch state {
        case .idle, .open:
            state = streams == 0 ? .closing : .draining
            return .goAway(endSession: streams == 0)
        case .waitingForPreface, .closing:
            state = .closed
            return .close
        case .draining, .closed:
            return .none
        }
    }

    /// The shutdown grace is over: whatever is left closes.
    mutating func shutdownGraceEnded() -> Action {
        guard state != .closed else { return .none }
        state = .closed
        return .close
    }

    /// The socket is closed (for any reason: an action, the peer, an error).
    mutating func closed() {
        state = .closed
    }
}
