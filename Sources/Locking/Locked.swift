// A value shared between threads behind a pthread mutex.
import Glibc

/// A value that threads take turns with: each `withLock` holds a pthread mutex.
///
/// Not Synchronization's `Mutex`: that one locks with atomics and futexes inside the uninstrumented standard
/// library, where ThreadSanitizer sees no ordering, so `make sanitize` would report every access it guards as a
/// race. pthread mutexes are what ThreadSanitizer understands.
///
/// `@unchecked Sendable`: every access to the value holds the mutex.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
