// The broker's life as a state machine: what each event of start-up and shutdown leads to, decided without I/O;
// `Broker` carries the actions out.

struct BrokerLifecycle: Equatable {
    enum State: Equatable {
        /// Made; no listener open yet.
        case starting
        /// Listeners open (`/healthz` 200, `/readyz` and the API 503) while the store is recovered or connected.
        case recovering
        /// The API is served.
        case serving
        /// Shutting down: no new connections, in-flight requests finishing. `failing` when a part could not
        /// start, so that the process ends in failure.
        case draining(failing: Bool)
        case stopped
        case failed
    }

    enum Action: Equatable {
        case none
        /// Start the API over the store that is now open.
        case startService
        /// Stop taking connections and let those in flight finish.
        case drain
    }

    private(set) var state = State.starting

    /// Whether the process should end in failure.
    var hasFailed: Bool { state == .failed || state == .draining(failing: true) }

    /// The listeners are open and the store's recovery has begun.
    mutating func listenersOpened() {
        precondition(state == .starting, "listeners opened twice")
        state = .recovering
    }

    /// The store is open; a broker asked to stop meanwhile does not start serving.
    mutating func storeOpened() -> Action {
        guard state == .recovering else { return .none }
        return .startService
    }

    mutating func serviceStarted() {
        guard state == .recovering else { return }
        state = .serving
    }

    /// The store could not be opened or the service could not start.
    mutating func partFailed() -> Action {
        switch state {
        case .starting, .recovering, .serving:
            state = .draining(failing: true)
            return .drain
        case .draining:
            state = .draining(failing: true)
            return .none
        case .stopped, .failed:
            return .none
        }
    }

    /// A signal (or the embedder) asks for a graceful stop.
    mutating func stopRequested() -> Action {
        switch state {
        case .starting, .recovering, .serving:
            state = .draining(failing: false)
            return .drain
        case .draining, .stopped, .failed:
            return .none
        }
    }

    /// In-flight requests have finished and the store is closed: the loop may stop.
    mutating func drained() {
        guard case .draining(let failing) = state else { return }
        state = failing ? .failed : .stopped
    }
}
