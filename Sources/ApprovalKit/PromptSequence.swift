// A device's prompts as an asynchronous sequence, pulled: each `next()` reads the event stream (opening it again
// after an end or a failure, with jittered backoff), and polls the queue while the stream keeps failing. No task runs
// beside the caller's, so a caller that stops iterating leaves nothing behind.
import Protocol

public struct PromptSequence: AsyncSequence, Sendable {
    public typealias Element = PromptEvent

    let device: ApprovalDevice
    let policy: ReconnectPolicy

    public func makeAsyncIterator() -> Iterator { Iterator(device: device, policy: policy) }

    public struct Iterator: AsyncIteratorProtocol {
        private let device: ApprovalDevice
        private let policy: ReconnectPolicy
        /// Events read and not yet handed out.
        private var ready: [PromptEvent] = []
        /// The prompts handed out and not withdrawn: a stream opened again sends the pending ones first.
        private var shown = Set<String>()
        /// Failures in a row, for the backoff and the switch to polling.
        private var failures = 0
        /// The stream was lost: the backoff comes before it is opened again.
        private var reconnectDue = false
        private var stream: AsyncThrowingStream<StreamPart, any Error>.AsyncIterator?
        private let parsed = ParsedEvents()
        /// The start of the body, which holds the problem when the broker refuses the stream.
        private var body: [UInt8] = []

        init(device: ApprovalDevice, policy: ReconnectPolicy) {
            self.device = device
            self.policy = policy
        }

        /// The next event; nil once the task is cancelled; throws when the broker refuses the device.
        public mutating func next() async throws -> PromptEvent? {
            while !Task.isCancelled {
                if !ready.isEmpty { return ready.removeFirst() }
                if reconnectDue {
                    reconnectDue = false
                    await pause()
                    continue
                }
                do {
                    if stream == nil {
                        stream = try device.eventStream().makeAsyncIterator()
                        parsed.reset()
                        body = []
                    }
                    switch try await stream?.next() {
                    case .bytes(let bytes)?:
                        failures = 0
                        if body.count < 4096 { body += bytes.prefix(4096 - body.count) }
                        for event in parsed.feed(bytes) { keep(event) }
                    case .ended(let status)?:
                        if [401, 403, 404].contains(status) {
                            stream = nil
                            throw ApprovalError.refusal(TransportResponse(status: status, body: body))
                        }
                        if status != 200 { failures += 1 }
                        lost("the broker ended the stream (\(status))")
                    case nil:
                        failures += 1
                        lost("the stream ended")
                    }
                } catch let refusal as ApprovalError where refusal.code != nil {
                    throw refusal
                } catch {
                    failures += 1
                    lost("\(error)")
                }
            }
            return nil
        }

        /// The stream is gone: the caller hears of it before the backoff.
        private mutating func lost(_ reason: String) {
            stream = nil
            reconnectDue = true
            ready.append(.disconnected(reason: reason))
        }

        /// Queues an event unless it repeats what was handed out (a prompt) or concerns nothing handed out (an end).
        private mutating func keep(_ event: PromptEvent) {
            switch event {
            case .prompt(let prompt):
                guard shown.insert(prompt.challengeID).inserted else { return }
            case .withdrawn(let challengeID, _):
                guard shown.remove(challengeID) != nil else { return }
            case .disconnected: break
            }
            ready.append(event)
        }

        /// Between two streams: the queue polled once the stream has failed often enough, then the backoff.
        private mutating func pause() async {
            if failures >= policy.pollAfterFailures, let queue = try? await device.pendingPrompts() {
                for prompt in queue { keep(.prompt(prompt)) }
            }
            let delay = policy.delay(afterFailures: Swift.max(failures, 1), random: Double.random(in: 0...1))
            try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
        }
    }
}

/// The event-stream reader, and the events it has put together from the bytes fed so far.
///
/// `@unchecked Sendable`: used by one iterator at a time, as iterators are.
final class ParsedEvents: @unchecked Sendable {
    private final class Found {
        var events: [PromptEvent] = []
    }

    private let found = Found()
    private var parser: EventStreamParser

    init() { parser = Self.parser(into: found) }

    /// A new stream: nothing half-read carries over.
    func reset() {
        parser = Self.parser(into: found)
        found.events.removeAll()
    }

    func feed(_ bytes: [UInt8]) -> [PromptEvent] {
        bytes.withUnsafeBufferPointer { parser.feed($0) }
        defer { found.events.removeAll() }
        return found.events
    }

    private static func parser(into found: Found) -> EventStreamParser {
        EventStreamParser { event in
            switch event {
            case .challenge(let view): if let prompt = Prompt(view: view) { found.events.append(.prompt(prompt)) }
            case .resolved(let challengeID, let outcome):
                found.events.append(.withdrawn(challengeID: challengeID, outcome: outcome))
            }
        }
    }
}
