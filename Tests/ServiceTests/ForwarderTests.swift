// Results to the verifier, in process: the callback's exact headers and body, retries timed by an injected clock
// (no sleeping through backoffs), dead letters for a refusal and after 24 h, and the outbox in a real store.
import Core
import Crypto
import Dispatch
import Foundation
import HTTP
import Locking
import Store
import TestSupport
import Testing

@testable import Service

/// Time that moves only when told to.
final class ManualClock: Sendable {
    private let now = Locked(UnixMillis(Date().timeIntervalSince1970 * 1000))
    var millis: UnixMillis { now.withLock { $0 } }
    func advance(by millis: UnixMillis) { now.withLock { $0 += millis } }
}

@Suite struct RetryScheduleTests {
    @Test func doublesFromOneSecondToSixtyWithJitterInTheUpperHalf() {
        var random = SeededRandom(seed: 11)
        let ceilings: [UnixMillis] = [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]
        for (index, ceiling) in ceilings.enumerated() {
            let delays = (0..<200).map { _ in RetrySchedule.delayMillis(afterFailures: index + 1, using: &random) }
            #expect(delays.allSatisfy { (ceiling / 2...ceiling).contains($0) }, "after \(index + 1) failures")
            // Jitter: the delays spread over the range instead of all being one value.
            #expect(Set(delays).count > 100)
        }
        #expect([408, 429, 500, 502, 503, 599].allSatisfy(RetrySchedule.isRetryable))
        #expect(![200, 301, 400, 401, 403, 404, 409, 410, 422].contains(where: RetrySchedule.isRetryable))
    }
}

@Suite struct ForwarderTests {
    struct Setup {
        let broker: InProcessBroker
        let verifier: RecordingServer
        let clock: ManualClock
        let directory: String

        func stop() {
            broker.stop()
            verifier.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }

        /// Registers a device for `user`, creates a challenge and cancels it: its result goes to the verifier.
        func endAChallenge(_ requestID: String, user: String = "alice") async throws -> String {
            let key = try P256PrivateKey()
            _ = try await broker.idp(
                "PUT", "/v1/tenants/contoso/devices/phone-\(requestID)", InProcessBroker.registration(user, key))
            let created = try await broker.idp(
                "POST", "/v1/tenants/contoso/challenges",
                "{\"request_id\":\"\(requestID)\",\"user_id\":\"\(user)\",\"number\":42,\"context\":{\"app\":\"Outlook\"}}"
            )
            let id = (try JSONSerialization.jsonObject(with: Data(created.body)) as? [String: Any])?["challenge_id"]
            let challengeID = try #require(id as? String)
            #expect(try await broker.idp("DELETE", "/v1/tenants/contoso/challenges/\(challengeID)").status == 200)
            return challengeID
        }

        func forwarder<Value: Sendable>(_ read: @escaping @Sendable (Forwarder) -> Value) async throws -> Value {
            try await broker.onLoop { read($0.forwarder) }
        }
    }

    func setUp(
        verifierStatus: Int = 200, forwarding: Forwarder.Settings = Forwarder.Settings(),
        directory: String = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-fw-\(UUID())")
            .path,
        wrap: @escaping @Sendable (EmbeddedStore) -> StoreRoles = { StoreRoles($0) }
    ) async throws -> Setup {
        let verifier = try RecordingServer(status: verifierStatus)
        let clock = ManualClock()
        let broker = try await InProcessBroker(
            verifierURL: verifier.url, clock: { clock.millis }, forwarding: forwarding, wrap: wrap
        ) { loop in
            // swift-format-ignore: NeverUseForceTry
            try! SQLiteJournal(directory: directory) { work in loop.execute(work) }
        }
        return Setup(broker: broker, verifier: verifier, clock: clock, directory: directory)
    }

    /// Results already in the outbox of the store in `directory` (as after an outage), alternating between
    /// partitions 0 and 1.
    func storeBacklog(_ count: Int, named prefix: String, in directory: String) throws -> [OutboxEntry] {
        let backlog = (0..<count).map { index in
            OutboxEntry(
                challengeID: "\(prefix)\(index)", tenantID: "contoso", partition: Partition(index % 2),
                body: "{\"n\":\(index)}", endedAt: ManualClock().millis)
        }
        let store = try SQLiteJournal(directory: directory) { $0() }
        defer { store.close() }
        let done = DispatchSemaphore(value: 0)
        store.commit([], outbox: backlog.map(OutboxChange.enqueue)) { _ in done.signal() }
        guard done.wait(timeout: .now() + 10) == .success else {
            throw TestFailure(description: "the backlog was not committed within 10 s")
        }
        return backlog
    }

    @Test func aCallbackCarriesTheSignedResultOnce() async throws {
        let setup = try await setUp()
        defer { setup.stop() }
        let challengeID = try await setup.endAChallenge("r-1")
        #expect(await eventually { setup.verifier.received.count == 1 })
        let callback = setup.verifier.received[0]
        #expect(callback.method == "POST" && callback.path == "/approvald/results")
        #expect(callback.headers["idempotency-key"] == challengeID)
        #expect(callback.headers["content-type"] == "application/json")
        // The signature is the IdP client's, over this exact body.
        let signature = try #require(callback.headers["approvald-signature"])
        let fields = Dictionary(
            uniqueKeysWithValues: signature.split(separator: ",").map {
                let pair = $0.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                return (String(pair[0]), String(pair[1]))
            })
        #expect(fields["key"] == "k")
        let mac = HMACSHA256.authenticationCode(
            key: InProcessBroker.secret,
            message: Array("\(fields["t"] ?? "")\nPOST\n/approvald/results\n".utf8) + callback.body)
        #expect(fields["v1"] == mac.map { String(format: "%02x", $0) }.joined())
        let body = callback.json
        #expect(body["type"] as? String == "challenge.resolved" && body["tenant_id"] as? String == "contoso")
        #expect(body["request_id"] as? String == "r-1" && body["challenge_id"] as? String == challengeID)
        #expect(body["user_id"] as? String == "alice" && body["outcome"] as? String == "cancelled")
        #expect(body["reason"] as? String == "cancelled" && body["decision"] is NSNull && body["device_id"] is NSNull)
        #expect((body["resolved_at"] as? String)?.hasSuffix("Z") == true)
        // Acknowledged: out of the outbox, counted once, nothing sent again.
        #expect(try await eventually { try await setup.broker.onLoop { $0.gauges.forwardQueueDepth } == 0 })
        #expect(try await setup.forwarder { $0.attempts["delivered"] } == 1)
        #expect(try await setup.forwarder { $0.latency.count } == 1)
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(setup.verifier.received.count == 1)
    }

    @Test func aBacklogLargerThanTheWindowIsReadPageByPageUntilEmpty() async throws {
        // 30 results already in the outbox when the broker starts, as after an outage; 3 in memory at a time.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-fw-\(UUID())").path
        let backlog = try storeBacklog(30, named: "ch_backlog_", in: directory)
        var small = Forwarder.Settings()
        small.window = 3
        small.maxInFlightPerVerifier = 1
        // A slow verifier: pages are read while callbacks are still in flight, so the window fills mid-page.
        let verifier = try RecordingServer()
        verifier.delay(0.005)
        defer { verifier.stop() }
        let broker = try await InProcessBroker(verifierURL: verifier.url, forwarding: small) { loop in
            // swift-format-ignore: NeverUseForceTry
            try! SQLiteJournal(directory: directory) { work in loop.execute(work) }
        }
        defer {
            broker.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }
        #expect(await eventually { verifier.received.count == 30 })
        #expect(Set(verifier.received.compactMap { $0.headers["idempotency-key"] }) == Set(backlog.map(\.challengeID)))
        #expect(try await eventually { try await broker.onLoop { $0.forwarder.attempts["delivered"] } == 30 })
    }

    @Test func aForwarderReadsTheCallbacksOfItsPartitionsOnlyAndSendsWhatItsInstanceEnds() async throws {
        // Ten results in partition 0 and ten in partition 1 wait in the outbox; this forwarder has partition 0.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-fw-\(UUID())").path
        let backlog = try storeBacklog(20, named: "ch_part_", in: directory)
        let alice = UserKey(tenantID: "contoso", userID: "alice").partition
        try #require(alice != Partition(0))
        let setup = try await setUp(directory: directory) {
            SharedStoreDouble($0, forwarding: [Partition(0)], hold: 0).roles
        }
        defer { setup.stop() }
        // A result this instance ends, in alice's partition: its own to send, whoever forwards the partition.
        let ended = try await setup.endAChallenge("r-9")
        #expect(try await eventually { try await setup.forwarder { $0.attempts["delivered"] } == 11 })
        try await Task.sleep(nanoseconds: 300_000_000)
        let sent = Set(setup.verifier.received.compactMap { $0.headers["idempotency-key"] })
        #expect(sent == Set(backlog.filter { $0.partition == Partition(0) }.map(\.challengeID) + [ended]))
        #expect(try await setup.broker.onLoop { $0.gauges.forwardQueueDepth } == 10)
    }

    @Test func aCallbackItsInstanceEndsIsSentAtOnceAndHeldFromOtherInstancesReads() async throws {
        // A shared store where other instances forward every partition, and leave a new callback to its committer.
        let store = Locked<SharedStoreDouble?>(nil)
        let setup = try await setUp { inner in
            let made = SharedStoreDouble(inner)
            store.withLock { $0 = made }
            return made.roles
        }
        defer { setup.stop() }
        let challengeID = try await setup.endAChallenge("r-held")
        #expect(await eventually { setup.verifier.received.count == 1 })
        #expect(setup.verifier.received.first?.headers["idempotency-key"] == challengeID)
        let enqueued = try #require(store.withLock { $0?.enqueued.first })
        #expect(enqueued.challengeID == challengeID)
        #expect(enqueued.nextAttemptAt == enqueued.endedAt + SharedStoreDouble.hold)
        #expect(try await eventually { try await setup.forwarder { $0.attempts["delivered"] } == 1 })
    }

    @Test func aCallbackThatWouldWaitForAVerifierSlotIsLeftToItsPartitionsForwarder() async throws {
        var narrow = Forwarder.Settings()
        narrow.maxInFlightPerVerifier = 1
        // A shared store where this instance forwards every partition.
        let setup = try await setUp(forwarding: narrow) { SharedStoreDouble($0, forwarding: Partition.all).roles }
        defer { setup.stop() }
        func sent() -> [String] { setup.verifier.received.compactMap { $0.headers["idempotency-key"] } }
        setup.verifier.delay(0.5)
        let first = try await setup.endAChallenge("r-first")
        let second = try await setup.endAChallenge("r-second")
        #expect(try await eventually { try await setup.forwarder { $0.attempts["delivered"] } == 1 })
        // The slot is free again, but the second callback did not queue for it: the store holds it until its hold
        // ends, when the partition's forwarder (here, this one) reads it.
        try await setup.forwarder { $0.pump() }
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(sent() == [first])
        setup.verifier.delay(0)
        setup.clock.advance(by: SharedStoreDouble.hold)
        try await setup.forwarder { $0.pump() }
        #expect(await eventually { sent() == [first, second] })
        #expect(try await eventually { try await setup.forwarder { $0.attempts["delivered"] } == 2 })
    }

    @Test func failuresAreRetriedWhenDueByTheClockThenDelivered() async throws {
        let setup = try await setUp()
        defer { setup.stop() }
        setup.verifier.answer([503, 429], then: 200)
        let challengeID = try await setup.endAChallenge("r-2")
        #expect(await eventually { setup.verifier.received.count == 1 })
        #expect(try await eventually { try await setup.forwarder { $0.attempts["retry"] } == 1 })
        // Not due yet: a pump sends nothing.
        try await setup.forwarder { $0.pump() }
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(setup.verifier.received.count == 1)
        // The first retry falls due within 1 s, the second within 2 s after it.
        setup.clock.advance(by: 1000)
        try await setup.forwarder { $0.pump() }
        #expect(await eventually { setup.verifier.received.count == 2 })
        #expect(try await eventually { try await setup.forwarder { $0.attempts["retry"] } == 2 })
        setup.clock.advance(by: 2000)
        try await setup.forwarder { $0.pump() }
        #expect(try await eventually { try await setup.forwarder { $0.attempts["delivered"] } == 1 })
        #expect(
            setup.verifier.received.map { $0.headers["idempotency-key"] } == Array(repeating: challengeID, count: 3))
        #expect(try await eventually { try await setup.broker.onLoop { $0.gauges.forwardQueueDepth } == 0 })
    }

    @Test func aVerifierTooSlowToAnswerIsTimedOutAndTriedAgain() async throws {
        var quick = Forwarder.Settings()
        quick.timeoutSeconds = 0.2
        let setup = try await setUp(forwarding: quick)
        defer { setup.stop() }
        setup.verifier.delay(1)
        _ = try await setup.endAChallenge("r-slow")
        #expect(try await eventually { try await setup.forwarder { $0.attempts["retry"] } == 1 })
        #expect(try await setup.forwarder { $0.attempts["delivered"] } == 0)
        setup.verifier.delay(0)
        setup.clock.advance(by: 1000)
        try await setup.forwarder { $0.pump() }
        #expect(try await eventually { try await setup.forwarder { $0.attempts["delivered"] } == 1 })
        #expect(try await eventually { try await setup.broker.onLoop { $0.gauges.forwardQueueDepth } == 0 })
    }

    @Test func aRefusalAndTwentyFourHoursOfFailuresMakeDeadLetters() async throws {
        let setup = try await setUp()
        defer { setup.stop() }
        setup.verifier.answer([400], then: 503)
        let refused = try await setup.endAChallenge("r-3")
        #expect(try await eventually { try await setup.forwarder { $0.attempts["dead_letter"] } == 1 })
        let letters = try await setup.broker.idp("GET", "/v1/tenants/contoso/dead-letters")
        #expect(letters.status == 200)
        let list = try #require(
            (try JSONSerialization.jsonObject(with: Data(letters.body)) as? [String: Any])?["dead_letters"]
                as? [[String: Any]])
        #expect(list.count == 1 && list.first?["challenge_id"] as? String == refused)
        #expect(list.first?["status"] as? Int == 400 && list.first?["attempts"] as? Int == 1)
        #expect((list.first?["callback"] as? [String: Any])?["request_id"] as? String == "r-3")
        #expect(try await setup.broker.idp("GET", "/v1/tenants/contoso/dead-letters?limit=0").status == 400)
        #expect(try await setup.broker.idp("GET", "/v1/tenants/fabrikam/dead-letters").status == 403)

        // A verifier failing for a day: retried while the day lasts, then given up.
        let failing = try await setup.endAChallenge("r-4")
        #expect(try await eventually { try await setup.forwarder { $0.attempts["retry"] } == 1 })
        setup.clock.advance(by: RetrySchedule.periodMillis)
        try await setup.forwarder { $0.pump() }
        #expect(try await eventually { try await setup.forwarder { $0.attempts["dead_letter"] } == 2 })
        // Out of the queue once the dead letter is stored, a moment after it is counted.
        #expect(try await eventually { try await setup.broker.onLoop { $0.gauges.forwardQueueDepth } == 0 })
        let last = try #require(setup.verifier.received.last)
        #expect(last.headers["idempotency-key"] == failing)
    }
}

/// The embedded store, as if it were shared: other instances forward every partition but `forwarded`, and a new
/// callback is held for its committer for `hold`; it keeps the callbacks commits enqueue.
final class SharedStoreDouble: DelegatingStates, InstanceMembership, @unchecked Sendable {
    static let hold: UnixMillis = 15_000
    private(set) var enqueued: [OutboxEntry] = []
    private let forwarded: [Partition]
    private let hold: UnixMillis
    init(_ inner: EmbeddedStore, forwarding forwarded: [Partition] = [], hold: UnixMillis = SharedStoreDouble.hold) {
        self.forwarded = forwarded
        self.hold = hold
        super.init(inner)
    }
    override var roles: StoreRoles {
        var roles = super.roles
        roles.membership = self
        return roles
    }
    var forwardingPartitions: [Partition] { forwarded }
    var committerHoldMillis: UnixMillis { hold }
    override func commit(_ commit: Commit, completion: @escaping (CommitResult) -> Void) {
        for case .enqueue(let entry) in commit.outbox { enqueued.append(entry) }
        super.commit(commit, completion: completion)
    }
}
