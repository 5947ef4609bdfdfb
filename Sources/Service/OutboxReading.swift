// When the forwarder reads the outbox and from where, as a state machine: one read at a time, paged by a cursor
// while more is due than the window holds, and a wake-up for the next due time. The forwarder carries it out.
import Core
import Store

struct OutboxReading: Equatable {
    enum State: Equatable {
        case idle
        case reading
    }

    private(set) var state = State.idle
    /// More is due than the window held when last read (or an outcome could not be stored): read again as soon as
    /// the window has room.
    private(set) var behind = false
    /// Where the next read starts: after the last entry considered of a full page; nil: at the start of what is due.
    private(set) var cursor: OutboxCursor?
    /// When the wake-up is armed for; nil when it is not.
    private(set) var wakeAt: UnixMillis?

    /// Starts a read unless one is under way or the window is full; true: read now, from `cursor`.
    mutating func startRead(windowHasRoom: Bool) -> Bool {
        guard state == .idle, windowHasRoom else { return false }
        state = .reading
        behind = false
        return true
    }

    /// The read failed: the next starts over.
    mutating func readFailed() {
        state = .idle
        cursor = nil
    }

    /// The read found a page; `full` when it held more than the window took, or as many as asked for. Then the
    /// next read goes on after `lastConsidered` (what is in flight sorts first and would fill a page from the start
    /// again); otherwise it starts over.
    mutating func readSucceeded(full: Bool, lastConsidered: OutboxEntry?) {
        state = .idle
        if full {
            behind = true
            if let lastConsidered { cursor = OutboxCursor(after: lastConsidered) }
        } else {
            cursor = nil
        }
    }

    /// A callback enqueued here found the window full: it waits in the store.
    mutating func windowOverflowed() {
        behind = true
    }

    /// An outcome could not be stored: the callback is still in the outbox and due, and the next full pass finds it.
    mutating func outcomeNotStored() {
        behind = true
        cursor = nil
    }

    /// Whether to arm the wake-up for `time`: not when it is armed as early already.
    mutating func wake(at time: UnixMillis) -> Bool {
        if let wakeAt, wakeAt <= time { return false }
        wakeAt = time
        return true
    }

    /// The wake-up fired.
    mutating func woke() {
        wakeAt = nil
    }
}
