// One libevent event_base on one thread: everything of a connection or a timer happens on it, lock-free.
import CLibevent
import Foundation
import Locking

public struct EventLoopError: Error, CustomStringConvertible {
    public let description: String
    package init(_ description: String) { self.description = description }
}

/// The loop that owns connections, timers and (in the Service) all domain state.
///
/// `@unchecked Sendable`: `execute(_:)` and `stop()` may be called from any thread; everything else only on the
/// loop's thread, which debug builds check with `assertInLoop()`.
public final class EventLoop: @unchecked Sendable {
    /// The libevent base, for the HTTP module's own C calls.
    package let base: OpaquePointer
    /// The libevent base, for C libraries that attach their own events to this loop (hiredis's adapter).
    public var libeventBase: UnsafeMutableRawPointer { UnsafeMutableRawPointer(base) }
    private var wakeEvent: OpaquePointer?
    private let pending = Locked<[@Sendable () -> Void]>([])
    private let threadID = Locked<pthread_t?>(nil)
    private var commonTimeouts: [Int: UnsafePointer<timeval>] = [:]
    /// The asynchronous DNS resolver, made on first use (see `dnsBase`).
    private var resolver: OpaquePointer?

    private static let threadingEnabled: Bool = evthread_use_pthreads() == 0

    public init() throws {
        guard EventLoop.threadingEnabled else { throw EventLoopError("evthread_use_pthreads failed") }
        guard let base = event_base_new() else { throw EventLoopError("event_base_new failed") }
        self.base = base
        wakeEvent = event_new(
            base, -1, Int16(EV_PERSIST),
            { _, _, context in
                guard let context else { return }
                Unmanaged<EventLoop>.fromOpaque(context).takeUnretainedValue().runPending()
            }, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        if let resolver { evdns_base_free(resolver, 0) }
        if let wakeEvent { event_free(wakeEvent) }
        event_base_free(base)
    }

    /// Runs the loop on the calling thread until `stop()`, even while it has nothing to wait for.
    public func run() {
        threadID.withLock { $0 = pthread_self() }
        event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY)
        threadID.withLock { $0 = nil }
    }

    /// Makes `run()` return after the current callback. Thread-safe.
    public func stop() {
        execute { [self] in event_base_loopbreak(self.base) }
    }

    /// Whether the calling thread is the one running the loop (true before the loop starts, for set-up).
    public var inLoop: Bool {
        threadID.withLock { owner in owner.map { pthread_equal($0, pthread_self()) != 0 } ?? true }
    }

    /// Whether the loop is running on the calling thread (false before it starts, unlike `inLoop`).
    public var isRunningHere: Bool {
        threadID.withLock { owner in owner.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    /// Debug-build check that loop-bound state is touched on the loop's thread.
    @inlinable public func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(inLoop, "called off the event loop thread", file: file, line: line)
    }

    /// Runs `work` on the loop's thread, soon. Thread-safe; the way other threads hand results back.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        let wasEmpty = pending.withLock { queue in
            queue.append(work)
            return queue.count == 1
        }
        if wasEmpty { event_active(wakeEvent, EV_READ, 0) }
    }

    private func runPending() {
        let work = pending.withLock { queue in
            let taken = queue
            queue.removeAll(keepingCapacity: true)
            return taken
        }
        for item in work { item() }
    }

    /// The loop's asynchronous resolver (nameservers and /etc/hosts), made on first use.
    package var dnsBase: OpaquePointer? {
        if let resolver { return resolver }
        let made = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS) ?? evdns_base_new(base, 0)
        resolver = made
        return made
    }

    /// A timeval that libevent files in a queue rather than its heap: O(1) add and delete for timers that all
    /// share the same duration, such as every connection's idle timeout.
    package func commonTimeout(seconds: Double) -> UnsafePointer<timeval> {
        let key = Int(seconds * 1_000_000)
        if let known = commonTimeouts[key] { return known }
        var duration = timeval(seconds: seconds)
        let shared = event_base_init_common_timeout(base, &duration)!
        commonTimeouts[key] = shared
        return shared
    }

    /// A one-shot timer; `LoopTimer.schedule(after:)` arms it, again and again if wanted.
    public func makeTimer(_ fire: @escaping () -> Void) -> LoopTimer {
        LoopTimer(loop: self, fire: fire)
    }

    /// Runs `body` once after `seconds`. Keep the returned timer to cancel it; dropping it cancels it too.
    public func schedule(after seconds: Double, _ body: @escaping () -> Void) -> LoopTimer {
        let timer = LoopTimer(loop: self, fire: body)
        timer.schedule(after: seconds)
        return timer
    }
}

/// Carries a loop-confined value through a `@Sendable` closure to the loop that will own it: the sender gives it
/// up, and only the loop touches it afterwards.
public struct LoopBound<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}

extension timeval {
    package init(seconds: Double) {
        let whole = seconds.rounded(.down)
        self.init(tv_sec: Int(whole), tv_usec: Int(((seconds - whole) * 1_000_000).rounded()))
    }
}

/// A timer on the loop. Its event lives as long as the object: dropping the timer cancels it.
///
/// `@unchecked Sendable`: loop-bound, like everything it touches.
public final class LoopTimer: @unchecked Sendable {
    private let loop: EventLoop
    private var event: OpaquePointer?
    private let fire: () -> Void

    init(loop: EventLoop, fire: @escaping () -> Void) {
        self.loop = loop
        self.fire = fire
        event = approvald_evtimer_new(
            loop.base,
            { _, _, context in
                guard let context else { return }
                Unmanaged<LoopTimer>.fromOpaque(context).takeUnretainedValue().fire()
            }, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { if let event { event_free(event) } }

    /// Arms the timer `seconds` from now, replacing any earlier arming.
    public func schedule(after seconds: Double) {
        loop.assertInLoop()
        var duration = timeval(seconds: max(0, seconds))
        event_add(event, &duration)
    }

    /// Arms the timer with a duration that many timers share (see `EventLoop.commonTimeout`).
    package func scheduleShared(after seconds: Double) {
        event_add(event, loop.commonTimeout(seconds: seconds))
    }

    /// Disarms the timer; a no-op when it is not armed.
    public func cancel() {
        event_del(event)
    }

}

extension EventLoop {
    /// Calls `handler` on the loop each time the process receives `signal`, until the watcher is dropped.
    public func watchSignal(_ signal: Int32, _ handler: @escaping () -> Void) -> SignalWatcher {
        SignalWatcher(loop: self, signal: signal, handler: handler)
    }

    /// Calls `handler` with the signal at each SIGTERM or SIGINT. A parent may hand down a mask that blocks them
    /// (some supervisors, Foundation's Process): they are unblocked first.
    public func watchTermination(_ handler: @escaping (Int32) -> Void) -> [SignalWatcher] {
        var handled = sigset_t()
        sigemptyset(&handled)
        for signal in [SIGTERM, SIGINT] { sigaddset(&handled, signal) }
        pthread_sigmask(SIG_UNBLOCK, &handled, nil)
        return [SIGTERM, SIGINT].map { signal in watchSignal(signal) { handler(signal) } }
    }
}

/// A signal delivered as a loop event (libevent's self-pipe), so handlers may touch loop state.
public final class SignalWatcher: @unchecked Sendable {
    private var event: OpaquePointer?
    private let handler: () -> Void

    init(loop: EventLoop, signal: Int32, handler: @escaping () -> Void) {
        self.handler = handler
        event = approvald_evsignal_new(
            loop.base, signal,
            { _, _, context in
                guard let context else { return }
                Unmanaged<SignalWatcher>.fromOpaque(context).takeUnretainedValue().handler()
            }, Unmanaged.passUnretained(self).toOpaque())
        event_add(event, nil)
    }

    deinit { if let event { event_free(event) } }
}

/// Seconds on the monotonic clock, to the nanosecond (a vDSO call, no system call either, but dearer than the coarse
/// clock): for durations that are reported.
public func preciseMonotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Seconds on the monotonic clock, at the coarse resolution (a few milliseconds) that costs no system call.
public func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Async code may run on the loop's thread (`Task(executorPreference: loop)`): tasks that drive the loop's clients
/// (a load tool's phones) then take no thread hop between a response and the code that awaits it.
extension EventLoop: TaskExecutor {
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        execute { [self] in job.runSynchronously(on: asUnownedTaskExecutor()) }
    }
}
