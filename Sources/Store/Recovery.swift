// Rebuilding the domain from stored state at start.
import Core

extension DurableStore {
    /// Everything the store holds, gathered in memory (for small stores and for tests).
    public func load() throws(StoreError) -> StoredState {
        var state = StoredState()
        try load { state.add($0) }
        return state
    }
}

extension ApprovalCore {
    /// Puts back one record; `DurableStore.load` hands them over in the order this needs (devices before the
    /// challenges queued to them, pending challenges oldest first). Call `tick(now:)` after the last: what lapsed
    /// while the broker was down expires at once.
    public func restore(_ record: StoredRecord) {
        switch record {
        case .sizes(let devices, let challenges, let fallbacks, _):
            reserveCapacity(devices: devices, challenges: challenges, fallbacks: fallbacks)
        case .policy(let tenantID, let policy): restore(policy: policy, for: tenantID)
        case .device(let device): restore(device: device)
        case .challenge(let challenge): restore(challenge: challenge)
        case .fallback(let fallback): restore(fallback: fallback)
        case .lockout(let tenantID, let userID, let until): restore(lockoutOf: userID, in: tenantID, until: until)
        }
    }

    /// Puts back what `state` holds, in the same order as `restore(_: StoredRecord)` needs.
    public func restore(_ state: StoredState) {
        for (tenantID, policy) in state.policies { restore(policy: policy, for: tenantID) }
        for device in state.devices { restore(device: device) }
        for challenge in state.challenges { restore(challenge: challenge) }
        for fallback in state.fallbacks { restore(fallback: fallback) }
        for lockout in state.lockouts { restore(lockoutOf: lockout.userID, in: lockout.tenantID, until: lockout.until) }
    }
}
