// Rebuilding the domain from stored state at start.
import Core

extension ApprovalCore {
    /// Puts back everything `state` holds, devices before the challenges queued to them. Call `tick(now:)`
    /// afterwards: what lapsed while the broker was down expires at once.
    public func restore(_ state: StoredState) {
        for (tenantID, policy) in state.policies { restore(policy: policy, for: tenantID) }
        for device in state.devices { restore(device: device) }
        for challenge in state.challenges.sorted(by: { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }) {
            restore(challenge: challenge)
        }
        for fallback in state.fallbacks { restore(fallback: fallback) }
        for lockout in state.lockouts { restore(lockoutOf: lockout.userID, in: lockout.tenantID, until: lockout.until) }
    }
}
