// Users' states in a real Redis: commits under the version check, loads by user, device, challenge and request,
// the indexes, deadlines and gauges a commit keeps, and the function library's version.
import Core
import Foundation
import Locking
import Store
import TestSupport
import Testing

@testable import Redis
@testable import RedisStore

/// A Redis of the test's own, a client and the states over it, with the functions loaded.
struct StatesUnderTest {
    let server: RedisServer
    let tested: ClientUnderTest
    let states: UncheckedBox<RedisStates>

    init(deviceUsersLimit: Int = 100_000) async throws {
        server = try await RedisServer.start()
        tested = try ClientUnderTest(server.url)
        try await tested.waitUntilReady()
        states = UncheckedBox(RedisStates(client: tested.client.value, deviceUsersLimit: deviceUsersLimit))
        let installed: Result<Void, StoreError> = try await tested.thread.wait { [client = tested.client] done in
            RedisStates.installFunctions(on: client.value) { done($0) }
        }
        try installed.get()
    }

    func load(_ lookup: Lookup) async throws -> Loaded {
        let result: Result<Loaded, StoreError> = try await tested.thread.wait { [states] done in
            states.value.load(lookup) { done($0) }
        }
        return try result.get()
    }

    func commit<Outcome>(_ transition: Transition<Outcome>, enqueue: [OutboxEntry] = []) async throws -> CommitResult {
        let (state, changes) = (transition.state, transition.changes)
        return try await tested.thread.wait { [states] done in
            states.value.commit(state, changes, enqueue: enqueue) { result, _ in done(result) }
        }
    }

    func stop() async throws { try await tested.stop() }
}

/// One test at a time: each starts a redis-server, and a dozen at once would starve the other suites' timing.
@Suite(.serialized) struct RedisStatesTests {
    /// The real time: Redis expires the `request_id` indexes by its own clock.
    static let now = UnixMillis(Date().timeIntervalSince1970 * 1000)
    let alice = UserKey(tenantID: "contoso", userID: "alice")

    func registration(_ key: [UInt8] = [1, 2, 3]) -> DeviceRegistration {
        DeviceRegistration(userID: "alice", publicKey: key, push: PushTarget(provider: .fcm, token: "tok"))
    }

    @Test func aCommittedStateLoadsByUserDeviceChallengeAndRequest() async throws {
        let setup = try await StatesUnderTest()
        let registered = try Rules.register(
            "phone-1", registration(), policy: TenantPolicy(), registeredTo: nil, user: UserState(key: alice),
            now: Self.now)
        #expect(try await setup.commit(registered) == .durable)
        let byUser = try #require(try await setup.load(.user(alice)).state)
        #expect(byUser.version == 1 && byUser.devices.map(\.id) == ["phone-1"])
        #expect(try await setup.load(.device("phone-1")).state == byUser)
        #expect(try await setup.load(.registration(alice, deviceID: "phone-1")).heldBy == alice)
        #expect(try await setup.load(.registration(alice, deviceID: "phone-2")).heldBy == nil)

        var random = SeededRandom(seed: 1)
        let created = try Rules.create(
            ChallengeRequest(requestID: "r-1", userID: "alice", number: 42, context: ["app": "Outlook"]),
            policy: TenantPolicy(), requestHeldBy: nil, user: byUser, now: Self.now + 5, random: &random)
        guard case .created(let challenge) = created.outcome else { throw StoreError("not created") }
        #expect(try await setup.commit(created) == .durable)
        let byChallenge = try #require(try await setup.load(.challenge(challenge.id)).state)
        #expect(byChallenge.version == 2 && byChallenge.challenge(challenge.id) == challenge)
        let creation = try await setup.load(.creation(alice, RequestKey(tenantID: "contoso", requestID: "r-1")))
        #expect(creation.heldBy == alice && creation.state == byChallenge)
        #expect(
            try await setup.load(.creation(alice, RequestKey(tenantID: "fabrikam", requestID: "r-1"))).heldBy == nil)
        // The store keeps the user's deadline and the shared gauges with the state.
        let tag = RedisStates.tag(alice.partition)
        #expect(
            try await setup.server.cli(["ZSCORE", "ap:{\(tag)}:due", "contoso\nalice"]) == String(challenge.expiresAt))
        // One pending challenge and one queue entry, in the tenant's one field.
        #expect(try await setup.server.cli(["HGET", "ap:gauges", "c:contoso"]) == "10000000001")
        // Pending, the challenge is in the partition's hash; the request_id's index lasts while it may be pending
        // and its window after.
        #expect(try await setup.server.cli(["HGET", "ap:{\(tag)}:ch", challenge.id]) == "contoso\nalice")
        #expect(
            try await setup.server.cli(["PEXPIRETIME", "ap:req:contoso\nr-1"])
                == String(challenge.expiresAt + Rules.rememberMillis + 60_000))
        // Unknown ids name no one.
        #expect(try await setup.load(.challenge("ch_AAAAAAAAAAAAAAAAAAAAAA")).state == nil)
        #expect(try await setup.load(.challenge("not-an-id")).state == nil)
        #expect(try await setup.load(.device("phone-9")).state == nil)
        try await setup.stop()
    }

    /// alice with phone-1 registered, committed and loaded back: version 1.
    private func aliceWithAPhone(in setup: StatesUnderTest) async throws -> UserState {
        try await user(alice, registering: "phone-1", in: setup)
    }

    /// A new user with one device registered, committed and loaded back.
    private func user(_ key: UserKey, registering deviceID: String, in setup: StatesUnderTest) async throws -> UserState
    {
        var device = registration()
        device.userID = key.userID
        let registered = try Rules.register(
            deviceID, device, policy: TenantPolicy(), registeredTo: nil, user: UserState(key: key), now: Self.now)
        #expect(try await setup.commit(registered) == .durable)
        return try #require(try await setup.load(.user(key)).state)
    }

    @Test func aDecisionOnAnOlderVersionIsRefusedAndWritesNothing() async throws {
        let setup = try await StatesUnderTest()
        let loaded = try await aliceWithAPhone(in: setup)
        // Two instances decide on version 1 at once: a second device, and a new key for the first.
        let second = try Rules.register(
            "tablet-2", registration([9]), policy: TenantPolicy(), registeredTo: nil, user: loaded, now: Self.now + 1)
        let rekeyed = try Rules.register(
            "phone-1", registration([4, 5, 6]), policy: TenantPolicy(), registeredTo: alice, user: loaded,
            now: Self.now + 1)
        #expect(try await setup.commit(second) == .durable)
        #expect(try await setup.commit(rekeyed) == .stale)
        let now = try #require(try await setup.load(.user(alice)).state)
        #expect(now.version == 2 && now.devices.map(\.id) == ["phone-1", "tablet-2"])
        #expect(now.device("phone-1")?.publicKey == [1, 2, 3])
        // Decided again on what is there now, it commits.
        let again = try Rules.register(
            "phone-1", registration([4, 5, 6]), policy: TenantPolicy(), registeredTo: alice, user: now,
            now: Self.now + 2)
        #expect(try await setup.commit(again) == .durable)
        #expect(try await setup.load(.user(alice)).state?.device("phone-1")?.publicKey == [4, 5, 6])
        try await setup.stop()
    }

    /// Calls of each command Redis ran so far, those inside functions included (`INFO commandstats`).
    private func commandCalls(_ setup: StatesUnderTest) async throws -> [String: Int] {
        var calls: [String: Int] = [:]
        for line in try await setup.server.cli(["INFO", "commandstats"]).split(whereSeparator: \.isNewline) {
            guard line.hasPrefix("cmdstat_"), let colon = line.firstIndex(of: ":") else { continue }
            let fields = line[line.index(after: colon)...].split(separator: ",")
            guard let first = fields.first, first.hasPrefix("calls="), let count = Int(first.dropFirst(6)) else {
                continue
            }
            calls[String(line.dropFirst(8)[..<colon])] = count
        }
        return calls
    }

    @Test func aCommitWritesDeadlinesAndIndexesOnlyWhereTheyChange() async throws {
        let setup = try await StatesUnderTest()
        let registered = try await aliceWithAPhone(in: setup)
        #expect(registered.indexedDeadline == nil)
        var random = SeededRandom(seed: 3)
        let created = try Rules.create(
            ChallengeRequest(requestID: "r-1", userID: "alice", number: 42), policy: TenantPolicy(),
            requestHeldBy: nil, user: registered, now: Self.now, random: &random)
        guard case .created(let challenge) = created.outcome else { throw StoreError("not created") }
        #expect(try await setup.commit(created) == .durable)
        let tag = RedisStates.tag(alice.partition)
        #expect(try await setup.server.cli(["ZSCORE", "ap:dueparts", tag]) == String(challenge.expiresAt))
        let pending = try #require(try await setup.load(.user(alice)).state)
        #expect(pending.indexedDeadline == challenge.expiresAt)

        // Cancelled: the user has no deadline left (the challenge's record ends by itself). The due set loses her,
        // the index of partitions keeps its lower bound; the state is one SET, the record another (in the
        // request_id's key), and the challenge's key a third, to end with the record; the challenge leaves the
        // partition's hash.
        let before = try await commandCalls(setup)
        let cancelled = try Rules.cancel(challenge.id, user: pending, now: Self.now + 10)
        #expect(cancelled.state.nextDeadline(includingEnded: false) == nil)
        #expect(try await setup.commit(cancelled) == .durable)
        var after = try await commandCalls(setup)
        #expect(after["zadd", default: 0] == before["zadd", default: 0])
        #expect(after["zrem", default: 0] - before["zrem", default: 0] == 1)
        #expect(after["set", default: 0] - before["set", default: 0] == 3)
        #expect(after["hset", default: 0] == before["hset", default: 0])
        #expect(after["hdel", default: 0] - before["hdel", default: 0] == 1)
        #expect(try await setup.server.cli(["HGET", "ap:{\(tag)}:ch", challenge.id]) == "")
        #expect(try await setup.server.cli(["GET", "ap:{\(tag)}:c:\(challenge.id)"]) == "r-1|contoso\nalice")
        #expect(try await setup.server.cli(["ZSCORE", "ap:{\(tag)}:due", "contoso\nalice"]) == "")
        #expect(try await setup.server.cli(["ZSCORE", "ap:dueparts", tag]) == String(challenge.expiresAt))
        for key in ["ap:{\(tag)}:c:\(challenge.id)", "ap:req:contoso\nr-1"] {
            #expect(try await setup.server.cli(["PEXPIRETIME", key]) == String(Self.now + 10 + Rules.rememberMillis))
        }
        #expect(try await setup.load(.challenge(challenge.id)).state?.challenge(challenge.id)?.status == .cancelled)
        #expect(
            try await setup.load(.creation(alice, RequestKey(tenantID: "contoso", requestID: "r-1"))).heldBy == alice)

        // A second device: no deadline still, and the due sets are not written.
        let ended = try #require(try await setup.load(.user(alice)).state)
        #expect(ended.ended.isEmpty && ended.indexedDeadline == nil)
        let second = try Rules.register(
            "tablet-2", registration([9]), policy: TenantPolicy(), registeredTo: nil, user: ended, now: Self.now + 20)
        #expect(try await setup.commit(second) == .durable)
        let kept = try await commandCalls(setup)
        #expect(kept["zadd", default: 0] == after["zadd", default: 0])
        #expect(kept["zrem", default: 0] == after["zrem", default: 0])

        // An instance of the release before names the next deadline alone: the due set and the index are written.
        after = kept
        let other = "0001" == tag ? "0002" : "0001"
        let reply = try await setup.server.cli([
            "FCALL", "approvald_commit", "6", "ap:{\(other)}:u:contoso\nolder", "ap:{\(other)}:due", "ap:gauges",
            "ap:{\(other)}:ch", "ap:{\(other)}:out", "ap:{\(other)}:outdue", "0", "1|0|0|", "contoso\nolder", "5000",
            "contoso", "older-instance", "0",
        ])
        #expect(reply.hasPrefix("1"))
        #expect(try await setup.server.cli(["ZSCORE", "ap:{\(other)}:due", "contoso\nolder"]) == "5000")
        #expect(try await setup.server.cli(["ZSCORE", "ap:dueparts", other]) == "5000")

        // Deadlines are compared as numbers though they travel as digits: 900 comes before 5000.
        let earlier = try await setup.server.cli([
            "FCALL", "approvald_commit", "6", "ap:{\(other)}:u:contoso\nolder", "ap:{\(other)}:due", "ap:gauges",
            "ap:{\(other)}:ch", "ap:{\(other)}:out", "ap:{\(other)}:outdue", "1", "2|0|0|", "contoso\nolder",
            "900|5000", "contoso", "older-instance", "0",
        ])
        #expect(earlier.hasPrefix("1"))
        #expect(try await setup.server.cli(["ZSCORE", "ap:dueparts", other]) == "900")
        try await setup.stop()
    }

    @Test func aLoadByADeviceKnownHereReadsItsUserWithoutTheIndexUntilTheDeviceMoves() async throws {
        let setup = try await StatesUnderTest()
        let withPhone = try await aliceWithAPhone(in: setup)
        // The first load goes through the device index (a function call); the next reads alice's state alone.
        #expect(try await setup.load(.device("phone-1")).state == withPhone)
        var before = try await commandCalls(setup)
        #expect(try await setup.load(.device("phone-1")).state == withPhone)
        var after = try await commandCalls(setup)
        #expect(after["fcall", default: 0] == before["fcall", default: 0])
        #expect(after["get", default: 0] - before["get", default: 0] == 1)

        // The phone leaves alice and joins bob: alice's state no longer holds it, so the index is read again.
        #expect(try await setup.commit(try Rules.remove("phone-1", user: withPhone)) == .durable)
        let bob = UserKey(tenantID: "contoso", userID: "bob")
        _ = try await user(bob, registering: "phone-1", in: setup)
        before = try await commandCalls(setup)
        #expect(try await setup.load(.device("phone-1")).state?.key == bob)
        after = try await commandCalls(setup)
        #expect(after["fcall", default: 0] - before["fcall", default: 0] == 1)
        // Removed everywhere: no one.
        let bobsState = try #require(try await setup.load(.user(bob)).state)
        #expect(try await setup.commit(try Rules.remove("phone-1", user: bobsState)) == .durable)
        #expect(try await setup.load(.device("phone-1")).state == nil)
        try await setup.stop()
    }

    /// The devices known here are bounded: past the limit the instance starts again from the index.
    @Test func theDevicesKnownHereAreBounded() async throws {
        let setup = try await StatesUnderTest(deviceUsersLimit: 1)
        _ = try await aliceWithAPhone(in: setup)
        _ = try await user(UserKey(tenantID: "contoso", userID: "bob"), registering: "phone-2", in: setup)
        func indexReads(_ deviceID: String) async throws -> Int {
            let before = try await commandCalls(setup)["fcall", default: 0]
            #expect(try await setup.load(.device(deviceID)).state?.device(deviceID) != nil)
            return try await commandCalls(setup)["fcall", default: 0] - before
        }
        #expect(try await indexReads("phone-1") == 1)
        #expect(try await indexReads("phone-1") == 0)
        // One device known at most: each other one pushes the last out.
        #expect(try await indexReads("phone-2") == 1)
        #expect(try await indexReads("phone-1") == 1)
        #expect(try await indexReads("phone-2") == 1)
        try await setup.stop()
    }

    @Test func aStateThatHoldsNothingIsDeletedWithItsIndexes() async throws {
        let setup = try await StatesUnderTest()
        let loaded = try await aliceWithAPhone(in: setup)
        let removed = try Rules.remove("phone-1", user: loaded)
        #expect(removed.state.isEmpty)
        #expect(try await setup.commit(removed) == .durable)
        #expect(try await setup.load(.user(alice)).state == nil)
        #expect(try await setup.load(.device("phone-1")).state == nil)
        #expect(try await setup.server.cli(["DBSIZE"]) == "0")
        try await setup.stop()
    }

    /// alice's challenge for `requestID`, created at `at` and committed.
    private func challenge(
        _ requestID: String, for state: UserState, at: UnixMillis, in setup: StatesUnderTest
    ) async throws -> Challenge {
        var random = SeededRandom(seed: UInt64(requestID.utf8.count) + UInt64(at % 1000))
        let created = try Rules.create(
            ChallengeRequest(requestID: requestID, userID: state.key.userID, number: 42), policy: TenantPolicy(),
            requestHeldBy: nil, user: state, now: at, random: &random)
        guard case .created(let challenge) = created.outcome else { throw StoreError("not created") }
        #expect(try await setup.commit(created) == .durable)
        return challenge
    }

    /// An ended challenge is a record apart from the state, under the challenge's key and the request_id's, both
    /// ending with its window; every lookup that names it reads it, and nothing else does.
    @Test func anEndedChallengeIsARecordThatTheLookupsNamingItRead() async throws {
        let setup = try await StatesUnderTest()
        let registered = try await aliceWithAPhone(in: setup)
        let challenge = try await challenge("r-1", for: registered, at: Self.now, in: setup)
        let pending = try #require(try await setup.load(.user(alice)).state)
        let approve = Decision(kind: .approve(selectedNumber: 42), signedAtUnix: Self.now / 1000, signature: "sig")
        let answered = try Rules.answer(
            challenge.id, from: "phone-1", approve, policy: TenantPolicy(), user: pending, now: Self.now + 100)
        #expect(try await setup.commit(answered) == .durable)
        let tag = RedisStates.tag(alice.partition)
        #expect(
            try await setup.server.cli(["PEXPIRETIME", "ap:req:contoso\nr-1"])
                == String(Self.now + 100 + Rules.rememberMillis))
        // The state itself holds the device alone, and no deadline.
        let byUser = try #require(try await setup.load(.user(alice)).state)
        #expect(byUser.ended.isEmpty && byUser.pending.isEmpty && byUser.devices.count == 1)
        #expect(try await setup.server.cli(["ZSCORE", "ap:{\(tag)}:due", "contoso\nalice"]) == "")
        // By the challenge, the request_id and the answering device, the record is there; without the signature.
        let byChallenge = try #require(try await setup.load(.challenge(challenge.id)).state)
        let recorded = try #require(byChallenge.challenge(challenge.id))
        #expect(recorded.status == .approved && recorded.resolution?.decision?.signature == "")
        #expect(byChallenge.version == byUser.version)
        let creation = try await setup.load(.creation(alice, RequestKey(tenantID: "contoso", requestID: "r-1")))
        #expect(creation.heldBy == alice && creation.state?.challenge(challenge.id) == recorded)
        let byAnswer = try #require(try await setup.load(.answer(deviceID: "phone-1", challengeID: challenge.id)).state)
        #expect(byAnswer.challenge(challenge.id) == recorded)
        // The retry of the answer, decided on what was read, is a replay.
        let retry = try Rules.answer(
            challenge.id, from: "phone-1", approve, policy: TenantPolicy(), user: byAnswer, now: Self.now + 200)
        guard case .replayed = retry.outcome else { throw StoreError("a retry was \(retry.outcome)") }
        // Another user's device does not get it.
        let bob = UserKey(tenantID: "contoso", userID: "bob")
        _ = try await user(bob, registering: "phone-bob", in: setup)
        let bobs = try #require(
            try await setup.load(.answer(deviceID: "phone-bob", challengeID: challenge.id)).state)
        #expect(bobs.key == bob && bobs.challenge(challenge.id) == nil)

        // With the device gone, the state goes; the record stays, and a create's replay still finds it.
        #expect(try await setup.commit(try Rules.remove("phone-1", user: byUser)) == .durable)
        #expect(try await setup.load(.user(alice)).state == nil)
        let replayed = try await setup.load(.creation(alice, RequestKey(tenantID: "contoso", requestID: "r-1")))
        #expect(replayed.state?.version == 0 && replayed.state?.challenge(challenge.id)?.status == .approved)
        try await setup.stop()
    }

    /// A challenge that ended more than a window ago (a commit long delayed) gets no record: its request_id may
    /// hold a later request by then, which keeps it.
    @Test func aRecordWhoseWindowHasPassedIsNotWritten() async throws {
        let setup = try await StatesUnderTest()
        let registered = try await aliceWithAPhone(in: setup)
        let long = Self.now - Rules.rememberMillis - 600_000
        let challenge = try await challenge("r-old", for: registered, at: long, in: setup)
        #expect(try await setup.server.cli(["SET", "ap:req:contoso\nr-old", "later"]) == "OK")
        let pending = try #require(try await setup.load(.user(alice)).state)
        let expired = Rules.tick(user: pending, now: challenge.expiresAt)
        #expect(expired.state.ended.count == 1)
        #expect(try await setup.commit(expired) == .durable)
        #expect(try await setup.server.cli(["GET", "ap:req:contoso\nr-old"]) == "later")
        #expect(
            try await setup.server.cli(["EXISTS", "ap:{\(RedisStates.tag(alice.partition))}:c:\(challenge.id)"]) == "0")
        try await setup.stop()
    }

    /// A damaged index entry or record is an error for the request that reads it: never another user, a default,
    /// or a crash.
    @Test func aDamagedIndexEntryOrRecordIsAnError() async throws {
        let setup = try await StatesUnderTest()
        let registered = try await aliceWithAPhone(in: setup)
        let challenge = try await challenge("r-1", for: registered, at: Self.now, in: setup)
        let pending = try #require(try await setup.load(.user(alice)).state)
        #expect(try await setup.commit(try Rules.cancel(challenge.id, user: pending, now: Self.now + 10)) == .durable)
        let request = RequestKey(tenantID: "contoso", requestID: "r-1")
        // The request_id's key names alice, then bytes that are no record: every lookup that reads it fails.
        let tag = RedisStates.tag(alice.partition)
        #expect(try await setup.server.cli(["SET", "ap:req:contoso\nr-1", "\(tag)|contoso\nalice\nno record"]) == "OK")
        await #expect(throws: StoreError.self) { try await setup.load(.creation(alice, request)) }
        await #expect(throws: StoreError.self) { try await setup.load(.challenge(challenge.id)) }
        await #expect(throws: StoreError.self) {
            try await setup.load(.answer(deviceID: "phone-1", challengeID: challenge.id))
        }
        // An entry that names no partition or tenant.
        #expect(try await setup.server.cli(["SET", "ap:req:contoso\nr-1", "nonsense"]) == "OK")
        await #expect(throws: StoreError.self) { try await setup.load(.creation(alice, request)) }
        try await setup.stop()
    }

    /// A challenge that ends long after its expiry (its sweep delayed) is kept for a whole window after its end,
    /// its request_id's index too, which its creation set to last a window after the expiry only.
    @Test func aChallengeThatEndsLateIsKeptForAWholeWindowAfter() async throws {
        let setup = try await StatesUnderTest()
        let registered = try await aliceWithAPhone(in: setup)
        let challenge = try await challenge("r-late", for: registered, at: Self.now - 600_000, in: setup)
        let pending = try #require(try await setup.load(.user(alice)).state)
        #expect(try await setup.commit(Rules.tick(user: pending, now: Self.now)) == .durable)
        for key in ["ap:{\(RedisStates.tag(alice.partition))}:c:\(challenge.id)", "ap:req:contoso\nr-late"] {
            #expect(try await setup.server.cli(["PEXPIRETIME", key]) == String(Self.now + Rules.rememberMillis))
        }
        #expect(try await setup.load(.challenge(challenge.id)).state?.challenge(challenge.id)?.status == .expired)
        try await setup.stop()
    }

    /// The upgrade path from 0.17.0, the oldest release an instance may run beside: a state it (or a release before
    /// it) left in format 1, with its ended challenges inside and indexed in the partition's hash, is read as it is;
    /// its next commit writes format 3 and takes the ended challenges out of the hash (their windows have passed
    /// here, so no record is written for them).
    @Test func aStateWrittenBefore0_17IsReadAndItsNextCommitWritesFormat3() async throws {
        let setup = try await StatesUnderTest()
        let state = try UserStateCodecTests.eventfulState(traceparent: nil)
        let bytes = try #require(UserStateCodecTests.writtenBefore0_17[.original])
        let tag = RedisStates.tag(state.key.partition)
        let field = "contoso\nalice"
        let value = Array("\(state.version)|\(state.pendingCount)|\(state.queue.count)|".utf8) + bytes
        var written: [[[UInt8]]] = [[Array("SET".utf8), Array(RedisStates.stateKey(state.key).utf8), value]]
        for challenge in state.pending.map({ $0 }) + state.ended.map(\.challenge) {
            written.append(["HSET", "ap:{\(tag)}:ch", challenge.id, field].map { Array($0.utf8) })
        }
        for command in written {
            let result: Result<RedisValue, RedisError> = try await setup.tested.thread.wait {
                [client = setup.tested.client] done in client.value.send(command) { done($0) }
            }
            _ = try result.get()
        }
        let endedID = try #require(state.ended.first?.challenge.id)
        let read = try #require(try await setup.load(.user(alice)).state)
        #expect(read.ended.count == 3 && read.pending.count == 1)
        #expect(try await setup.load(.challenge(endedID)).state?.challenge(endedID)?.isPending == false)

        let next = try Rules.register(
            "tablet-3", registration([9]), policy: TenantPolicy(), registeredTo: nil, user: read,
            now: UserStateCodecTests.start + 100)
        #expect(try await setup.commit(next) == .durable)
        let after = try #require(try await setup.load(.user(alice)).state)
        #expect(after.ended.isEmpty && after.pending.count == 1 && after.devices.count == 3)
        // Its first byte after "<version>|<pending>|<queue entries>|" is the format.
        let counts = "\(after.version)|\(after.pendingCount)|\(after.queue.count)|"
        let stateKey = RedisStates.stateKey(alice)
        #expect(try await setup.server.cli(["GETRANGE", stateKey, "0", String(counts.utf8.count - 1)]) == counts)
        let offset = String(counts.utf8.count)
        #expect(try await setup.server.cli(["GETRANGE", stateKey, offset, offset]) == "\u{03}")
        #expect(try await setup.server.cli(["HLEN", "ap:{\(tag)}:ch"]) == "1", "the pending challenge alone")
        try await setup.stop()
    }

    @Test func dueUsersAreReadPerPartitionAndTheGaugesFollowCommits() async throws {
        let setup = try await StatesUnderTest()
        let bob = UserKey(tenantID: "fabrikam", userID: "bob")
        try #require(bob.partition != alice.partition)
        var random = SeededRandom(seed: 2)
        var expiries: [UserKey: UnixMillis] = [:]
        for (user, ttl) in [(alice, 10), (bob, 60)] {
            var device = registration()
            device.userID = user.userID
            let registered = try Rules.register(
                "phone-\(user.userID)", device, policy: TenantPolicy(), registeredTo: nil,
                user: UserState(key: user), now: Self.now)
            #expect(try await setup.commit(registered) == .durable)
            let stored = try #require(try await setup.load(.user(user)).state)
            let created = try Rules.create(
                ChallengeRequest(requestID: "r-\(user.userID)", userID: user.userID, number: 7, ttlSeconds: ttl),
                policy: TenantPolicy(), requestHeldBy: nil, user: stored, now: Self.now, random: &random)
            #expect(try await setup.commit(created) == .durable)
            expiries[user] = Self.now + UnixMillis(ttl) * 1000
        }
        func due(_ partitions: [Partition], at now: UnixMillis) async throws -> [UserKey] {
            let result: Result<[UserKey], StoreError> = try await setup.tested.thread.wait {
                [states = setup.states] done in
                states.value.dueUsers(in: partitions, now: now) { done($0) }
            }
            return try result.get()
        }
        func gauges() async throws -> Gauges {
            let result: Result<Gauges, StoreError> = try await setup.tested.thread.wait {
                [states = setup.states] done in
                states.value.gauges { done($0) }
            }
            return try result.get()
        }
        let aliceExpires = try #require(expiries[alice])
        #expect(try await due(Partition.all, at: aliceExpires - 1).isEmpty)
        #expect(try await due([alice.partition], at: aliceExpires) == [alice])
        #expect(try await due([bob.partition], at: aliceExpires).isEmpty)
        #expect(Set(try await due(Partition.all, at: try #require(expiries[bob]))) == [alice, bob])
        var before = try await gauges()
        #expect(before.pendingChallenges == 2 && before.queueDepth == 2)
        #expect(before.queueDepthByTenant == ["contoso": 1, "fabrikam": 1])
        // Alice's expiry, committed: she has no deadline left (the record of her challenge ends by itself); the
        // gauges drop.
        let aliceNow = try #require(try await setup.load(.user(alice)).state)
        let ticked = Rules.tick(user: aliceNow, now: aliceExpires)
        #expect(try await setup.commit(ticked) == .durable)
        // The index of partitions with deadlines still said alice's expiry; the look found nothing due and took
        // the partition out, its due set empty.
        let tag = RedisStates.tag(alice.partition)
        #expect(try await setup.server.cli(["ZSCORE", "ap:dueparts", tag]) == String(aliceExpires))
        #expect(try await due([alice.partition], at: aliceExpires).isEmpty)
        #expect(try await setup.server.cli(["ZSCORE", "ap:dueparts", tag]) == "")
        #expect(try await due(Partition.all, at: try #require(expiries[bob])) == [bob])
        before = try await gauges()
        #expect(before.pendingChallenges == 1 && before.queueDepthByTenant == ["fabrikam": 1])
        try await setup.stop()
    }

    /// The packed counts are split exactly at any size and below zero, the fields of version 10 (which stay as they
    /// were when this library replaced it) still count, and the forward queue is counted over every partition.
    @Test func theGaugesReadPackedCountsExactlyAndAddTheFieldsOfVersion10() async throws {
        let setup = try await StatesUnderTest()
        let fields = [
            // Version 10's: five pending, seven queue entries of contoso's.
            "pending", "5", "q:contoso", "7",
            // Since: one of those pending and two of those entries ended.
            "c:contoso", "-10000000002",
            // 900,000,000 pending and 4,999,999,999 entries: past what a double holds exactly, packed.
            "c:big", "9000000004999999999",
            // Three pending and two entries fewer.
            "c:mixed", "29999999998",
        ]
        #expect(try await setup.server.cli(["HSET", "ap:gauges"] + fields) == "5")
        // And a callback in the outbox of the last partition.
        #expect(try await setup.server.cli(["HSET", "ap:{1023}:out", "ch_x", "0|1|1|contoso||{}"]) == "1")
        let result: Result<Gauges, StoreError> = try await setup.tested.thread.wait {
            [states = setup.states] done in states.value.gauges { done($0) }
        }
        let gauges = try result.get()
        #expect(gauges.pendingChallenges == 5 - 1 + 900_000_000 + 3)
        #expect(gauges.queueDepthByTenant == ["contoso": 5, "big": 4_999_999_999, "mixed": -2])
        #expect(gauges.queueDepth == 5 + 4_999_999_999 - 2)
        #expect(gauges.forwardQueueDepth == 1)
        try await setup.stop()
    }

    @Test func aSavedPolicyIsReadBackAndAnnouncedToTheOtherInstances() async throws {
        let setup = try await StatesUnderTest()
        let announced = Locked<[String]>([])
        let listener = try ClientUnderTest(setup.server.url, subscribe: [RedisStates.policiesChannel]) { _, payload in
            announced.withLock { $0.append(String(decoding: payload, as: UTF8.self)) }
        }
        try await listener.waitUntilReady()
        var policy = TenantPolicy()
        policy.passwordless = false
        policy.target = .selected
        policy.users = ["alice", "bob ✓"]
        policy.maxDevicesPerUser = 2
        policy.challengeTTLSeconds = 45
        policy.choices = 5
        policy.maxPendingPerUser = 3
        policy.maxChallengesPerWindow = 9
        policy.windowSeconds = 77
        policy.lockoutSeconds = 300
        let saved: Result<Void, StoreError> = try await setup.tested.thread.wait {
            [states = setup.states, policy] done in
            states.value.savePolicy(policy, for: "contoso") { done($0) }
        }
        try saved.get()
        let loaded: Result<[String: TenantPolicy], StoreError> = try await setup.tested.thread.wait {
            [states = setup.states] done in states.value.loadPolicies { done($0) }
        }
        #expect(try loaded.get() == ["contoso": policy])
        #expect(await eventually { announced.withLock { $0 } == ["contoso"] })
        // A damaged value is an error naming the tenant, not a default policy.
        #expect(try await setup.server.cli(["HSET", "ap:policies", "fabrikam", "junk"]) == "1")
        let damaged: Result<[String: TenantPolicy], StoreError> = try await setup.tested.thread.wait {
            [states = setup.states] done in states.value.loadPolicies { done($0) }
        }
        #expect("\(damaged)".contains("the policy of fabrikam holds"))
        try await listener.stop()
        try await setup.stop()
    }

    @Test func theFunctionsAreLoadedOnceAndANewerLibraryIsNotReplaced() async throws {
        let setup = try await StatesUnderTest()
        // An older library is replaced.
        let older = FunctionLibrary.source.replacingOccurrences(
            of: "local LIBRARY_VERSION = \(FunctionLibrary.version)\n", with: "local LIBRARY_VERSION = 11\n")
        #expect(try await setup.server.cli(["FUNCTION", "LOAD", "REPLACE", older]) == "approvald")
        #expect(try await setup.server.cli(["FCALL", "approvald_version", "0"]) == "11")
        let again: Result<Void, StoreError> = try await setup.tested.thread.wait {
            [client = setup.tested.client] done in
            RedisStates.installFunctions(on: client.value) { done($0) }
        }
        try again.get()
        #expect(try await setup.server.cli(["FCALL", "approvald_version", "0"]) == String(FunctionLibrary.version))
        // A later release's library.
        let newer = FunctionLibrary.source.replacingOccurrences(
            of: "local LIBRARY_VERSION = \(FunctionLibrary.version)\n", with: "local LIBRARY_VERSION = 99\n")
        #expect(try await setup.server.cli(["FUNCTION", "LOAD", "REPLACE", newer]) == "approvald")
        let refused: Result<Void, StoreError> = try await setup.tested.thread.wait {
            [client = setup.tested.client] done in
            RedisStates.installFunctions(on: client.value) { done($0) }
        }
        #expect(throws: StoreError.self) { try refused.get() }
        #expect("\(refused)".contains("version 99, newer than this release's \(FunctionLibrary.version)"))
        try await setup.stop()
    }
}
