// When to look for due users on a shared store: at the expiries this instance committed, until they pass, and every
// refresh for what it cannot know (other instances' deadlines, ends of remembering).
import Core
import HeapModule

struct DeadlineWatch {
    /// No challenge lives longer: a committed deadline further away is an end of remembering, which can wait for
    /// the next look, and is not kept for a quarter of an hour.
    static let horizon = UnixMillis(ChallengeRequest.ttlSecondsRange.upperBound) * 1000
    private let refreshMillis: UnixMillis
    private var local = Heap<UnixMillis>()
    private var nextLook: UnixMillis

    init(refreshSeconds: Double, now: UnixMillis) {
        refreshMillis = UnixMillis(refreshSeconds * 1000)
        nextLook = now
    }

    /// A commit here set a state's next deadline to `deadline`.
    mutating func committed(deadline: UnixMillis?, now: UnixMillis) {
        guard let deadline, deadline <= now + Self.horizon else { return }
        local.insert(deadline)
    }

    /// Due users were looked for at `now`: what has passed is done, and the next look is a refresh away.
    mutating func looked(at now: UnixMillis) {
        while let earliest = local.min, earliest <= now { local.removeMin() }
        nextLook = now + refreshMillis
    }

    /// When to look again.
    var next: UnixMillis { min(local.min ?? nextLook, nextLook) }
}
