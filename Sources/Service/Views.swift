// The JSON documents of API.md, written from domain values.
import Core
import JSONText
import Store

enum Views {
    /// What the IdP sees of a challenge.
    static func challenge(_ challenge: Challenge) -> String {
        var json = JSONWriter()
        json.string("challenge_id", challenge.id)
        json.string("request_id", challenge.request.requestID)
        json.string("status", challenge.status.rawValue)
        json.string("reason", challenge.resolution?.reason?.rawValue)
        json.integer("number", Int64(challenge.request.number))
        json.strings("devices", challenge.devices)
        json.string("device_id", challenge.resolution?.device)
        json.time("created_at", challenge.createdAt)
        json.time("expires_at", challenge.expiresAt)
        json.time("resolved_at", challenge.resolution?.at)
        return json.finished()
    }

    /// What a device sees: never the correct number, only the choices.
    static func deviceChallenge(_ challenge: Challenge) -> String {
        var json = JSONWriter()
        json.string("challenge_id", challenge.id)
        json.string("tenant_id", challenge.tenantID)
        json.string("request_id", challenge.request.requestID)
        json.string("user_id", challenge.request.userID)
        json.integers("choices", challenge.choices)
        json.raw("context", challenge.request.context.json)
        json.time("created_at", challenge.createdAt)
        json.time("expires_at", challenge.expiresAt)
        return json.finished()
    }

    static func fallback(_ fallback: Fallback) -> String {
        var json = JSONWriter()
        json.string("request_id", fallback.request.requestID)
        json.string("status", "password_fallback")
        json.string("reason", fallback.reason.rawValue)
        return json.finished()
    }

    static func device(_ device: Device) -> String {
        var json = JSONWriter()
        json.string("device_id", device.id)
        json.string("user_id", device.userID)
        json.string("display_name", device.displayName)
        json.object("push") { $0.string("provider", device.push.provider.rawValue) }
        json.time("created_at", device.createdAt)
        json.time("last_seen_at", device.lastSeenAt)
        return json.finished()
    }

    /// An enrollment as the IdP sees it; at its creation, with its activation code, URI and QR code, which no later
    /// read gives back.
    static func enrollment(_ enrollment: Enrollment, activation: Activation? = nil) -> String {
        var json = JSONWriter()
        json.string("enrollment_id", enrollment.id)
        json.string("status", enrollment.status.rawValue)
        json.string("user_id", enrollment.request.userID)
        json.string("device_id", enrollment.deviceID)
        json.string("display_name", enrollment.request.displayName)
        if let activation {
            json.string("activation_code", activation.code)
            json.string("activation_uri", activation.uri)
            json.string("activation_qr_svg", activation.qrSVG)
        }
        json.time("created_at", enrollment.createdAt)
        json.time("expires_at", enrollment.expiresAt)
        json.time("completed_at", enrollment.deviceID == nil ? nil : enrollment.end?.at)
        return json.finished()
    }

    struct Activation {
        let code: String
        let uri: String
        let qrSVG: String
    }

    /// What a phone learns once it has enrolled.
    static func enrolled(_ device: Device) -> String {
        var json = JSONWriter()
        json.string("device_id", device.id)
        json.string("tenant_id", device.tenantID)
        json.string("user_id", device.userID)
        json.string("display_name", device.displayName)
        return json.finished()
    }

    /// A user's devices.
    static func devices(_ devices: [Device]) -> String {
        JSONWriter.object { $0.rawArray("devices", devices.map(Self.device)) }
    }

    /// What is queued for a device, oldest first.
    static func deviceQueue(_ queue: [Challenge]) -> String {
        JSONWriter.object { $0.rawArray("challenges", queue.map(Self.deviceChallenge)) }
    }

    static func deadLetters(_ letters: [DeadLetter]) -> String {
        JSONWriter.object { $0.rawArray("dead_letters", letters.map(Self.deadLetter)) }
    }

    static func policy(_ policy: TenantPolicy) -> String {
        var json = JSONWriter()
        json.bool("passwordless", policy.passwordless)
        json.string("target", policy.target.rawValue)
        json.strings("users", policy.users.sorted())
        json.integer("max_devices_per_user", Int64(policy.maxDevicesPerUser))
        json.integer("challenge_ttl_seconds", Int64(policy.challengeTTLSeconds))
        json.integer("choices", Int64(policy.choices))
        json.integer("max_pending_per_user", Int64(policy.maxPendingPerUser))
        json.integer("max_challenges_per_window", Int64(policy.maxChallengesPerWindow))
        json.integer("window_seconds", Int64(policy.windowSeconds))
        json.integer("lockout_seconds", Int64(policy.lockoutSeconds))
        return json.finished()
    }

    static func resolved(_ challengeID: String, _ outcome: DeviceOutcome) -> String {
        var json = JSONWriter()
        json.string("challenge_id", challengeID)
        json.string("outcome", outcome.rawValue)
        return json.finished()
    }

    /// The verifier callback of an ended challenge (API.md, "Callbacks").
    static func callback(_ challenge: Challenge) -> String {
        var json = JSONWriter()
        json.string("type", "challenge.resolved")
        json.string("tenant_id", challenge.tenantID)
        json.string("request_id", challenge.request.requestID)
        json.string("challenge_id", challenge.id)
        json.string("user_id", challenge.request.userID)
        json.string("outcome", challenge.status.rawValue)
        json.string("reason", challenge.resolution?.reason?.rawValue)
        json.string("device_id", challenge.resolution?.device)
        json.time("resolved_at", challenge.resolution?.at)
        if let decision = challenge.resolution?.decision {
            var made = JSONWriter()
            switch decision.kind {
            case .approve(let number):
                made.string("decision", "approve")
                made.integer("selected_number", Int64(number))
                made.string("reason", nil)
            case .deny(let reason):
                made.string("decision", "deny")
                made.integer("selected_number", nil)
                made.string("reason", reason.rawValue)
            }
            made.integer("signed_at_unix", decision.signedAtUnix)
            made.string("signature", decision.signature)
            json.raw("decision", made.finished())
        } else {
            json.raw("decision", "null")
        }
        return json.finished()
    }

    static func deadLetter(_ letter: DeadLetter) -> String {
        var json = JSONWriter()
        json.string("challenge_id", letter.entry.challengeID)
        json.integer("status", Int64(letter.status))
        json.string("detail", letter.detail)
        json.integer("attempts", Int64(letter.entry.attempts))
        json.time("ended_at", letter.entry.endedAt)
        json.time("dead_at", letter.deadAt)
        json.raw("callback", letter.entry.body)
        return json.finished()
    }

    static func answer(_ challenge: Challenge) -> String {
        var json = JSONWriter()
        json.string("challenge_id", challenge.id)
        json.string("status", challenge.status.rawValue)
        json.string("reason", challenge.resolution?.reason?.rawValue)
        return json.finished()
    }
}
