// What an operation changed and what must go out because of it: the Service persists the first kind in one
// commit and, once durable, delivers the second.

public enum CoreEvent: Equatable, Sendable {
    // State to persist.
    case policySaved(tenantID: String, TenantPolicy)
    case deviceSaved(Device)
    case deviceRemoved(tenantID: String, deviceID: String)
    /// Created, or its status changed.
    case challengeSaved(Challenge)
    case fallbackSaved(Fallback)
    case lockoutSaved(tenantID: String, userID: String, until: UnixMillis)
    /// The remembering window ended: the challenge (or fallback) and its `request_id` are forgotten.
    case forgotten(tenantID: String, requestID: String, challengeID: String?)

    // Deliveries.
    /// A new entry in a device's queue: send it on the device's stream, or wake the device.
    case queued(challengeID: String, deviceID: String)
    /// An entry left a device's queue: tell the device's stream.
    case unqueued(challengeID: String, deviceID: String, outcome: DeviceOutcome)
    /// The challenge ended: its result goes to the verifier (stored in the same commit as the ending).
    case ended(Challenge)
}
