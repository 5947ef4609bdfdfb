// The Redis store's life as a state machine: its first connection prepares Redis (persistence check, functions,
// policies, gauges) once; a connection lost while preparing prepares again on the next; a Redis it must not use
// fails the opening; a stop stores what is gathered, then closes. `RedisStore` carries the actions out.

struct RedisStoreLifecycle: Equatable {
    enum State: Equatable {
        case connecting
        case preparing
        case open
        /// Redis must not be used (unsafe persistence, a newer library): the opening failed.
        case failed
        /// Storing the outcomes still gathered; nothing new is taken.
        case closing
        case closed
    }

    enum Action: Equatable {
        case none
        /// Check persistence, install the functions, read the policies and gauges.
        case prepare
        /// Messages published while the connection was away are lost: route the streams again and read them again.
        case catchUp
        /// Start the timers of an open store (refresh, routes, leases) and finish opening once every connection is
        /// ready.
        case startServing
        /// Tell the opener it failed.
        case failOpening
        /// Stop the timers and store the outcomes gathered.
        case flush
        /// Already stopping or stopped: tell the caller at once.
        case alreadyClosed
    }

    private(set) var state = State.connecting

    var isOpen: Bool { state == .open }

    /// The main connection is (again) ready.
    mutating func connectionReady() -> Action {
        switch state {
        case .connecting:
            state = .preparing
            return .prepare
        case .open: return .catchUp
        case .preparing, .failed, .closing, .closed: return .none
        }
    }

    /// Preparing stopped on a lost connection: prepare again, at once if `connected` (it is back already), else on
    /// the next `connectionReady`.
    mutating func preparingInterrupted(connected: Bool) -> Action {
        guard state == .preparing else { return .none }
        if connected { return .prepare }
        state = .connecting
        return .none
    }

    /// Redis refused something it must do (or a prepared Redis must not be used).
    mutating func refused() -> Action {
        guard state == .preparing else { return .none }
        state = .failed
        return .failOpening
    }

    /// Everything is read: the store serves.
    mutating func prepared() -> Action {
        guard state == .preparing else { return .none }
        state = .open
        return .startServing
    }

    mutating func closeRequested() -> Action {
        switch state {
        case .closing, .closed: return .alreadyClosed
        case .connecting, .preparing, .open, .failed:
            state = .closing
            return .flush
        }
    }

    mutating func flushed() {
        guard state == .closing else { return }
        state = .closed
    }
}
