// The store over a real Redis: the forwarder's outcomes gathered for a moment go to Redis in one call, a full batch
// goes at once, and a stop stores what was gathered before the connections close (or, with Redis not answering,
// tells those outcomes they failed and closes all the same), taking nothing new meanwhile; after a reconnect, every
// stream is routed here again in short calls before the streams are told to read again.
import Core
import Foundation
import Locking
import Logging
import Redis
import Store
import TestSupport
import Testing

@testable import RedisStore

@Suite(.serialized) struct RedisStoreTests {
    @Test func outcomesGatheredTogetherGoInOneCallAndAStopStoresThemFirst() async throws {
        let setup = try await StatesUnderTest()
        let outboxTests = RedisOutboxTests()
        let alice = try await outboxTests.pendingWithCallback(
            UserKey(tenantID: "contoso", userID: "alice"), due: RedisOutboxTests.now, in: setup)
        let bob = try await outboxTests.pendingWithCallback(
            UserKey(tenantID: "contoso", userID: "bob"), due: RedisOutboxTests.now, in: setup)
        func callbacks() async throws -> Int {
            var total = 0
            for partition in Set([alice.partition, bob.partition]) {
                total += Int(try await setup.server.cli(["HLEN", RedisOutbox.outboxKey(partition)])) ?? -1
            }
            return total
        }
        #expect(try await callbacks() == 2)

        let (thread, store) = try await Self.storeGatheringForAMinute(on: setup)
        _ = try await setup.server.cli(["CONFIG", "SET", "slowlog-log-slower-than", "0"])
        _ = try await setup.server.cli(["SLOWLOG", "RESET"])

        // Two acknowledgements, each committed on its own: neither is in Redis yet, nor told it is.
        let told = Locked<[Bool]>([])
        try await thread.run {
            for entry in [alice, bob] {
                let acknowledged = Commit(state: nil, changes: [], outbox: [.delivered(challengeID: entry.challengeID)])
                store.value.commit(acknowledged) { result in told.withLock { $0.append(result == .durable) } }
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(told.withLock { $0 }.isEmpty)
        #expect(try await callbacks() == 2)

        // The stop stores both, in one call, then closes.
        let closed: Bool = try await thread.wait { done in store.value.close { done(true) } }
        #expect(closed)
        #expect(told.withLock { $0 } == [true, true])
        #expect(try await callbacks() == 0)
        let calls = try await setup.server.cli(["SLOWLOG", "GET", "1000"])
        #expect(calls.components(separatedBy: "approvald_outbox").count - 1 == 1)
        thread.stop()
        try await setup.stop()
    }

    @Test func aFullBatchOfOutcomesGoesAtOnce() async throws {
        let setup = try await StatesUnderTest()
        let (thread, store) = try await Self.storeGatheringForAMinute(on: setup)
        // 63 outcomes wait for the minute; the 64th sends all of them (callbacks no longer there change nothing).
        let told = Locked(0)
        try await thread.run {
            for index in 1...63 {
                let acknowledged = Commit(
                    state: nil, changes: [], outbox: [.delivered(challengeID: Self.unknownCallback(index))])
                store.value.commit(acknowledged) { _ in told.withLock { $0 += 1 } }
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(told.withLock { $0 } == 0)
        let last: CommitResult = try await thread.wait { done in
            store.value.commit(
                Commit(state: nil, changes: [], outbox: [.delivered(challengeID: Self.unknownCallback(64))])
            ) {
                done($0)
            }
        }
        #expect(last == .durable)
        #expect(told.withLock { $0 } == 63)
        let closed: Bool = try await thread.wait { done in store.value.close { done(true) } }
        #expect(closed)
        thread.stop()
        try await setup.stop()
    }

    @Test func aStopWhileRedisDoesNotAnswerStillClosesAndTellsTheGatheredOutcomesTheyFailed() async throws {
        let setup = try await StatesUnderTest()
        let (thread, store) = try await Self.storeGatheringForAMinute(on: setup)
        let told = Locked<[Bool]>([])
        try await thread.run {
            let acknowledged = Commit(
                state: nil, changes: [], outbox: [.delivered(challengeID: Self.unknownCallback(1))])
            store.value.commit(acknowledged) { result in told.withLock { $0.append(result == .durable) } }
        }
        // Redis stops answering: the stop's call for the gathered outcome runs into the command timeout (1 s), and
        // the store closes all the same.
        setup.server.freeze()
        let started = Date()
        let closedAt = Locked<Date?>(nil)
        try await thread.run { store.value.close { closedAt.withLock { $0 = Date() } } }
        // Meanwhile the store takes nothing new (an outcome would wait for a batch that never goes), and a second
        // stop is told at once.
        let during: CommitResult = try await thread.wait { done in
            store.value.commit(
                Commit(state: nil, changes: [], outbox: [.delivered(challengeID: Self.unknownCallback(2))])
            ) { done($0) }
        }
        #expect(during == .failed(StoreError("the Redis store is not open")))
        let again: Bool = try await thread.wait { done in store.value.close { done(true) } }
        #expect(again && closedAt.withLock { $0 } == nil)
        #expect(await eventually(timeout: 5) { closedAt.withLock { $0 } != nil })
        #expect(try #require(closedAt.withLock { $0 }).timeIntervalSince(started) < 5)
        #expect(told.withLock { $0 } == [false])
        setup.server.thaw()
        thread.stop()
        try await setup.stop()
    }

    /// After the subscriber's connection comes back, every stream held here is routed here again (in calls of at most
    /// 100 devices, so that no call keeps Redis long), and only then are the streams told to read again.
    @Test func aReconnectRoutesEveryStreamAgainInShortCallsThenResyncs() async throws {
        let setup = try await StatesUnderTest()
        let (thread, store) = try await Self.storeGatheringForAMinute(on: setup)
        final class ResyncCounter: DeliverySink, @unchecked Sendable {
            let resyncs = Locked(0)
            func deliver(_ delivery: Delivery, committedHere: Bool) {}
            func resync() { resyncs.withLock { $0 += 1 } }
        }
        let sink = ResyncCounter()
        let devices = (0..<250).map { "phone-\($0)" }
        let routed = Locked(0)
        try await thread.run {
            store.value.sink = sink
            for device in devices { store.value.streamOpened(deviceID: device) { routed.withLock { $0 += 1 } } }
        }
        #expect(await eventually(timeout: 5) { routed.withLock { $0 } == devices.count })
        func routes() async throws -> Int {
            Int(try await setup.server.cli(["EVAL", "return #redis.call('KEYS', 'ap:route:*')", "0"])) ?? -1
        }
        #expect(try await routes() == devices.count)
        // The routes lapse, and the subscriber's connection drops.
        _ = try await setup.server.cli([
            "EVAL", "for _, key in ipairs(redis.call('KEYS', 'ap:route:*')) do redis.call('DEL', key) end", "0",
        ])
        // The slow log keeps every call from here, and the commands inside them.
        _ = try await setup.server.cli(["CONFIG", "SET", "slowlog-max-len", "10000"])
        _ = try await setup.server.cli(["CONFIG", "SET", "slowlog-log-slower-than", "0"])
        _ = try await setup.server.cli(["SLOWLOG", "RESET"])
        _ = try await setup.server.cli(["CLIENT", "KILL", "TYPE", "pubsub"])
        #expect(await eventually(timeout: 10) { sink.resyncs.withLock { $0 } == 1 })
        #expect(try await routes() == devices.count)
        let calls = try await setup.server.cli(["SLOWLOG", "GET", "10000"])
        #expect(calls.components(separatedBy: "approvald_route_streams").count - 1 == 3)
        let closed: Bool = try await thread.wait { done in store.value.close { done(true) } }
        #expect(closed)
        thread.stop()
        try await setup.stop()
    }

    /// A challenge id in partition 0 that no callback has.
    private static func unknownCallback(_ index: Int) -> String {
        "ch_AA" + String(repeating: "0", count: 18) + "\(index + 10)"
    }

    /// A store over the setup's Redis whose outcomes wait longer than any test: a full batch or a stop sends them.
    private static func storeGatheringForAMinute(
        on setup: StatesUnderTest
    ) async throws -> (LoopThread, UncheckedBox<RedisStore>) {
        let thread = try LoopThread()
        var settings = RedisStore.Settings(url: try RedisURL(parsing: setup.server.url), instanceID: "batching")
        settings.outboxBatchSeconds = 60
        var logger = Logger(label: "test-redis-store")
        logger.logLevel = .critical
        let store = UncheckedBox(
            RedisStore(
                settings: settings, loop: thread.loop, configuredPolicies: [:], clock: { RedisOutboxTests.now },
                logger: logger))
        let opened: Result<Void, StoreError> = try await thread.wait { done in store.value.open { done($0) } }
        try opened.get()
        return (thread, store)
    }
}
