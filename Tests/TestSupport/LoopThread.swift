// An event loop on a thread of its own, stopped and joined before its objects are released, and bounded waits
// for work done on it: shared by the in-process and the end-to-end tests.
import Dispatch
import Foundation
import H2
import Locking

public struct TimedOut: Error, CustomStringConvertible {
    public let seconds: Double
    public var description: String { "nothing happened within \(seconds) s" }
}

/// Resumes a continuation once: with the first value given, or with `TimedOut` after `seconds`.
public final class OneShot<Value: Sendable>: Sendable {
    public init() {}

    private let continuation = Locked<CheckedContinuation<Value, any Error>?>(nil)

    public func set(_ continuation: CheckedContinuation<Value, any Error>) {
        self.continuation.withLock { $0 = continuation }
    }

    public func resume(_ result: Result<Value, any Error>) {
        let pending = continuation.withLock { value -> CheckedContinuation<Value, any Error>? in
            defer { value = nil }
            return value
        }
        pending?.resume(with: result)
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
        return try await withCheckedThrowingContinuation { continuation in
            once.set(continuation)
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
                once.resume(.failure(TimedOut(seconds: timeout)))
            }
            loop.execute { body { value in once.resume(.success(value)) } }
        }
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
