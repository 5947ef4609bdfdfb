// A token bucket over an injected clock: the budget of resets a connection may make the server send.

/// `burst` tokens, refilled at `ratePerSecond` up to `burst`; each event takes one. Pure: the caller says what time
/// it is, so tests need no clock.
struct TokenBucket: Sendable {
    let burst: Double
    let ratePerSecond: Double
    private var tokens: Double
    private var updatedAt: Double

    init(burst: UInt64, ratePerSecond: UInt64, now: Double) {
        self.burst = Double(burst)
        self.ratePerSecond = Double(ratePerSecond)
        tokens = Double(burst)
        updatedAt = now
    }

    /// Takes a token at `now` (seconds on any monotonic scale); false when none is left.
    mutating func take(now: Double) -> Bool {
        if now > updatedAt {
            tokens = min(burst, tokens + (now - updatedAt) * ratePerSecond)
            updatedAt = now
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
