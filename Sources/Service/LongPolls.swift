// Long polls of a challenge's status (`GET …/challenges/{id}?wait=N`): held until the challenge ends or the wait
// runs out, on a timer each, never by polling.
import Core
import EventLoop
import HTTP
import Store

/// `@unchecked Sendable`: confined to the event loop.
final class LongPolls: @unchecked Sendable {
    private struct Waiter {
        let responder: HTTPResponder
        let timer: LoopTimer
    }

    private let loop: EventLoop
    private var waiters: [String: [ObjectIdentifier: Waiter]] = [:]

    init(loop: EventLoop) { self.loop = loop }

    /// Long polls held now.
    var count: Int { waiters.values.reduce(0) { $0 + $1.count } }

    /// Holds `responder` until `end(_:)` names the challenge, or for `seconds`; then `current` gives the answer
    /// when it has it (nil: the challenge is gone, and the stream is left to its request timeout).
    private func hold(
        _ responder: HTTPResponder, for challengeID: String, seconds: Double,
        current: @escaping (_ answer: @escaping (HTTPResponse?) -> Void) -> Void
    ) {
        let key = ObjectIdentifier(responder)
        let timer = loop.schedule(after: seconds) { [unowned self] in
            guard remove(key, from: challengeID) else { return }
            current { response in
                if let response { responder.respond(response) }
            }
        }
        waiters[challengeID, default: [:]][key] = Waiter(responder: responder, timer: timer)
        responder.onClose = { [unowned self] in _ = remove(key, from: challengeID) }
    }

    /// What a long poll reads of what it waits for: the answer to give, and whether it has ended; nil when it is gone
    /// or the store could not be read.
    typealias Read = (@escaping ((response: HTTPResponse, ended: Bool)?) -> Void) -> Void

    /// Holds `responder` until the challenge or enrollment `id` ends, or for `seconds`, answering then with what
    /// `read` gives. On a shared store it may end on another instance before `fanOut`'s watch reaches the store: it is
    /// read once more when the watch is in place.
    func wait(
        _ responder: HTTPResponder, for id: String, seconds: Double, fanOut: any FanOut, read: @escaping Read
    ) {
        hold(responder, for: id, seconds: seconds) { answer in read { answer($0?.response) } }
        fanOut.watch(endOf: id, seconds: seconds) { [self] in
            read { [self] current in
                guard let current, current.ended else { return }
                end(id, with: current.response)
            }
        }
    }

    /// The challenge ended: every poll of it gets `response` now.
    func end(_ challengeID: String, with response: @autoclosure () -> HTTPResponse) {
        guard let held = waiters.removeValue(forKey: challengeID) else { return }
        let answer = response()
        for waiter in held.values {
            waiter.timer.cancel()
            waiter.responder.respond(answer)
        }
    }

    private func remove(_ key: ObjectIdentifier, from challengeID: String) -> Bool {
        guard waiters[challengeID]?.removeValue(forKey: key) != nil else { return false }
        if waiters[challengeID]?.isEmpty == true { waiters[challengeID] = nil }
        return true
    }
}
