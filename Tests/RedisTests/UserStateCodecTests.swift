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

    /// An ended challenge as its record keeps it: without its decision's signature and its traceparent.
    static func recorded(_ challenge: Challenge) -> Challenge {
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
            resolution: resolution, channel: challenge.channel)
    }

    /// `state` with `ended` in place of its ended challenges.
    static func with(_ state: UserState, ended: [Challenge]) -> UserState {
        UserState(
            key: state.key, version: state.version, devices: Array(state.devices), pending: Array(state.pending),
            ended: ended, fallbacks: state.fallbacks, queue: Array(state.queue),
            recentCreations: Array(state.recentCreations), lockedUntil: state.lockedUntil)
    }

    @Test func everyPartButTheEndedChallengesComesBackAsItWas() throws {
        let state = try Self.eventfulState()
        let bytes = UserStateCodec.encode(state)
        #expect(bytes.first == 3)
        let decoded = try UserStateCodec.decode(bytes[...], key: state.key, version: state.version)
        #expect(decoded == Self.with(state, ended: []))
        #expect(decoded.devices.map(\.displayName) == ["Alice's phone ✓", ""])
        #expect(decoded.pending.map(\.traceparent) == [Self.traceparent])
        // Without the pending challenge, the due set holds the end of the fallback's window: the ended challenges'
        // windows end by themselves.
        let settled = UserState(
            key: state.key, version: state.version, devices: Array(state.devices), pending: [],
            ended: state.ended.map(\.challenge), fallbacks: state.fallbacks, queue: [],
            recentCreations: Array(state.recentCreations), lockedUntil: state.lockedUntil)
        let fallbackWindow = try #require(state.fallbacks.first).decidedAt + Rules.rememberMillis
        #expect(settled.nextDeadline != fallbackWindow)
        let settledBytes = UserStateCodec.encode(settled)
        #expect(
            try UserStateCodec.decode(settledBytes[...], key: state.key, version: 1).indexedDeadline == fallbackWindow)
        // Compact: no field names, varints.
        #expect(bytes.count < 500)
        let empty = UserState(key: UserKey(tenantID: "t", userID: "u"))
        #expect(
            try UserStateCodec.decode(UserStateCodec.encode(empty)[...], key: empty.key, version: 0)
                == empty)
    }

    /// An enrollment of `eventfulState()`'s user, pending or completed.
    static func enrollment(ended: Bool) throws -> Enrollment {
        var random = SeededRandom(seed: 3)
        let state = try eventfulState()
        let made = try Rules.enroll(
            EnrollmentRequest(
                userID: "alice", displayName: "Alice's other phone ✓", mamRestricted: false, ttlSeconds: 900),
            codeHash: Array(repeating: 0xab, count: 32), policy: TenantPolicy(), user: state, now: start + 100,
            random: &random)
        guard ended else { return made.outcome }
        let completed = try Rules.complete(
            EnrollmentCompletion(codeHash: Array(repeating: 0xab, count: 32), publicKey: [0x30, 9]),
            as: "dev_x", policy: TenantPolicy(), keyHeldBy: nil, user: made.state, now: start + 200)
        guard case .completed(let enrollment, _) = completed.outcome else { throw StoreError("not completed") }
        return enrollment
    }

    /// Format 4 only for a state with enrollments, which come back with every part as they were.
    @Test func aStateWithEnrollmentsIsWrittenInFormat4() throws {
        let plain = try Self.eventfulState()
        #expect(UserStateCodec.encode(plain).first == 3)
        let pending = try Self.enrollment(ended: false)
        let ended = try Self.enrollment(ended: true)
        let state = UserState(
            key: plain.key, version: plain.version, devices: Array(plain.devices), pending: Array(plain.pending),
            ended: [], fallbacks: plain.fallbacks, queue: Array(plain.queue),
            recentCreations: Array(plain.recentCreations), lockedUntil: plain.lockedUntil,
            enrollments: [pending, ended])
        let bytes = UserStateCodec.encode(state)
        #expect(bytes.first == 4)
        let decoded = try UserStateCodec.decode(bytes[...], key: state.key, version: state.version)
        #expect(decoded == state && decoded.enrollments == [pending, ended])
        #expect(decoded.indexedDeadline == state.nextDeadline(includingEnded: false))
        for length in 0..<bytes.count {
            #expect(throws: StoreError.self) { try UserStateCodec.decode(bytes[..<length], key: state.key, version: 1) }
        }
    }

    /// A browser's sign-in: format 5 while its challenge is pending, and a record of format 2 once it has ended,
    /// both keeping where the result goes and whether its code was redeemed; the IdP's challenges are written as
    /// before, for the instances of the release before.
    @Test func aBrowsersChallengeKeepsItsChannel() throws {
        let driver = RulesDriver(random: SeededRandom(seed: 9))
        _ = try driver.registerDevice(
            "phone-1", in: "contoso", DeviceRegistration(userID: "alice", publicKey: [1, 2]), now: Self.start)
        let (outcome, _) = try driver.createChallenge(
            ChallengeRequest(requestID: "oidc-1", userID: "alice", number: 42), in: "contoso",
            channel: .browser(codeRedeemed: false), now: Self.start + 1)
        guard case .created(let challenge) = outcome else { throw StoreError("not created: \(outcome)") }
        let pendingState = driver.state(challenge.user)
        let bytes = UserStateCodec.encode(pendingState)
        #expect(bytes.first == 5)
        let decoded = try UserStateCodec.decode(bytes[...], key: pendingState.key, version: pendingState.version)
        #expect(decoded == pendingState && decoded.pending.first?.channel == .browser(codeRedeemed: false))
        for length in 0..<bytes.count {
            #expect(throws: StoreError.self) {
                try UserStateCodec.decode(bytes[..<length], key: pendingState.key, version: 1)
            }
        }
        _ = try driver.answer(
            challenge.id, from: "phone-1",
            Decision(kind: .approve(selectedNumber: 42), signedAtUnix: 1, signature: "s"),
            now: Self.start + 2)
        #expect(UserStateCodec.encode(driver.state(challenge.user)).first == 3)
        let (redeemed, _) = try driver.redeemCode(for: challenge.id, in: "contoso")
        let record = UserStateCodec.encode(ended: redeemed)
        #expect(record.first == 2)
        let read = try UserStateCodec.decode(ended: record[...], of: challenge.user)
        #expect(read == Self.recorded(redeemed) && read.channel == .browser(codeRedeemed: true))
        var unknown = record
        unknown[1] = 9
        #expect(throws: StoreError.self) { try UserStateCodec.decode(ended: unknown[...], of: challenge.user) }
        let state = try Self.eventfulState()
        #expect(state.ended.allSatisfy { UserStateCodec.encode(ended: $0.challenge).first == 1 })
    }

    /// Keycloak's CIBA request: its challenge keeps the bearer token after its channel's code, pending (format 5)
    /// and ended (a record of format 2).
    @Test func aCIBAChallengeKeepsItsBearerToken() throws {
        let driver = RulesDriver(random: SeededRandom(seed: 11))
        _ = try driver.registerDevice(
            "phone-1", in: "contoso", DeviceRegistration(userID: "alice", publicKey: [1, 2]), now: Self.start)
        let channel = ResultChannel.ciba(bearerToken: "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJ4In0.c2lnbmF0dXJl")
        let (outcome, _) = try driver.createChallenge(
            ChallengeRequest(requestID: "ciba-x", userID: "alice", number: 42), in: "contoso", channel: channel,
            now: Self.start + 1)
        guard case .created(let challenge) = outcome else { throw StoreError("not created: \(outcome)") }
        let pendingState = driver.state(challenge.user)
        let bytes = UserStateCodec.encode(pendingState)
        #expect(bytes.first == 5)
        let decoded = try UserStateCodec.decode(bytes[...], key: pendingState.key, version: pendingState.version)
        #expect(decoded == pendingState && decoded.pending.first?.channel == channel)
        for length in 0..<bytes.count {
            #expect(throws: StoreError.self) {
                try UserStateCodec.decode(bytes[..<length], key: pendingState.key, version: 1)
            }
        }
        _ = try driver.cancel(challenge.id, in: "contoso", now: Self.start + 2)
        let ended = try #require(driver.challenge(challenge.id, in: "contoso"))
        let record = UserStateCodec.encode(ended: ended)
        #expect(record.first == 2)
        #expect(try UserStateCodec.decode(ended: record[...], of: challenge.user).channel == channel)
    }

    @Test func anEndedChallengesRecordKeepsWhatTheRulesReadOfIt() throws {
        let state = try Self.eventfulState()
        var read = try UserStateCodec.decode(
            UserStateCodec.encode(state)[...], key: state.key, version: state.version)
        for ended in state.ended {
            let record = UserStateCodec.encode(ended: ended.challenge)
            let challenge = try UserStateCodec.decode(ended: record[...], of: state.key)
            #expect(challenge == Self.recorded(ended.challenge))
            #expect(challenge.traceparent == nil && challenge.resolution?.decision.map(\.signature) ?? "" == "")
            read.remember(ended: challenge)
        }
        #expect(read.ended.map(\.challenge.status) == [.approved, .cancelled, .denied])
        #expect(
            read.ended.compactMap(\.challenge.resolution?.decision?.kind) == [
                .approve(selectedNumber: 42), .deny(reason: .notMe),
            ])
        // What the rules read of an ended challenge still decides as it did: the same answer again is a retry, and
        // another device's is told the challenge has ended.
        let answer = Decision(kind: .approve(selectedNumber: 42), signedAtUnix: Self.start / 1000 + 5, signature: "s")
        let retry = try Rules.answer(
            read.ended[0].challenge.id, from: "phone-1", answer, policy: TenantPolicy(), user: read,
            now: Self.start + 60)
        guard case .replayed(let replayed) = retry.outcome else {
            Issue.record("a retry of the same answer was \(retry.outcome)")
            return
        }
        #expect(replayed.status == .approved && replayed.resolution?.device == "phone-1")
        #expect(throws: CoreError.self) {
            try Rules.answer(
                read.ended[0].challenge.id, from: "tablet-2", answer, policy: TenantPolicy(), user: read,
                now: Self.start + 60)
        }
        // A record of a pending challenge, or damaged, is refused.
        let pending = try #require(state.pending.first)
        var out = BinaryWriter()
        out.byte(1)
        out.challenge(pending, .original)
        #expect(throws: StoreError.self) { try UserStateCodec.decode(ended: out.bytes[...], of: state.key) }
        let record = UserStateCodec.encode(ended: state.ended[0].challenge)
        for length in 0..<record.count {
            #expect(throws: StoreError.self) { try UserStateCodec.decode(ended: record[..<length], of: state.key) }
        }
    }

    /// What 0.16.0's writer wrote for `eventfulState()`, in format 1 (no traceparent) and format 2 (the pending and
    /// the approved challenges with `traceparent`): the ended challenges in the state.
    static let writtenBefore0_17: [UserStateCodec.Format: [UInt8]] = [
        .original: hex(
            """
            0101d2cedfa2c268020770686f6e652d31410102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122
            232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f4041000461623132017411416c69636527732070686f6e
            6520e29c938090cda1c268019690cda1c268087461626c65742d32020708020000008290cda1c268018490cda1c268011963685f
            347a577052635a736272674272467a73314f7747445409722d70656e64696e6705616c6963652a013c247b22617070223a224f75
            746c6f6f6b222c226970223a223230332e302e3131332e37227d032e2a0f020770686f6e652d31087461626c65742d32bc90cda1
            c268fcb9d4a1c26800031963685f347934627a6c5432554d58434846386151415f3053750a722d617070726f76656405616c6963
            652a013c027b7d0309122a020770686f6e652d31087461626c65742d329490cda1c268d4b9d4a1c268010100010770686f6e652d
            319690cda1c268012a80bab5b00d001963685f347a6f6e653665716a3672306a64646d6764494637700b722d63616e63656c6c65
            6405616c6963652a013c027b7d030d2d2a020770686f6e652d31087461626c65742d32a890cda1c268e8b9d4a1c2680104010200
            aa90cda1c268001963685f347a67385a72514d31775a34764c7a646a705677714108722d64656e69656405616c6963652a013c02
            7b7d03470f2a020770686f6e652d31087461626c65742d32d090cda1c26890bad4a1c2680102010101087461626c65742d32d290
            cda1c2680200d0bab5b00d000108722d6c6f636b656405616c6963650700027b7d04e490cda1c268021963685f347a577052635a
            736272674272467a73314f774744540770686f6e652d311963685f347a577052635a736272674272467a73314f77474454087461
            626c65742d32049490cda1c268a890cda1c268bc90cda1c268d090cda1c268
            """),
        .traceparents: hex(
            """
            0201d2cedfa2c268020770686f6e652d31410102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122
            232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f4041000461623132017411416c69636527732070686f6e
            6520e29c938090cda1c268019690cda1c268087461626c65742d32020708020000008290cda1c268018490cda1c2680101373030
            2d34626639326633353737623334646136613363653932396430653065343733362d303066303637616130626139303262372d30
            311963685f347a577052635a736272674272467a73314f7747445409722d70656e64696e6705616c6963652a013c247b22617070
            223a224f75746c6f6f6b222c226970223a223230332e302e3131332e37227d032e2a0f020770686f6e652d31087461626c65742d
            32bc90cda1c268fcb9d4a1c2680003001963685f347934627a6c5432554d58434846386151415f3053750a722d617070726f7665
            6405616c6963652a013c027b7d0309122a020770686f6e652d31087461626c65742d329490cda1c268d4b9d4a1c2680101000107
            70686f6e652d319690cda1c268012a80bab5b00d00001963685f347a6f6e653665716a3672306a64646d6764494637700b722d63
            616e63656c6c656405616c6963652a013c027b7d030d2d2a020770686f6e652d31087461626c65742d32a890cda1c268e8b9d4a1
            c2680104010200aa90cda1c26800001963685f347a67385a72514d31775a34764c7a646a705677714108722d64656e6965640561
            6c6963652a013c027b7d03470f2a020770686f6e652d31087461626c65742d32d090cda1c26890bad4a1c2680102010101087461
            626c65742d32d290cda1c2680200d0bab5b00d000108722d6c6f636b656405616c6963650700027b7d04e490cda1c26802196368
            5f347a577052635a736272674272467a73314f774744540770686f6e652d311963685f347a577052635a736272674272467a7331
            4f77474454087461626c65742d32049490cda1c268a890cda1c268bc90cda1c268d090cda1c268
            """),
    ]

    /// States of formats 1 and 2 are read with their ended challenges, and with the deadline their writer indexed,
    /// which counts the end of the first one's window.
    @Test(arguments: [UserStateCodec.Format.original, .traceparents])
    func aStateOfTheReleaseBeforeIsReadWithItsEndedChallenges(format: UserStateCodec.Format) throws {
        let state = try Self.eventfulState(traceparent: format == .original ? nil : Self.traceparent)
        let bytes = try #require(Self.writtenBefore0_17[format])
        let decoded = try UserStateCodec.decode(bytes[...], key: state.key, version: state.version)
        #expect(decoded == Self.with(state, ended: state.ended.map { Self.recorded($0.challenge) }))
        #expect(decoded.ended.count == 3 && decoded.indexedDeadline == state.nextDeadline)
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
