// A user's whole state survives the Redis value's bytes: every part, as the rules made it; damaged bytes are an
// error that names the user, never a crash or a wrong state.
import Core
import Store
import TestSupport
import Testing

@testable import RedisStore

@Suite struct UserStateCodecTests {
    static let start: UnixMillis = 1_795_600_000_000

    /// A user who has been through most of what the rules do: two devices (one with a push token, one seen), a
    /// pending challenge with context and a TTL, one approved, one denied as not-me (a lockout), one cancelled,
    /// fallbacks, creations in the rate window; the pending and the approved ones have the create's traceparent.
    static func eventfulState(traceparent: String? = traceparent) throws -> UserState {
        let driver = RulesDriver(random: SeededRandom(seed: 5))
        let tenant = "contoso"
        var policy = TenantPolicy()
        policy.maxPendingPerUser = 3
        _ = try driver.setPolicy(policy, for: tenant)
        _ = try driver.registerDevice(
            "phone-1", in: tenant,
            DeviceRegistration(
                userID: "alice", publicKey: Array(1...65), push: PushTarget(provider: .apns, token: "ab12", topic: "t"),
                displayName: "Alice's phone ✓"),
            now: start)
        _ = try driver.registerDevice(
            "tablet-2", in: tenant, DeviceRegistration(userID: "alice", publicKey: [7, 8]), now: start + 1)
        _ = driver.noteSeen("tablet-2", now: start + 2)
        func create(
            _ id: String, _ at: UnixMillis, context: ChallengeContext = [:], traceparent: String? = nil
        ) throws -> Challenge {
            let (outcome, _) = try driver.createChallenge(
                ChallengeRequest(requestID: id, userID: "alice", number: 42, ttlSeconds: 60, context: context),
                in: tenant, traceparent: traceparent, now: at)
            guard case .created(let challenge) = outcome else { throw StoreError("\(id) was not created") }
            return challenge
        }
        let approved = try create("r-approved", start + 10, traceparent: traceparent)
        _ = try driver.answer(
            approved.id, from: "phone-1",
            Decision(kind: .approve(selectedNumber: 42), signedAtUnix: start / 1000, signature: "sig-1"),
            now: start + 11)
        let cancelled = try create("r-cancelled", start + 20)
        _ = try driver.cancel(cancelled.id, in: tenant, now: start + 21)
        _ = try create(
            "r-pending", start + 30, context: ["app": "Outlook", "ip": "203.0.113.7"], traceparent: traceparent)
        let denied = try create("r-denied", start + 40)
        _ = try driver.answer(
            denied.id, from: "tablet-2",
            Decision(kind: .deny(reason: .notMe), signedAtUnix: start / 1000 + 40, signature: "sig-2"),
            now: start + 41)
        // Locked out now: the next create falls back, and is remembered.
        _ = try driver.createChallenge(
            ChallengeRequest(requestID: "r-locked", userID: "alice", number: 7), in: tenant, now: start + 50)
        let state = driver.state(UserKey(tenantID: tenant, userID: "alice"))
        #expect(state.devices.count == 2 && state.pending.count == 1 && state.ended.count == 3)
        #expect(state.fallbacks.count == 1 && state.lockedUntil != nil && state.recentCreations.count == 4)
        return state
    }

    static let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    /// `state` as Redis keeps it: its ended challenges without their decisions' signatures and their traceparents.
    static func stored(_ state: UserState) -> UserState {
        let ended = state.ended.map { ended -> Challenge in
            let challenge = ended.challenge
            let resolution = challenge.resolution.map { resolution in
                Resolution(
                    status: resolution.status, reason: resolution.reason, device: resolution.device,
                    decision: resolution.decision.map {
                        Decision(kind: $0.kind, signedAtUnix: $0.signedAtUnix, signature: "")
                    }, at: resolution.at)
            }
            return Challenge(
                id: challenge.id, tenantID: challenge.tenantID, request: challenge.request, choices: challenge.choices,
                devices: challenge.devices, createdAt: challenge.createdAt, expiresAt: challenge.expiresAt,
                resolution: resolution)
        }
        return UserState(
            key: state.key, version: state.version, devices: Array(state.devices), pending: Array(state.pending),
            ended: ended, fallbacks: state.fallbacks, queue: Array(state.queue),
            recentCreations: Array(state.recentCreations), lockedUntil: state.lockedUntil)
    }

    @Test func everyPartComesBackAsItWasExceptWhatAnEndedChallengeSentWithItsCallback() throws {
        let state = try Self.eventfulState()
        let bytes = UserStateCodec.encode(state)
        let decoded = try UserStateCodec.decode(bytes[...], key: state.key, version: state.version)
        #expect(decoded == Self.stored(state))
        #expect(decoded.devices.map(\.displayName) == ["Alice's phone ✓", ""])
        #expect(decoded.pending.map(\.traceparent) == [Self.traceparent])
        #expect(decoded.ended.map(\.challenge.status) == [.approved, .cancelled, .denied])
        #expect(decoded.ended.map(\.challenge.traceparent) == [nil, nil, nil])
        #expect(decoded.ended.compactMap(\.challenge.resolution?.decision?.signature) == ["", ""])
        #expect(
            decoded.ended.compactMap(\.challenge.resolution?.decision?.kind) == [
                .approve(selectedNumber: 42), .deny(reason: .notMe),
            ])
        // What the rules read of an ended challenge still decides as it did: the same answer again is a retry.
        let retry = try Rules.answer(
            decoded.ended[0].challenge.id, from: "phone-1",
            Decision(kind: .approve(selectedNumber: 42), signedAtUnix: Self.start / 1000 + 5, signature: "sig-3"),
            policy: TenantPolicy(), user: decoded, now: Self.start + 60)
        guard case .replayed(let replayed) = retry.outcome else {
            Issue.record("a retry of the same answer was \(retry.outcome)")
            return
        }
        #expect(replayed.status == .approved && replayed.resolution?.device == "phone-1")
        // Compact: no field names, varints.
        #expect(bytes.count < 1_000)
        let empty = UserState(key: UserKey(tenantID: "t", userID: "u"))
        #expect(try UserStateCodec.decode(UserStateCodec.encode(empty)[...], key: empty.key, version: 0) == empty)
    }

    /// A state with no traceparent is written as the release before wrote it (format 1), so that its instances
    /// still read it during an upgrade; one with a traceparent is format 2. Ended challenges no longer have one.
    @Test func theFormatIsTheOriginalOneUnlessAChallengeHasATraceparent() throws {
        #expect(UserStateCodec.encode(try Self.eventfulState()).first == 2)
        let untraced = try Self.eventfulState(traceparent: nil)
        let bytes = UserStateCodec.encode(untraced)
        #expect(bytes.first == 1)
        #expect(
            try UserStateCodec.decode(bytes[...], key: untraced.key, version: untraced.version)
                == Self.stored(untraced))
    }

    @Test func damagedBytesAreAnErrorNamingTheUser() throws {
        let state = try Self.eventfulState()
        let bytes = UserStateCodec.encode(state)
        // Every truncation is refused (none decodes to a shorter, wrong state).
        for length in 0..<bytes.count {
            #expect(throws: StoreError.self) {
                try UserStateCodec.decode(bytes[..<length], key: state.key, version: 1)
            }
        }
        #expect {
            try UserStateCodec.decode((bytes + [0])[...], key: state.key, version: 1)
        } throws: { error in "\(error)".contains("contoso/alice") && "\(error)".contains("bytes after the end") }
        var unknown = bytes
        unknown[0] = 99
        #expect {
            try UserStateCodec.decode(unknown[...], key: state.key, version: 1)
        } throws: { error in "\(error)".contains("an unknown format") }
        // Random damage: an error or some state, never a crash.
        var random = SeededRandom(seed: 9)
        for _ in 0..<2_000 {
            var damaged = bytes
            for _ in 0..<3 {
                damaged[Int.random(in: 0..<damaged.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            _ = try? UserStateCodec.decode(damaged[...], key: state.key, version: 1)
        }
    }
}

@Suite struct PolicyCodecTests {
    /// Every limit at either end of its range comes back (a lockout of 30 days is more than any count of bytes).
    @Test(arguments: [false, true])
    func aPolicyAtTheEndsOfItsRangesComesBack(atMaximum: Bool) throws {
        var policy = TenantPolicy()
        policy.passwordless = !atMaximum
        policy.target = atMaximum ? .selected : .all
        policy.users = atMaximum ? ["alice@contoso.com", "bob@contoso.com"] : []
        policy.maxDevicesPerUser = atMaximum ? 100 : 1
        policy.challengeTTLSeconds = atMaximum ? 600 : 10
        policy.choices = atMaximum ? 10 : 2
        policy.maxPendingPerUser = atMaximum ? 100 : 1
        policy.maxChallengesPerWindow = atMaximum ? 100_000 : 1
        policy.windowSeconds = atMaximum ? 86_400 : 1
        policy.lockoutSeconds = atMaximum ? 2_592_000 : 0
        try policy.validate()
        #expect(try PolicyCodec.decode(PolicyCodec.encode(policy)[...], tenantID: "contoso") == policy)
    }
}
