// An HTTP/2 client connection's life as a state machine: connecting (DNS, TCP, TLS) → ready (takes requests) →
// draining (GOAWAY, or out of stream ids: finishes its streams, takes no new ones) → closed, which any state may
// reach. ClientConnection carries it out.

struct ClientConnectionStateMachine: Equatable {
    enum State: Equatable {
        case connecting
        case ready
        case draining
        /// `connected`: whether it had connected, which tells a lost connection from a failed connect.
        case closed(connected: Bool)
    }

    private(set) var state = State.connecting

    /// Connected, whether or not it still takes new requests.
    var isConnected: Bool { state == .ready || state == .draining }

    var isDraining: Bool { state == .draining }

    /// The session is up; false when the connection closed meanwhile.
    mutating func connected() -> Bool {
        guard state == .connecting else { return false }
        state = .ready
        return true
    }

    /// No new requests from now on; true the first time, when the client must be told.
    mutating func drain() -> Bool {
        guard state == .ready else { return false }
        state = .draining
        return true
    }

    /// Closed; returns whether it had connected.
    mutating func closed() -> Bool {
        switch state {
        case .connecting: state = .closed(connected: false)
        case .ready, .draining: state = .closed(connected: true)
        case .closed: break
        }
        return state == .closed(connected: true)
    }
}
