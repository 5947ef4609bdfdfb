// An event loop on a thread of its own, stopped and joined before its objects are released, and bounded waits
// for work done on it: shared by the in-process and the end-to-end tests.
import Dispatch
import EventLoop
import Foundation
import HTTP
import Locking

public struct TimedOut: Error, CustomStringConvertible {
    public let seconds: Double
    public var description: String { "nothing happened within \(seconds) s" }
}

/// Hands the first result given (a value from the loop, or `TimedOut`) to one waiting task. The result itself goes
/// through the mutex, not through the continuation: ThreadSanitizer then sees that everything the loop's thread
/// wrote before handing it over happened before the task reads it (it does not see the concurrency runtime's own
/// hand-over of a resumed continuation's value).
public final class OneShot<Value: Sendable>: Sendable {
    public init() {}

    private let state = Locked<(waiter: CheckedContinuation<Void, Never>?, result: Result<Value, any Error>?)>(
        (nil, nil))

    /// Waits until a result is given and returns it.
    public func wait() async throws -> Value {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let given = state.withLock { state -> Bool in
                if state.result != nil { return true }
                state.waiter = waiter
                return false
            }
            if given { waiter.resume() }
        }
        return try state.withLock { $0.result! }.get()
    }

    /// Gives the result; only the first one counts.
    public func resume(_ result: Result<Value, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }
}

/// An event loop running on a thread of its own until `stop()`.
public final class LoopThread: Sendable {
    public let loop: EventLoop
    private let finished = DispatchSemaphore(value: 0)
    private let stopped = Locked(false)

    public init() throws {
        loop = try EventLoop()
        let loop = self.loop
        let started = DispatchSemaphore(value: 0)
        let finished = self.finished
        let thread = Thread {
            loop.execute { started.signal() }
            loop.run()
            finished.signal()
        }
        thread.start()
        precondition(started.wait(timeout: .now() + 10) == .success, "the loop did not start")
    }

    /// Stops the loop and waits (bounded) for its thread to leave it, so loop-bound objects can be released.
    /// Idempotent.
    public func stop() {
        guard
            stopped.withLock({ was in
                defer { was = true }; return !was
            })
        else { return }
        loop.stop()
        _ = finished.wait(timeout: .now() + 10)
    }

    /// Runs `body` on the loop; it calls `done` (on any thread) exactly once. Fails after `timeout` seconds.
    public func wait<Value: Sendable>(
        timeout: Double = 10, _ body: @escaping @Sendable (_ done: @escaping @Sendable (Value) -> Void) -> Void
    ) async throws -> Value {
        let once = OneShot<Value>()
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
            once.resume(.failure(TimedOut(seconds: timeout)))
        }
        loop.execute { body { value in once.resume(.success(value)) } }
        return try await once.wait()
    }

    /// Runs `body` on the loop and returns its value.
    public func run<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
        let result: Result<Value, TestFailure> = try await wait { done in
            do { done(.success(try body())) } catch { done(.failure(TestFailure(description: "\(error)"))) }
        }
        return try result.get()
    }
}

/// A failure raised inside work run on the loop, carried back to the test.
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// Carries a value that is only touched on the loop across the `@Sendable` boundary.
public struct UncheckedBox<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}
