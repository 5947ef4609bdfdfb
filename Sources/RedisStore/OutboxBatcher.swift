// The forwarder's outcomes (acknowledgements, retries, dead letters) gathered for `batchSeconds` and stored in one
// call. Under light load each sign-in's acknowledgement would otherwise be a turn of Redis's loop and an fsync of its
// own, a third of the sign-in's; under heavy load they share turns with commits either way.
import EventLoop
import Store

/// `@unchecked Sendable`: confined to the event loop of the outbox's client.
final class OutboxBatcher: @unchecked Sendable {
    private struct Batch {
        var changes: [OutboxChange] = []
        var completions: [(Result<Void, StoreError>) -> Void] = []
    }

    /// A batch this large goes at once: a call stays short (Redis runs nothing else meanwhile; 64 acknowledgements
    /// take it about 0.3 ms) and its arguments bounded (a dead letter carries its callback's body).
    static let limit = 64
    private let outbox: RedisOutbox
    private let batchSeconds: Double
    private var batch = Batch()
    private let loop: EventLoop
    private lazy var timer = loop.makeTimer { [unowned self] in store() }

    init(outbox: RedisOutbox, loop: EventLoop, batchSeconds: Double) {
        self.outbox = outbox
        self.loop = loop
        self.batchSeconds = batchSeconds
    }

    /// Adds `changes` to the batch; `done` runs once they are stored (or could not be).
    func add(_ changes: [OutboxChange], done: @escaping (Result<Void, StoreError>) -> Void) {
        let first = batch.changes.isEmpty
        batch.changes += changes
        batch.completions.append(done)
        if batch.changes.count >= Self.limit {
            store()
        } else if first {
            timer.schedule(after: batchSeconds)
        }
    }

    /// Stores what is gathered now; `stored` runs once it is (at once when nothing is).
    func store(then stored: @escaping () -> Void = {}) {
        timer.cancel()
        let taken = batch
        batch = Batch()
        guard !taken.changes.isEmpty else { return stored() }
        outbox.commit(taken.changes) { result in
            for completion in taken.completions { completion(result) }
            stored()
        }
    }
}
