// Challenges: every row of API.md's create table, number matching, expiry at its boundaries, the remembering
// window, and the limits around a user.
import Core
import TestSupport
import Testing

@Suite struct CreationTests {
    @Test func createsAndQueuesToEveryDevice() throws {
        let core = makeCore()
        try register(core, "phone-1")
        try register(core, "tablet-1")
        let (outcome, events) = try core.createChallenge(request(), in: tenant, now: start)
        guard case .created(let challenge) = outcome else { throw TestFailure("\(outcome)") }
        #expect(challenge.status == .pending)
        #expect(challenge.devices == ["phone-1", "tablet-1"])
        #expect(challenge.createdAt == start && challenge.expiresAt == start + 120 * second)
        #expect(challenge.id.hasPrefix("ch_") && challenge.id.count == 25)
        #expect(challenge.id.dropFirst(3).allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        #expect(events.first == .challengeSaved(challenge))
        #expect(queued(events) == ["phone-1", "tablet-1"])
        #expect(core.queueDepth == 2 && core.pendingChallenges == 1)
        #expect(core.queue(of: "phone-1", now: start).map(\.id) == [challenge.id])
    }

    @Test(arguments: 0..<50)
    func choicesHoldTheNumberAndDistinctDecoysInRandomOrder(seed: Int) throws {
        let core = makeCore({ $0.choices = 3 + seed % 8 }, seed: UInt64(seed))
        try register(core, "phone-1")
        let number = seed * 2 % 100
        let challenge = try create(core, request(number: number))
        #expect(challenge.choices.count == 3 + seed % 8)
        #expect(Set(challenge.choices).count == challenge.choices.count)
        #expect(challenge.choices.contains(number))
        #expect(challenge.choices.allSatisfy { (0...99).contains($0) })
    }

    @Test func theCorrectNumberIsNotAlwaysInTheSamePlace() throws {
        var positions = Set<Int>()
        for seed in 0..<30 {
            let core = makeCore(seed: UInt64(seed))
            try register(core, "phone-1")
            let challenge = try create(core)
            positions.insert(challenge.choices.firstIndex(of: 42)!)
        }
        #expect(positions == [0, 1, 2])
    }

    @Test func idsDifferAndTheTTLComesFromTheRequestOrThePolicy() throws {
        let core = makeCore {
            $0.maxPendingPerUser = 10
            $0.challengeTTLSeconds = 300
        }
        try register(core, "phone-1")
        let first = try create(core, request("a"))
        let second = try create(core, request("b", ttl: 10))
        #expect(first.id != second.id)
        #expect(first.expiresAt == start + 300 * 1000)
        #expect(second.expiresAt == start + 10 * 1000)
    }

    @Test func anIdPRetryGetsTheSameAnswerAndNoSecondPrompt() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let challenge = try create(core)
        let (replay, events) = try core.createChallenge(request(), in: tenant, now: start + second)
        #expect(replay == .replayedChallenge(challenge))
        #expect(queued(events).isEmpty)
        #expect(core.queueDepth == 1)
        // The replay reports the current status.
        _ = try core.answer(challenge.id, from: "phone-1", approve(42), now: start + 2 * second)
        guard
            case .replayedChallenge(let now)? = try? core.createChallenge(
                request(), in: tenant, now: start + 3 * second
            ).0
        else { throw TestFailure("no replay") }
        #expect(now.status == .approved)
    }

    /// The create's traceparent stays with the challenge; a retry carries a span of its own and is still a retry.
    @Test func aTraceparentIsKeptAndARetryWithAnotherIsStillARetry() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let first = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let (outcome, _) = try core.createChallenge(request(), in: tenant, traceparent: first, now: start)
        guard case .created(let challenge) = outcome else { throw TestFailure("\(outcome)") }
        #expect(challenge.traceparent == first)
        let retry = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
        let (replay, _) = try core.createChallenge(request(), in: tenant, traceparent: retry, now: start + second)
        #expect(replay == .replayedChallenge(challenge))
        _ = try core.answer(challenge.id, from: "phone-1", approve(42), now: start + 2 * second)
        #expect(core.challenge(challenge.id, in: tenant)?.traceparent == first)
    }

    @Test(arguments: [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true),
        // A later version is read as 00 would be, its extra fields dropped.
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-follows", true),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more", false),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false),
        ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false),
        ("", false),
    ])
    func aTraceparentIsKeptOnlyWhenValid(header: String, valid: Bool) {
        let kept = TraceContext.traceparent(header[...])
        #expect(kept == (valid ? String(header.prefix(55)) : nil))
    }

    @Test func aContextIsItsCanonicalJSONWhateverOrderItsFieldsCameIn() throws {
        let one: ChallengeContext = ["ip": "203.0.113.7", "app": "Outlook \"365\"\n", "z": "ü"]
        let other: ChallengeContext = ["z": "ü", "app": "Outlook \"365\"\n", "ip": "203.0.113.7"]
        #expect(one == other)
        #expect(one.json == #"{"app":"Outlook \"365\"\n","ip":"203.0.113.7","z":"ü"}"#)
        #expect(ChallengeContext(canonicalJSON: one.json) == one)
        #expect(try ChallengeContext(validating: [:]).json == "{}")
        #expect(try ChallengeContext(validating: ["z": "1", "a": "2"]).json == #"{"a":"2","z":"1"}"#)
    }

    @Test(arguments: [
        Dictionary(uniqueKeysWithValues: (0..<17).map { ("k\($0)", "v") }), ["app": String(repeating: "x", count: 257)],
        ["": "x"], [String(repeating: "k", count: 65): "x"], ["a\u{7}": "x"],
    ])
    func aContextOutsideTheLimitsIsRefused(fields: [String: String]) {
        #expect(throws: CoreError.self) { try ChallengeContext(validating: fields) }
    }

    @Test func reusingARequestIdForAnotherRequestIsAConflict() throws {
        let core = makeCore()
        try register(core, "phone-1")
        _ = try create(core)
        for other in [request(number: 43), request(user: "bob@contoso.com"), request(ttl: 60)] {
            #expect(throws: CoreError(.idempotencyConflict, "request_id was used for another request")) {
                try core.createChallenge(other, in: tenant, now: start)
            }
        }
        var changedContext = request()
        changedContext.context = ["app": "Outlook", "ip": "203.0.113.7"]
        #expect(throws: CoreError.self) { try core.createChallenge(changedContext, in: tenant, now: start) }
        // The same request_id in another tenant is another request.
        try register(core, "phone-9", in: "fabrikam")
        #expect(fallbackReason(try core.createChallenge(request(), in: "fabrikam", now: start).0) == nil)
    }

    @Test(arguments: [
        ChallengeRequest(requestID: "r", userID: alice, number: 100),
        ChallengeRequest(requestID: "r", userID: alice, number: -1),
        ChallengeRequest(requestID: "r", userID: alice, number: 1, ttlSeconds: 9),
        ChallengeRequest(requestID: "r", userID: alice, number: 1, ttlSeconds: 601),
        ChallengeRequest(requestID: "r r", userID: alice, number: 1),
        ChallengeRequest(requestID: "r", userID: "", number: 1),
    ])
    func badRequestsChangeNothing(bad: ChallengeRequest) throws {
        let core = makeCore()
        try register(core, "phone-1")
        #expect(throws: CoreError.self) { try core.createChallenge(bad, in: tenant, now: start) }
        #expect(core.queueDepth == 0 && core.pendingChallenges == 0)
        // The request_id was not taken by the failed attempt.
        var good = bad
        good.requestID = "r"
        good.userID = alice
        good.number = 1
        good.ttlSeconds = nil
        good.context = [:]
        #expect(fallbackReason(try core.createChallenge(good, in: tenant, now: start).0) == nil)
    }
}

@Suite struct FallbackTests {
    @Test func aSecondSignInWhileOneIsPendingGoesToThePassword() throws {
        let core = makeCore()
        try register(core, "phone-1")
        _ = try create(core, request("first"))
        let (outcome, events) = try core.createChallenge(request("second"), in: tenant, now: start + second)
        #expect(fallbackReason(outcome) == .pendingChallenge)
        #expect(queued(events).isEmpty && core.queueDepth == 1)
    }

    @Test func noDeviceMeansPassword() throws {
        let core = makeCore()
        #expect(fallbackReason(try core.createChallenge(request(), in: tenant, now: start).0) == .noDevice)
    }

    @Test func policyOffOrUserNotTargetedMeansPasswordBeforeAnyPush() throws {
        let core = makeCore()
        try register(core, "phone-1")
        var off = TenantPolicy()
        off.passwordless = false
        _ = try core.setPolicy(off, for: tenant)
        let (outcome, events) = try core.createChallenge(request("a"), in: tenant, now: start)
        #expect(fallbackReason(outcome) == .policy)
        #expect(queued(events).isEmpty)
        var selected = TenantPolicy()
        selected.target = .selected
        selected.users = ["bob@contoso.com"]
        _ = try core.setPolicy(selected, for: tenant)
        #expect(fallbackReason(try core.createChallenge(request("b"), in: tenant, now: start).0) == .policy)
        selected.users.insert(alice)
        _ = try core.setPolicy(selected, for: tenant)
        #expect(fallbackReason(try core.createChallenge(request("c"), in: tenant, now: start).0) == nil)
    }

    @Test func theRateLimitCountsChallengesInTheWindow() throws {
        let core = makeCore {
            $0.maxChallengesPerWindow = 3
            $0.windowSeconds = 60
        }
        try register(core, "phone-1")
        for index in 0..<3 {
            let challenge = try create(core, request("r\(index)"), at: start + UnixMillis(index) * second)
            _ = try core.cancel(challenge.id, in: tenant, now: start + UnixMillis(index) * second)
        }
        let (limited, _) = try core.createChallenge(request("r3"), in: tenant, now: start + 59 * second)
        #expect(fallbackReason(limited) == .rateLimited)
        // Fallbacks do not count; the first creation leaves the window at start + 60 s.
        #expect(fallbackReason(try core.createChallenge(request("r4"), in: tenant, now: start + 60 * second).0) == nil)
    }

    @Test func notMeLocksTheUserOutForTheLockoutTime() throws {
        let core = makeCore { $0.lockoutSeconds = 1200 }
        try register(core, "phone-1")
        let challenge = try create(core)
        let (_, events) = try core.answer(challenge.id, from: "phone-1", deny(.notMe), now: start + second)
        #expect(events.contains(.lockoutSaved(tenantID: tenant, userID: alice, until: start + 1201 * second)))
        let until = start + 1201 * second
        let during = try core.createChallenge(request("b"), in: tenant, now: until - 1)
        #expect(fallbackReason(during.0) == .lockedOut)
        #expect(fallbackReason(try core.createChallenge(request("c"), in: tenant, now: until).0) == nil)
        // Another user of the tenant is not locked out.
        try register(core, "phone-2", user: "bob@contoso.com")
        #expect(
            fallbackReason(
                try core.createChallenge(request("d", user: "bob@contoso.com"), in: tenant, now: start + 2 * second).0)
                == nil)
    }

    @Test func aFallbackIsRememberedUnderItsRequestId() throws {
        let core = makeCore()
        let (first, events) = try core.createChallenge(request(), in: tenant, now: start)
        guard case .fallback(let fallback) = first else { throw TestFailure("\(first)") }
        #expect(events == [.fallbackSaved(fallback)])
        // A device arrives, but the retry gets the same answer.
        try register(core, "phone-1")
        #expect(try core.createChallenge(request(), in: tenant, now: start + second).0 == .replayedFallback(fallback))
        #expect(throws: CoreError(.idempotencyConflict, "request_id was used for another request")) {
            try core.createChallenge(request(number: 7), in: tenant, now: start + second)
        }
    }
}

@Suite struct ExpiryTests {
    @Test func expiresExactlyAtItsDeadline() throws {
        let core = makeCore()
        try register(core, "phone-1")
        try register(core, "phone-2")
        let challenge = try create(core, request(ttl: 30))
        #expect(core.nextDeadline == challenge.expiresAt)
        #expect(core.tick(now: challenge.expiresAt - 1).isEmpty)
        #expect(core.queue(of: "phone-1", now: challenge.expiresAt - 1).count == 1)
        // Past its deadline the queue hides it even before the tick.
        #expect(core.queue(of: "phone-1", now: challenge.expiresAt).isEmpty)
        let events = core.tick(now: challenge.expiresAt)
        #expect(endedStatuses(events) == [.expired])
        #expect(unqueued(events) == ["phone-1": .expired, "phone-2": .expired])
        #expect(core.challenge(challenge.id, in: tenant)?.status == .expired)
        #expect(core.challenge(challenge.id, in: tenant)?.resolution?.at == challenge.expiresAt)
        #expect(core.queueDepth == 0 && core.pendingChallenges == 0)
        #expect(core.tick(now: challenge.expiresAt + 1).isEmpty)
    }

    @Test func anEndedChallengeIsNotExpiredAgain() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let challenge = try create(core)
        _ = try core.answer(challenge.id, from: "phone-1", approve(42), now: start + second)
        #expect(core.tick(now: challenge.expiresAt).isEmpty)
        #expect(core.challenge(challenge.id, in: tenant)?.status == .approved)
    }

    @Test func aLapsedPendingChallengeDoesNotBlockANewSignIn() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let old = try create(core, request("a", ttl: 10))
        // No tick ran; creating after the deadline expires the old one first.
        let (outcome, events) = try core.createChallenge(request("b"), in: tenant, now: old.expiresAt)
        #expect(fallbackReason(outcome) == nil)
        #expect(endedStatuses(events) == [.expired])
    }

    @Test func ticksCostWhatExpiresNotWhatIsPending() throws {
        let core = makeCore { $0.maxPendingPerUser = 100 }
        for index in 0..<2000 { try register(core, "phone-\(index)", user: "user-\(index)") }
        for index in 0..<2000 {
            _ = try create(
                core, request("r\(index)", user: "user-\(index)", ttl: index < 10 ? 10 : 600),
                at: start)
        }
        let events = core.tick(now: start + 10 * second)
        #expect(endedStatuses(events).count == 10)
        #expect(core.pendingChallenges == 1990 && core.queueDepth == 1990)
        #expect(core.nextDeadline == start + 600 * second)
    }
}

@Suite struct RememberingTests {
    @Test func endedChallengesAreRememberedForFifteenMinutesThenForgotten() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let challenge = try create(core)
        let ended = start + 5 * second
        _ = try core.cancel(challenge.id, in: tenant, now: ended)
        let window = TestCore.rememberMillis
        #expect(window == 15 * 60 * 1000)
        #expect(core.tick(now: ended + window - 1).isEmpty)
        guard
            case .replayedChallenge(let kept) = try core.createChallenge(request(), in: tenant, now: ended + window - 1)
                .0
        else { throw TestFailure("not remembered") }
        #expect(kept.status == .cancelled)
        let events = core.tick(now: ended + window)
        #expect(events == [.forgotten(tenantID: tenant, requestID: "signin-1", challengeID: challenge.id)])
        #expect(core.challenge(challenge.id, in: tenant) == nil)
        // The request_id is free again: a new sign-in.
        #expect(fallbackReason(try core.createChallenge(request(), in: tenant, now: ended + window).0) == nil)
    }

    @Test func fallbacksAreForgottenAfterTheWindowToo() throws {
        let core = makeCore()
        _ = try core.createChallenge(request(), in: tenant, now: start)
        #expect(core.tick(now: start + TestCore.rememberMillis - 1).isEmpty)
        #expect(
            core.tick(now: start + TestCore.rememberMillis)
                == [.forgotten(tenantID: tenant, requestID: "signin-1", challengeID: nil)])
        try register(core, "phone-1")
        #expect(
            fallbackReason(try core.createChallenge(request(), in: tenant, now: start + TestCore.rememberMillis).0)
                == nil)
    }

    @Test func pendingChallengesAreNeverForgotten() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let challenge = try create(core, request(ttl: 600))
        _ = core.tick(now: start + 599 * second)
        #expect(core.challenge(challenge.id, in: tenant)?.status == .pending)
    }
}

@Suite struct TenantIsolationTests {
    @Test func anotherTenantCannotSeeOrCancelAChallenge() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let challenge = try create(core)
        #expect(core.challenge(challenge.id, in: "fabrikam") == nil)
        #expect(throws: CoreError(.notFound, "no such challenge")) {
            try core.cancel(challenge.id, in: "fabrikam", now: start)
        }
        #expect(core.challenge(challenge.id, in: tenant)?.status == .pending)
        #expect(core.queueDepthByTenant == [tenant: 1])
    }
}
