// Answers from devices, cancellation and its races, queue order, the gauges, and recovery from stored state.
import Core
import TestSupport
import Testing

@Suite struct AnswerTests {
    func twoDevices() throws -> (TestCore, Challenge) {
        let core = makeCore()
        try register(core, "phone-1")
        try register(core, "tablet-1")
        return (core, try create(core))
    }

    @Test func theRightNumberApprovesAndTheFirstAnswerWins() throws {
        let (core, challenge) = try twoDevices()
        let (outcome, events) = try core.answer(challenge.id, from: "phone-1", approve(42), now: start + second)
        guard case .resolved(let approved) = outcome else { throw TestFailure("\(outcome)") }
        #expect(approved.status == .approved && approved.resolution?.reason == nil)
        #expect(approved.resolution?.device == "phone-1" && approved.resolution?.decision == approve(42))
        #expect(approved.resolution?.at == start + second)
        #expect(unqueued(events) == ["phone-1": .approved, "tablet-1": .answeredElsewhere])
        #expect(endedStatuses(events) == [.approved])
        #expect(core.queueDepth == 0 && core.pendingChallenges == 0)
        // The other device's answer comes too late.
        #expect(throws: CoreError(.alreadyResolved, "the challenge has already ended")) {
            try core.answer(challenge.id, from: "tablet-1", approve(42), now: start + 2 * second)
        }
    }

    @Test func aWrongNumberDenies() throws {
        let (core, challenge) = try twoDevices()
        let wrong = challenge.choices.first { $0 != 42 }!
        let (outcome, events) = try core.answer(challenge.id, from: "tablet-1", approve(wrong), now: start + second)
        guard case .resolved(let denied) = outcome else { throw TestFailure("\(outcome)") }
        #expect(denied.status == .denied && denied.resolution?.reason == .wrongNumber)
        #expect(unqueued(events) == ["tablet-1": .denied, "phone-1": .answeredElsewhere])
        #expect(!events.contains { if case .lockoutSaved = $0 { true } else { false } })
    }

    @Test(arguments: DenyReason.allCases)
    func aDenialCarriesTheDevicesReason(reason: DenyReason) throws {
        let (core, challenge) = try twoDevices()
        let (outcome, events) = try core.answer(challenge.id, from: "phone-1", deny(reason), now: start + second)
        guard case .resolved(let denied) = outcome else { throw TestFailure("\(outcome)") }
        #expect(denied.status == .denied)
        #expect(denied.resolution?.reason == (reason == .notMe ? .notMe : .cancelled))
        let locked = events.contains { if case .lockoutSaved = $0 { true } else { false } }
        #expect(locked == (reason == .notMe))
    }

    @Test func theSameAnswerAgainIsAReplayAndADifferentOneAConflict() throws {
        let (core, challenge) = try twoDevices()
        let decision = approve(42)
        _ = try core.answer(challenge.id, from: "phone-1", decision, now: start + second)
        let (again, events) = try core.answer(challenge.id, from: "phone-1", decision, now: start + 3 * second)
        guard case .replayed(let same) = again else { throw TestFailure("\(again)") }
        #expect(same.status == .approved && events.isEmpty)
        #expect(throws: CoreError(.alreadyResolved, "the challenge has already ended")) {
            try core.answer(challenge.id, from: "phone-1", deny(.notMe), now: start + 3 * second)
        }
        #expect(throws: CoreError(.alreadyResolved, "the challenge has already ended")) {
            try core.answer(challenge.id, from: "phone-1", approve(17), now: start + 3 * second)
        }
    }

    /// An app signs its retry anew: a later `signed_at_unix` and another (randomised) ECDSA signature. It is the
    /// same answer, replayed, and the stored decision stays the first one.
    @Test func theSameAnswerSignedAnewIsAReplay() throws {
        let (core, challenge) = try twoDevices()
        let first = approve(42)
        _ = try core.answer(challenge.id, from: "phone-1", first, now: start + second)
        var resigned = approve(42, at: 1_795_600_007)
        resigned.signature = "another-sig"
        let (again, events) = try core.answer(challenge.id, from: "phone-1", resigned, now: start + 8 * second)
        guard case .replayed(let same) = again else { throw TestFailure("\(again)") }
        #expect(same.status == .approved && same.resolution?.decision == first && events.isEmpty)
    }

    @Test func anAnswerAfterExpiryIsGone() throws {
        let (core, challenge) = try twoDevices()
        #expect(throws: CoreError(.expired, "the challenge expired")) {
            try core.answer(challenge.id, from: "phone-1", approve(42), now: challenge.expiresAt)
        }
        // The answer's arrival expired it (no tick needed), and told the devices.
        #expect(core.challenge(challenge.id, in: tenant)?.status == .expired)
        // Just before the deadline it still counts.
        let (other, _) = try twoDevicesAgain(core)
        let (outcome, _) = try core.answer(other.id, from: "phone-1", approve(42), now: other.expiresAt - 1)
        guard case .resolved(let approved) = outcome else { throw TestFailure("\(outcome)") }
        #expect(approved.status == .approved)
    }

    func twoDevicesAgain(_ core: TestCore) throws -> (Challenge, Void) {
        (try create(core, request("again"), at: start + 200 * second), ())
    }

    @Test func onlyTheDevicesItWasQueuedToMayAnswer() throws {
        let (core, challenge) = try twoDevices()
        try register(core, "phone-9", user: "bob@contoso.com")
        #expect(throws: CoreError(.notFound, "no such challenge for this device")) {
            try core.answer(challenge.id, from: "phone-9", approve(42), now: start)
        }
        #expect(throws: CoreError(.notFound, "no such challenge for this device")) {
            try core.answer("ch_AAAAAAAAAAAAAAAAAAAAAA", from: "phone-1", approve(42), now: start)
        }
        // A device registered after the challenge was made was never asked.
        try register(core, "phone-2")
        #expect(throws: CoreError.self) { try core.answer(challenge.id, from: "phone-2", approve(42), now: start) }
        // A removed device cannot answer.
        _ = try core.removeDevice("tablet-1", in: tenant)
        #expect(throws: CoreError.self) { try core.answer(challenge.id, from: "tablet-1", approve(42), now: start) }
        #expect(core.challenge(challenge.id, in: tenant)?.status == .pending)
    }
}

@Suite struct CancellationTests {
    @Test func cancellingAPendingChallengeTellsItsDevices() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let challenge = try create(core)
        let (cancelled, events) = try core.cancel(challenge.id, in: tenant, now: start + second)
        #expect(
            cancelled.status == .cancelled && cancelled.resolution?.reason == .cancelled
                && cancelled.resolution?.decision == nil)
        #expect(unqueued(events) == ["phone-1": .cancelled])
        #expect(endedStatuses(events) == [.cancelled])
        // Cancelling again returns it as it is, with nothing new.
        let (again, none) = try core.cancel(challenge.id, in: tenant, now: start + 2 * second)
        #expect(again == cancelled && none.isEmpty)
        // A device that answers now is too late.
        #expect(throws: CoreError(.alreadyResolved, "the challenge has already ended")) {
            try core.answer(challenge.id, from: "phone-1", approve(42), now: start + 3 * second)
        }
    }

    @Test func anAnswerBeforeTheCancelWins() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let challenge = try create(core)
        _ = try core.answer(challenge.id, from: "phone-1", approve(42), now: start + second)
        let (after, events) = try core.cancel(challenge.id, in: tenant, now: start + second)
        #expect(after.status == .approved && events.isEmpty)
    }

    @Test func cancellingAfterTheDeadlineReportsExpiry() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let challenge = try create(core)
        let (after, events) = try core.cancel(challenge.id, in: tenant, now: challenge.expiresAt)
        #expect(after.status == .expired)
        #expect(endedStatuses(events) == [.expired])
    }
}

@Suite struct QueueTests {
    @Test func queuesAreOldestFirstAndGaugesMatchTheEntries() throws {
        let core = makeCore { $0.maxPendingPerUser = 5 }
        try register(core, "phone-1")
        try register(core, "phone-2")
        try register(core, "phone-3", user: "bob@contoso.com")
        let first = try create(core, request("a"), at: start)
        let second = try create(core, request("b"), at: start + 1)
        let third = try create(core, request("c", user: "bob@contoso.com"), at: start + 2)
        #expect(core.queue(of: "phone-1", now: start + 3).map(\.id) == [first.id, second.id])
        #expect(core.queue(of: "phone-3", now: start + 3).map(\.id) == [third.id])
        #expect(core.queueDepth == 5 && core.pendingChallenges == 3)
        _ = try core.answer(first.id, from: "phone-2", approve(42), now: start + 4)
        #expect(core.queue(of: "phone-1", now: start + 5).map(\.id) == [second.id])
        #expect(core.queueDepth == 3 && core.pendingChallenges == 2 && core.queueDepthByTenant == [tenant: 3])
        #expect(core.queue(of: "unknown", now: start).isEmpty)
    }

    @Test func lastSeenIsStoredWhenItMovesByAMinute() throws {
        let core = makeCore()
        try register(core, "phone-1")
        #expect(core.device("phone-1")?.lastSeenAt == nil)
        let first = core.noteSeen("phone-1", now: start + 7)
        // Stored, its indexes untouched: the id and the key are as they were.
        #expect(first == [.deviceUpdated(core.device("phone-1")!)])
        #expect(core.device("phone-1")?.lastSeenAt == start + 7)
        #expect(core.noteSeen("phone-1", now: start + 7 + 59_999).isEmpty)
        #expect(core.device("phone-1")?.lastSeenAt == start + 7)
        #expect(core.noteSeen("phone-1", now: start + 7 + 60_000).count == 1)
        #expect(core.noteSeen("unknown", now: start).isEmpty)
        // An answer counts as being seen.
        let challenge = try create(core, at: start + 200_000)
        let (_, events) = try core.answer(challenge.id, from: "phone-1", approve(42), now: start + 200_000)
        #expect(events.first == .deviceUpdated(core.device("phone-1")!))
        #expect(core.device("phone-1")?.lastSeenAt == start + 200_000)
    }
}

/// Replays events into what a store would hold, then restores a new core from it.
struct FakeStore {
    var policies: [String: TenantPolicy] = [:]
    var devices: [String: Device] = [:]
    var challenges: [String: Challenge] = [:]
    var fallbacks: [String: Fallback] = [:]
    var lockouts: [String: (String, String, UnixMillis)] = [:]

    mutating func apply(_ events: [CoreEvent]) {
        for event in events {
            switch event {
            case .policySaved(let tenantID, let policy): policies[tenantID] = policy
            case .deviceSaved(let device), .deviceUpdated(let device): devices[device.id] = device
            case .deviceRemoved(_, let deviceID): devices[deviceID] = nil
            case .challengeSaved(let challenge): challenges[challenge.id] = challenge
            case .fallbackSaved(let fallback):
                fallbacks[fallback.tenantID + "/" + fallback.request.requestID] = fallback
            case .lockoutSaved(let tenantID, let userID, let until):
                lockouts[tenantID + "/" + userID] = (tenantID, userID, until)
            case .forgotten(let tenantID, let requestID, let challengeID):
                fallbacks[tenantID + "/" + requestID] = nil
                if let challengeID { challenges[challengeID] = nil }
            case .queued, .unqueued, .ended, .enrollmentSaved, .enrollmentForgotten, .enrollmentEnded,
                .fallbackResultDue:
                break
            }
        }
    }

    func restore(into core: TestCore) {
        for (tenantID, policy) in policies { core.restore(policy: policy, for: tenantID) }
        for device in devices.values.sorted(by: {
            $0.createdAt < $1.createdAt || ($0.createdAt == $1.createdAt && $0.id < $1.id)
        }) {
            core.restore(device: device)
        }
        for challenge in challenges.values { core.restore(challenge: challenge) }
        for fallback in fallbacks.values { core.restore(fallback: fallback) }
        for (tenantID, userID, until) in lockouts.values { core.restore(lockoutOf: userID, in: tenantID, until: until) }
    }
}

@Suite struct RecoveryTests {
    @Test func restoredStateBehavesAsBefore() throws {
        var store = FakeStore()
        let before = makeCore { $0.maxPendingPerUser = 3 }
        func record(_ events: [CoreEvent]) { store.apply(events) }
        var policy = TenantPolicy()
        policy.maxPendingPerUser = 3
        policy.lockoutSeconds = 600
        record(try before.setPolicy(policy, for: tenant))
        for deviceID in ["phone-1", "tablet-1"] {
            record(
                try before.registerDevice(
                    deviceID, in: tenant, DeviceRegistration(userID: alice, publicKey: key), now: start
                ).1)
        }
        record(
            try before.registerDevice(
                "phone-9", in: tenant, DeviceRegistration(userID: "bob@contoso.com", publicKey: key), now: start
            ).1)
        let (longOutcome, longEvents) = try before.createChallenge(request("long", ttl: 600), in: tenant, now: start)
        record(longEvents)
        let (shortOutcome, shortEvents) = try before.createChallenge(request("short", ttl: 10), in: tenant, now: start)
        record(shortEvents)
        let (deniedOutcome, deniedEvents) = try before.createChallenge(
            request("bob", user: "bob@contoso.com"), in: tenant, now: start)
        record(deniedEvents)
        guard case .created(let long) = longOutcome, case .created(let short) = shortOutcome,
            case .created(let denied) = deniedOutcome
        else { throw TestFailure("not created") }
        record(try before.answer(denied.id, from: "phone-9", deny(.notMe), now: start + second).1)
        record(try before.createChallenge(request("none", user: "carol@contoso.com"), in: tenant, now: start).1)

        // The broker is down for 30 s, then recovers.
        let later = start + 30 * second
        let after = makeCore(seed: 7)
        store.restore(into: after)
        #expect(after.pendingChallenges == 2 && after.queueDepth == 4)
        let recovered = after.tick(now: later)
        #expect(endedStatuses(recovered) == [.expired])
        #expect(unqueued(recovered) == ["phone-1": .expired, "tablet-1": .expired])
        #expect(after.challenge(short.id, in: tenant)?.status == .expired)
        // The long one keeps its remaining time and its place in both queues.
        #expect(after.challenge(long.id, in: tenant)?.expiresAt == start + 600 * second)
        #expect(after.queue(of: "tablet-1", now: later).map(\.id) == [long.id])
        #expect(after.nextDeadline == start + 600 * second)
        // Idempotency, fallbacks, lockouts and the stored policy survived.
        #expect(
            try after.createChallenge(request("long", ttl: 600), in: tenant, now: later).0 == .replayedChallenge(long))
        guard
            case .replayedFallback(let none) = try after.createChallenge(
                request("none", user: "carol@contoso.com"), in: tenant, now: later
            ).0
        else { throw TestFailure("fallback lost") }
        #expect(none.reason == .noDevice)
        #expect(
            fallbackReason(
                try after.createChallenge(request("bob2", user: "bob@contoso.com"), in: tenant, now: later).0)
                == .lockedOut)
        #expect(after.policy(for: tenant) == policy)
        // And answering works as before.
        let (outcome, _) = try after.answer(long.id, from: "tablet-1", approve(42), now: later)
        guard case .resolved(let approved) = outcome else { throw TestFailure("\(outcome)") }
        #expect(approved.status == .approved)
    }
}
