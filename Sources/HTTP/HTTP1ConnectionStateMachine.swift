// The life of one HTTP/1.1 server connection, without I/O: which request may be read, which timer runs, whether a
// response keeps the connection, how it closes. HTTP1ServerConnection feeds it inputs and carries out the actions.

/// `receiving → handling → (idle → receiving …) | streaming | closing → closed`. One request at a time: pipelined
/// requests wait in the input buffer until the one before is answered, so answers go out in order. A connection
/// is closed by lingering: the last answer is written, the write side shut, and what the client still sends is
/// read and dropped until it closes or the linger time ends (closing at once could make the kernel reset the
/// connection, and the client lose the answer).
///
/// The timer is armed when a pass over what arrived ends (`readEnded`), not per request: a pass that answers many
/// pipelined requests costs one timer operation, or none when the timer already runs for the right deadline. An
/// idle timer that fires early (requests came and went since it was armed) is armed again for what is left.
struct HTTP1ConnectionStateMachine {
    enum State: Equatable {
        /// Between requests: the idle timer runs until the next request's first byte.
        case idle
        /// A request is arriving, since this time (monotonic seconds): the request timer runs. A new connection
        /// starts here, so its first request must arrive within the request timeout too.
        case receiving(since: Double)
        /// A complete request is with its handler.
        case handling
        /// The response is a body streamed over time: the connection carries nothing else, and closes after it.
        case streaming
        /// The last answer is queued; once it is written the write side is shut (`writeShut`) and the connection
        /// lingers.
        case closing(writeShut: Bool)
        case closed
    }

    enum Action: Equatable {
        case none
        case armTimer(seconds: Double)
        /// Arms the timer with the idle timeout, a duration every connection shares.
        case armIdleTimer(seconds: Double)
        /// Hands the complete request to its handler.
        case dispatch
        /// Cancels the timer and answers with this refusal (and `connection: close`); what is queued is written,
        /// then the connection lingers.
        case refuse(EarlyRefusal)
        /// Reads the next request, if one is waiting in the input buffer.
        case readNext
        /// Shuts the socket's write side and arms the timer for the linger time.
        case shutWrite(lingerSeconds: Double)
        /// Ends a streamed response (the terminating chunk), then closes as `closing` does.
        case endStream
        /// Closes the socket at once.
        case close
    }

    struct Timeouts: Equatable {
        var idle: Double
        var request: Double
        /// How long a closing connection reads and drops what the client still sends.
        var linger = 2.0
    }

    /// What the timer is armed for.
    enum Deadline: Equatable {
        /// The request arriving since this time.
        case request(since: Double)
        case idle
        case linger
    }

    private(set) var state: State
    let timeouts: Timeouts
    /// The server shuts down: the request being handled is the last, and its answer says `connection: close`.
    private var isDraining = false
    private(set) var armed: Deadline?
    /// When the connection was last found idle at the end of a pass.
    private var idleSince: Double

    init(timeouts: Timeouts, now: Double) {
        self.timeouts = timeouts
        state = .receiving(since: now)
        idleSince = now
    }

    /// Whether bytes that arrive are a request to read (rather than left waiting, or dropped while closing).
    var readsRequests: Bool {
        switch state {
        case .idle, .receiving: true
        default: false
        }
    }

    /// Whether what the client sends is read and dropped: it is closing, or it has a streamed response (whose
    /// client has nothing more to send, and whose leaving must be seen).
    var discardsInput: Bool {
        switch state {
        case .closing, .streaming: true
        default: false
        }
    }

    // MARK: Inputs

    /// The connection is set up: the timer of its first request.
    mutating func start() -> Action {
        guard case .receiving(let since) = state else { return .none }
        armed = .request(since: since)
        return .armTimer(seconds: timeouts.request)
    }

    /// Some of a request has been read.
    mutating func requestBegan(now: Double) {
        guard state == .idle else { return }
        state = .receiving(since: now)
    }

    /// A pass over what has arrived has ended: the timer must run for the request still arriving, or for the idle
    /// time, unless it already does.
    mutating func readEnded(now: Double) -> Action {
        switch state {
        case .receiving(let since) where armed != .request(since: since):
            armed = .request(since: since)
            return .armTimer(seconds: max(0, since + timeouts.request - now))
        case .idle:
            idleSince = now
            guard armed != .idle else { return .none }
            armed = .idle
            return .armIdleTimer(seconds: timeouts.idle)
        default:
            return .none
        }
    }

    /// A complete request, its head within the rules.
    mutating func requestReceived() -> Action {
        guard case .receiving = state else { return .none }
        state = .handling
        return .dispatch
    }

    /// The request is refused before any handler saw it.
    mutating func requestRefused(_ refusal: EarlyRefusal) -> Action {
        guard readsRequests else { return .none }
        state = .closing(writeShut: false)
        armed = nil
        return .refuse(refusal)
    }

    /// The handler answered with a complete response. Returns whether the response keeps the connection (else it
    /// says `connection: close`), and what to do once it is queued: read the next request, if it does.
    mutating func responded(requestKeepsAlive: Bool) -> (keepAlive: Bool, then: Action) {
        guard state == .handling else { return (false, .none) }
        guard requestKeepsAlive && !isDraining else {
            state = .closing(writeShut: false)
            return (false, .none)
        }
        state = .idle
        return (true, .readNext)
    }

    /// The handler began a streamed response.
    mutating func streamStarted() -> Bool {
        guard state == .handling else { return false }
        state = .streaming
        return true
    }

    /// The handler ended its streamed response.
    mutating func streamEnded() -> Action {
        guard state == .streaming else { return .none }
        state = .closing(writeShut: false)
        return .endStream
    }

    /// Everything queued has been written to the socket.
    mutating func outputDrained() -> Action {
        switch state {
        case .closing(writeShut: false):
            state = .closing(writeShut: true)
            armed = .linger
            return .shutWrite(lingerSeconds: timeouts.linger)
        case .idle, .receiving:
            // Reading stops between requests while the output is over its mark.
            return .readNext
        default:
            return .none
        }
    }

    /// The connection's timer fired.
    mutating func timerFired(now: Double) -> Action {
        let deadline = armed
        armed = nil
        switch state {
        case .idle where deadline == .idle && now < idleSince + timeouts.idle:
            armed = .idle
            return .armTimer(seconds: idleSince + timeouts.idle - now)
        case .receiving(let since) where now < since + timeouts.request:
            armed = .request(since: since)
            return .armTimer(seconds: since + timeouts.request - now)
        case .closing(writeShut: false):
            // An earlier deadline: the answer is still being written (a client that takes nothing is dropped by
            // the send timeout), and the linger time starts once it is.
            return .none
        case .idle, .closing:
            state = .closed
            return .close
        case .receiving:
            state = .closing(writeShut: false)
            return .refuse(.requestTimeout(seconds: timeouts.request))
        case .handling, .streaming, .closed:
            return .none
        }
    }

    /// The server shuts down: an idle connection closes; the request being handled is answered and is the last;
    /// a streamed response ends.
    mutating func shutdownRequested() -> Action {
        isDraining = true
        switch state {
        case .idle, .receiving:
            state = .closed
            return .close
        case .streaming:
            state = .closing(writeShut: false)
            return .endStream
        case .handling, .closing, .closed:
            return .none
        }
    }

    /// The shutdown grace is over: whatever is left closes.
    mutating func shutdownGraceEnded() -> Action {
        guard state != .closed else { return .none }
        state = .closed
        return .close
    }

    /// The socket is closed (for any reason: an action, the peer, an error, a client that left too much unread).
    mutating func closed() {
        state = .closed
    }
}
