// Partitions are stable across processes and releases, challenge ids carry theirs, and every transition decided on a
// stale version is refused by the version check and decided again on the fresh state.
import Core
import TestSupport
import Testing

@Suite struct PartitionTests {
    /// Fixed vectors: a change of the hash would move every stored user to another partition.
    @Test(arguments: [
        ("contoso", "alice@contoso.com", 65), ("contoso", "bob@contoso.com", 629),
        ("fabrikam", "alice@contoso.com", 758), ("demo", "ålice", 811), ("a", "", 864),
    ])
    func theHashIsStable(tenant: String, user: String, partition: Int) {
        #expect(Partition(of: UserKey(tenantID: tenant, userID: user)).index == partition)
    }

    @Test func challengeIDsCarryTheirUsersPartition() throws {
        let core = makeCore()
        var seen: Set<String> = []
        for index in 0..<50 {
            let user = "user-\(index)@contoso.com"
            try register(core, "phone-\(index)", user: user)
            let challenge = try create(core, request("r\(index)", user: user))
            #expect(challenge.id.utf8.count == 25 && challenge.id.hasPrefix("ch_"))
            #expect(Partition(challengeID: challenge.id) == UserKey(tenantID: tenant, userID: user).partition)
            seen.insert(challenge.id)
        }
        #expect(seen.count == 50)
        for junk in ["", "ch_", "ch_AAAAAAAAAAAAAAAAAAAAA", "ch_AAAAAAAAAAAAAAAAAAAAA*", "xx_AAAAAAAAAAAAAAAAAAAAAA"] {
            #expect(Partition(challengeID: junk) == nil, "\(junk)")
        }
    }
}

@Suite struct StaleVersionTests {
    /// Two devices of one user answer at once, each decided on the same version: the first commit wins, the second is
    /// stale, and decided again it is refused as `already_resolved` (its device's stream got `answered_elsewhere`).
    @Test func twoAnswersOnTheSameVersion() throws {
        let core = makeCore()
        try register(core, "phone-1")
        try register(core, "tablet-1")
        let challenge = try create(core)
        let user = core.state(UserKey(tenantID: tenant, userID: alice))
        let policy = core.policy(for: tenant)
        let first = try Rules.answer(challenge.id, from: "phone-1", approve(42), policy: policy, user: user, now: start)
        let second = try Rules.answer(
            challenge.id, from: "tablet-1", deny(.notMe), policy: policy, user: user, now: start)
        #expect(core.commit(first))
        #expect(
            first.deliveries.contains(
                .unqueued(challengeID: challenge.id, deviceID: "tablet-1", outcome: .answeredElsewhere)))
        #expect(!core.commit(second))
        let fresh = core.state(user.key)
        #expect(fresh.version == user.version + 1 && fresh.lockedUntil == nil)
        #expect(throws: CoreError(.alreadyResolved, "the challenge has already ended")) {
            try Rules.answer(challenge.id, from: "tablet-1", deny(.notMe), policy: policy, user: fresh, now: start)
        }
    }

    /// For each transition: decided on a state another commit has moved past, its commit is refused and nothing
    /// changes; decided again on the fresh state, it commits.
    @Test(arguments: ["create", "answer", "cancel", "register", "remove", "push", "tick", "seen"])
    func aStaleDecisionIsRefusedAndDecidedAgain(transition: String) throws {
        let core = makeCore { $0.maxPendingPerUser = 3 }
        try register(core, "phone-1")
        let challenge = try create(core)
        let key = UserKey(tenantID: tenant, userID: alice)
        let policy = core.policy(for: tenant)
        var random = SeededRandom(seed: 5)
        func decide(_ user: UserState) throws -> Transition<Void> {
            let later = start + 200 * second
            return switch transition {
            case "create":
                try Rules.create(
                    request("other"), policy: policy, requestHeldBy: nil, user: user, now: start, random: &random
                ).map { _ in }
            case "answer":
                try Rules.answer(challenge.id, from: "phone-1", approve(42), policy: policy, user: user, now: start)
                    .map { _ in }
            case "cancel": try Rules.cancel(challenge.id, user: user, now: start).map { _ in }
            case "register":
                try Rules.register(
                    "tablet-1", DeviceRegistration(userID: alice, publicKey: [0x30, 0x59, 1, 2, 3]), policy: policy,
                    registeredTo: nil,
                    user: user, now: start
                ).map { _ in }
            case "remove": try Rules.remove("phone-1", user: user)
            case "push": try Rules.updatePush(PushTarget(provider: .fcm, token: "t"), for: "phone-1", user: user)
            case "tick": Rules.tick(user: user, now: later)
            default: Rules.noteSeen("phone-1", user: user, now: later)
            }
        }
        let old = core.state(key)
        let stale = try decide(old)
        #expect(!stale.changesNothing)
        // Another instance's commit moves the user on first.
        _ = try core.createChallenge(request("meanwhile"), in: tenant, now: start)
        let moved = core.state(key)
        #expect(moved.version == old.version + 1)
        #expect(!core.commit(stale))
        #expect(core.state(key) == moved)
        #expect(core.commit(try decide(moved)))
        #expect(core.state(key).version == moved.version + 1)
    }
}
