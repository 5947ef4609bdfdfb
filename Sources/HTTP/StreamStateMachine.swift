// The life of one request stream on the server, without I/O: when the request goes to its handler, what may be
// sent, when the stream is reset. HTTPResponder feeds it inputs and carries out the actions.

/// `receiving → handling → responding | streaming → closed`. A request may be answered while it is still
/// arriving (413, 431: `responding(requestEnded: false)`); it may take too long (`timedOut`); a streamed response
/// the client stops reading is reset (`resetting`); a handler that answers after the stream closed is abandoned
/// (every input of `closed` is a no-op).
struct StreamStateMachine {
    enum State: Equatable {
        /// Headers or body still arriving, since this time (monotonic seconds).
        case receiving(since: Double)
        /// Reset for arriving too slowly; waiting for nghttp2 to close the stream.
        case timedOut
        /// Complete and with its handler; nothing answered yet.
        case handling
        /// A complete response is submitted. `requestEnded` false: before the request ended (an early refusal).
        case responding(requestEnded: Bool)
        /// The response body goes out as the handler writes it; `ending` once the handler has ended it.
        case streaming(ending: Bool)
        /// Reset by the server (its client left too much unread); waiting for nghttp2 to close the stream.
        case resetting
        case closed
    }

    enum Action: Equatable {
        case none
        /// Hands the complete request to the handler.
        case dispatch
        /// Submits the response head (and the body, or the start of a streamed one).
        case submit
        case reset(H2ErrorCode)
    }

    private(set) var state: State

    init(now: Double) {
        state = .receiving(since: now)
    }

    /// Still arriving (or timed out while it was): such a stream is no activity for its connection.
    var isArriving: Bool {
        switch state {
        case .receiving, .timedOut: true
        default: false
        }
    }

    /// When the request began arriving, while it is arriving and not yet timed out.
    var arrivingSince: Double? {
        if case .receiving(let since) = state { since } else { nil }
    }

    /// Whether an answer may still be given (nothing answered, the stream not closed).
    var canAnswer: Bool {
        switch state {
        case .receiving, .handling: true
        default: false
        }
    }

    /// Whether a streamed response may take more bytes.
    var isStreamOpen: Bool { state == .streaming(ending: false) }

    /// Whether the response, once its last byte is out, ends the stream.
    var isEnding: Bool {
        switch state {
        case .responding, .streaming(ending: true): true
        default: false
        }
    }

    // MARK: Inputs

    /// END_STREAM arrived: the request is complete.
    mutating func requestEnded() -> Action {
        switch state {
        case .receiving:
            state = .handling
            return .dispatch
        case .responding(requestEnded: false):
            state = .responding(requestEnded: true)
            return .none
        default:
            return .none
        }
    }

    /// A complete response: the handler's, or the server's own before the request ended.
    mutating func respond() -> Action {
        switch state {
        case .receiving:
            state = .responding(requestEnded: false)
            return .submit
        case .handling:
            state = .responding(requestEnded: true)
            return .submit
        default:
            return .none
        }
    }

    mutating func startStream() -> Action {
        guard state == .handling else { return .none }
        state = .streaming(ending: false)
        return .submit
    }

    /// The handler wrote to a streamed response; `overflowing` when what is unsent is past the bounds.
    mutating func wrote(overflowing: Bool) -> Action {
        guard state == .streaming(ending: false), overflowing else { return .none }
        state = .resetting
        return .reset(.cancel)
    }

    mutating func endStream() {
        guard state == .streaming(ending: false) else { return }
        state = .streaming(ending: true)
    }

    /// The request timer found the request arriving since at or before `expiredBefore`.
    mutating func requestTimerFired(expiredBefore: Double) -> Action {
        guard case .receiving(let since) = state, since <= expiredBefore else { return .none }
        state = .timedOut
        return .reset(.cancel)
    }

    /// The last DATA frame is out. An answer sent before its request ended is followed by RST_STREAM(NO_ERROR)
    /// (RFC 9113 §8.1) if the client is still sending after a grace time: true for that case.
    func lastDataSentNeedsReset() -> Bool {
        state == .responding(requestEnded: false)
    }

    /// nghttp2 closed the stream (response sent, reset either way, connection gone).
    mutating func closed() {
        state = .closed
    }
}
