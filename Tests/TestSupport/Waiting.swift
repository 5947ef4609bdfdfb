// Bounded polling for conditions that settle asynchronously.
import Foundation

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass; returns whether it held. It blocks its
/// thread: for tests that wait on processes and sockets, never from async code (whose few threads it would hold).
@available(*, noasync, message: "use the async eventually")
public func eventuallyBlocking(timeout: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass, without blocking a thread; returns
/// whether it held.
public func eventually(timeout: Double = 10, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(nanoseconds: 20_000_000)
    }
    return try await condition()
}

/// Runs blocking work (a child process, a sleep) on a thread of its own, so that it never holds one of the few
/// threads the tests' tasks share: two blocked tests on a 2-core machine would stall every other test.
public func offThePool<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
