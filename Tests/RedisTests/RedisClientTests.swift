import EventLoop
// The client against a real redis-server of the test's own: replies, pipelining, login, timeouts, and what happens
// when the server is killed, restarted or frozen.
import Foundation
import Locking
import Logging
import TestSupport
import Testing

@testable import Redis

/// A client on a loop thread of its own, with its connection events counted.
final class ClientUnderTest: Sendable {
    let thread: LoopThread
    let client: UncheckedBox<RedisClient>
    let readied = Locked(0)
    let lost = Locked<[RedisError]>([])

    /// With `subscribe`, a subscriber to those channels whose messages go to `onMessage`.
    init(
        _ url: String, options: RedisClient.Options = RedisClient.Options(), subscribe channels: [String]? = nil,
        onMessage: @escaping @Sendable (String, [UInt8]) -> Void = { _, _ in }
    ) throws {
        thread = try LoopThread()
        var logger = Logger(label: "test-redis")
        logger.logLevel = .critical
        let client = RedisClient(url: try RedisURL(parsing: url), loop: thread.loop, options: options, logger: logger)
        self.client = UncheckedBox(client)
        let (readied, lost) = (readied, lost)
        client.onReady = { readied.withLock { $0 += 1 } }
        client.onLost = { error in lost.withLock { $0.append(error) } }
        thread.loop.execute { [client = self.client] in
            if let channels { client.value.subscribe(to: channels, onMessage: onMessage) }
            client.value.start()
        }
    }

    func stop() async throws {
        try await thread.run { [client] in client.value.close() }
        thread.stop()
    }

    func send(_ arguments: [String]) async throws -> Result<RedisValue, RedisError> {
        try await thread.wait { [client] done in client.value.send(arguments) { done($0) } }
    }

    /// Sends on the loop and returns the result only if it came before `send` returned: "at once", whatever the
    /// machine's (or a sanitizer's) latency.
    func sendAnsweredAtOnce(_ arguments: [String]) async throws -> Result<RedisValue, RedisError>? {
        try await thread.run { [client] in
            var answer: Result<RedisValue, RedisError>?
            client.value.send(arguments) { answer = $0 }
            return answer
        }
    }

    var isReady: Bool { get async throws { try await thread.run { [client] in client.value.isReady } } }

    /// A client of `server` with the options `configure` sets, once it is ready.
    static func ready(
        on server: RedisServer, subscribe channels: [String]? = nil, _ configure: (inout RedisClient.Options) -> Void
    ) async throws -> ClientUnderTest {
        var options = RedisClient.Options()
        configure(&options)
        let tested = try ClientUnderTest(server.url, options: options, subscribe: channels)
        try await tested.waitUntilReady()
        return tested
    }

    func waitUntilReady(timeout: Double = 10) async throws {
        guard try await eventually(timeout: timeout, { try await isReady }) else {
            throw TestFailure(description: "the client did not become ready")
        }
    }
}

/// One test at a time: each starts a redis-server, and a dozen at once would starve the other suites' timing.
@Suite(.serialized) struct RedisClientTests {
    @Test func repliesComeBackAsValues() async throws {
        let server = try await RedisServer.start()
        let tested = try ClientUnderTest(server.url)
        try await tested.waitUntilReady()
        #expect(try await tested.send(["SET", "greeting", "hello"]) == .success(.status("OK")))
        #expect(try await tested.send(["GET", "greeting"]) == .success(.bulk(Array("hello".utf8))))
        #expect(try await tested.send(["GET", "missing"]) == .success(.null))
        #expect(try await tested.send(["INCRBY", "n", "41"]) == .success(.integer(41)))
        #expect(try await tested.send(["RPUSH", "l", "a", "", "c"]) == .success(.integer(3)))
        #expect(
            try await tested.send(["LRANGE", "l", "0", "-1"])
                == .success(.array([.bulk([0x61]), .bulk([]), .bulk([0x63])])))
        guard case .success(.error(let message)) = try await tested.send(["INCR", "greeting"]) else {
            Issue.record("an error reply is not a value")
            return
        }
        #expect(message.contains("not an integer"))
        // Binary arguments go through as they are.
        let bytes: [UInt8] = [0, 255, 10, 13, 0]
        let stored: Result<RedisValue, RedisError> = try await tested.thread.wait { [client = tested.client] done in
            client.value.send([Array("SET".utf8), Array("bin".utf8), bytes]) { _ in
                client.value.send(["GET", "bin"]) { done($0) }
            }
        }
        #expect(stored == .success(.bulk(bytes)))
        try await tested.stop()
        #expect(tested.readied.withLock { $0 } == 1)
    }

    @Test func commandsSentInOneTurnArePipelinedAndAnsweredInOrder() async throws {
        let server = try await RedisServer.start()
        let tested = try ClientUnderTest(server.url)
        try await tested.waitUntilReady()
        let replies: [Int64] = try await tested.thread.wait { [client = tested.client] done in
            var values: [Int64] = []
            for _ in 0..<1000 {
                client.value.send(["INCR", "counter"]) { result in
                    if case .success(.integer(let value)) = result { values.append(value) } else { values.append(-1) }
                    if values.count == 1000 { done(values) }
                }
            }
        }
        #expect(replies == Array(1...1000))
        // One connection carried them all: the client's and redis-cli's own are the server's only ones.
        #expect(try await server.cli(["INFO", "clients"]).contains("connected_clients:2"))
        try await tested.stop()
    }

    /// A write the socket does not take whole (far more than its buffer) goes on as the socket drains, while the
    /// replies to what went before it are read; what was sent after it, and from those replies, comes back in order.
    @Test func aWriteLargerThanTheSocketTakesFinishesAndWhatFollowsIsAnsweredInOrder() async throws {
        let server = try await RedisServer.start()
        let tested = try await ClientUnderTest.ready(on: server) { $0.commandTimeoutSeconds = 30 }
        let large = [UInt8](repeating: 0x61, count: 32 << 20)
        let replies: [RedisValue] = try await tested.thread.wait { [client = tested.client] done in
            var replies: [RedisValue] = []
            func collect(_ result: Result<RedisValue, RedisError>) {
                replies.append((try? result.get()) ?? .error("\(result)"))
                if replies.count == 4 { done(replies) }
            }
            client.value.send(["INCR", "before"]) { result in
                collect(result)
                // Sent from a reply, while the large write is still going on: it goes out behind it.
                client.value.send(["STRLEN", "large"], completion: collect)
            }
            client.value.send([Array("SET".utf8), Array("large".utf8), large], completion: collect)
            client.value.send(["INCR", "after"], completion: collect)
        }
        #expect(replies == [.integer(1), .status("OK"), .integer(1), .integer(Int64(large.count))])
        #expect(try await tested.send(["GET", "after"]) == .success(.bulk(Array("1".utf8))))
        try await tested.stop()
        #expect(tested.readied.withLock { $0 } == 1)
    }

    @Test func commandsPastTheInFlightBoundFailAtOnce() async throws {
        let server = try await RedisServer.start()
        let tested = try await ClientUnderTest.ready(on: server) { $0.maxInFlight = 10 }
        let outcomes: [String] = try await tested.thread.wait { [client = tested.client] done in
            var outcomes: [String] = []
            for _ in 0..<15 {
                client.value.send(["INCR", "n"]) { result in
                    switch result {
                    case .success(.integer): outcomes.append("ok")
                    case .failure(.unavailable(let why)) where why.contains("10 commands already wait"):
                        outcomes.append("refused")
                    default: outcomes.append("\(result)")
                    }
                    if outcomes.count == 15 { done(outcomes) }
                }
            }
        }
        // The refusals come at once, before any reply.
        #expect(outcomes == Array(repeating: "refused", count: 5) + Array(repeating: "ok", count: 10))
        #expect(try await tested.send(["GET", "n"]) == .success(.bulk(Array("10".utf8))))
        try await tested.stop()
    }

    @Test func logsInAndSelectsTheDatabaseOfTheURL() async throws {
        let server = try await RedisServer.start(password: "s3cret")
        let tested = try ClientUnderTest("redis://:s3cret@127.0.0.1:\(server.port)/3")
        try await tested.waitUntilReady()
        #expect(try await tested.send(["SET", "where", "db3"]) == .success(.status("OK")))
        #expect(try await server.cli(["-n", "3", "GET", "where"]) == "db3")
        #expect(try await server.cli(["-n", "0", "GET", "where"]).isEmpty)
        try await tested.stop()
    }

    @Test func aRefusedPasswordKeepsTheClientUnreadyAndCommandsFailAtOnce() async throws {
        let server = try await RedisServer.start(password: "s3cret")
        let tested = try ClientUnderTest("redis://:wrong@127.0.0.1:\(server.port)")
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(try await tested.isReady == false)
        guard case .failure(.unavailable)? = try await tested.sendAnsweredAtOnce(["PING"]) else {
            Issue.record("a command went through without a login, or waited")
            return
        }
        #expect(tested.readied.withLock { $0 } == 0)
        try await tested.stop()
    }

    @Test func aCommandWithoutAReplyTimesOutAndTheClientReconnects() async throws {
        let server = try await RedisServer.start()
        let tested = try await ClientUnderTest.ready(on: server) { $0.commandTimeoutSeconds = 0.2 }
        let (slow, behind): (Result<RedisValue, RedisError>, Result<RedisValue, RedisError>) =
            try await tested.thread.wait { [client = tested.client] done in
                var first: Result<RedisValue, RedisError>?
                client.value.send(["DEBUG", "SLEEP", "1"]) { first = $0 }
                client.value.send(["PING"]) { second in done((first!, second)) }
            }
        #expect(slow == .failure(.timedOut(seconds: 0.2)))
        guard case .failure(.unavailable) = behind else {
            Issue.record("the command behind the timed-out one got \(behind)")
            return
        }
        #expect(tested.lost.withLock { $0 } == [.timedOut(seconds: 0.2)])
        // The client dropped that connection and makes new ones by itself; once the server wakes up one serves.
        #expect(try await eventually(timeout: 5) { try await tested.send(["PING"]) == .success(.status("PONG")) })
        #expect(tested.readied.withLock { $0 } >= 2)
        try await tested.stop()
    }

    @Test func aKilledServerFailsCommandsAtOnceAndTheClientComesBackWithIt() async throws {
        let server = try await RedisServer.start()
        let tested = try ClientUnderTest(server.url)
        try await tested.waitUntilReady()
        #expect(try await tested.send(["SET", "kept", "yes"]) == .success(.status("OK")))
        try await server.kill()
        #expect(try await eventually(timeout: 5) { !(try await tested.isReady) })
        guard case .failure(.unavailable(let why))? = try await tested.sendAnsweredAtOnce(["GET", "kept"]) else {
            Issue.record("a command went somewhere while the server was down, or waited")
            return
        }
        #expect(why.contains("reconnecting"))
        #expect(tested.lost.withLock { $0 }.count == 1)
        try await Task.sleep(nanoseconds: 500_000_000)
        try await server.restart()
        try await tested.waitUntilReady()
        // Acknowledged before the kill, so in the AOF (appendfsync always).
        #expect(try await tested.send(["GET", "kept"]) == .success(.bulk(Array("yes".utf8))))
        #expect(tested.readied.withLock { $0 } == 2)
        try await tested.stop()
    }

    @Test func aFrozenServerIsFoundByTheProbeOnAQuietConnection() async throws {
        let server = try await RedisServer.start()
        let tested = try await ClientUnderTest.ready(on: server) {
            $0.commandTimeoutSeconds = 0.3
            $0.probeAfterQuietSeconds = 0.3
        }
        server.freeze()
        defer { server.thaw() }
        // No command is sent: only the probe can notice.
        #expect(await eventually(timeout: 5) { tested.lost.withLock { !$0.isEmpty } })
        #expect(tested.lost.withLock { $0 } == [.timedOut(seconds: 0.3)])
        server.thaw()
        try await tested.waitUntilReady()
        #expect(try await tested.send(["PING"]) == .success(.status("PONG")))
        try await tested.stop()
    }

    @Test func aClosedClientRefusesCommandsAndFailsWhatWaited() async throws {
        let server = try await RedisServer.start()
        let tested = try ClientUnderTest(server.url)
        try await tested.waitUntilReady()
        let waited: Result<RedisValue, RedisError> = try await tested.thread.wait { [client = tested.client] done in
            client.value.send(["DEBUG", "SLEEP", "0.2"]) { done($0) }
            client.value.close()
        }
        #expect(waited == .failure(.closed))
        #expect(try await tested.send(["PING"]) == .failure(.closed))
        tested.thread.stop()
    }
}

/// One test at a time: each starts a redis-server, and a dozen at once would starve the other suites' timing.
@Suite(.serialized) struct RedisPersistenceTests {
    func check(_ tested: ClientUnderTest) async throws -> Result<RedisPersistence.Unsafe?, RedisError> {
        try await tested.thread.wait { [client = tested.client] done in
            RedisPersistence.check(client.value) { done($0) }
        }
    }

    @Test func anAppendOnlyFileSyncedOnEveryWriteIsSafeAndAnythingLessIsNamed() async throws {
        let server = try await RedisServer.start()
        let tested = try ClientUnderTest(server.url)
        try await tested.waitUntilReady()
        #expect(try await check(tested) == .success(nil))
        #expect(try await server.cli(["CONFIG", "SET", "appendfsync", "everysec"]) == "OK")
        guard case .success(let unsafe?) = try await check(tested) else {
            Issue.record("appendfsync everysec passed the check")
            return
        }
        #expect(unsafe.setting == "appendfsync" && unsafe.found == "everysec")
        #expect("\(unsafe)".contains("approvald needs appendfsync always"))
        #expect(try await server.cli(["CONFIG", "SET", "appendonly", "no"]) == "OK")
        guard case .success(let off?) = try await check(tested) else {
            Issue.record("appendonly no passed the check")
            return
        }
        #expect(off.setting == "appendonly" && off.found == "no")
        try await server.kill()
        #expect(try await eventually(timeout: 5) { !(try await tested.isReady) })
        guard case .failure(.unavailable) = try await check(tested) else {
            Issue.record("a check without a server did not fail")
            return
        }
        try await tested.stop()
    }
}

/// One test at a time: each starts a redis-server, and a dozen at once would starve the other suites' timing.
@Suite(.serialized) struct RedisSubscriberTests {
    @Test func messagesArriveAndTheSubscriptionsComeBackAfterARestart() async throws {
        let server = try await RedisServer.start()
        let received = Locked<[String]>([])
        let tested = try ClientUnderTest(server.url, subscribe: ["ap:inbox:a", "ap:inbox:b"]) { channel, payload in
            received.withLock { $0.append("\(channel)=\(String(decoding: payload, as: UTF8.self))") }
        }
        try await tested.waitUntilReady()
        #expect(try await eventually { try await server.cli(["PUBLISH", "ap:inbox:a", "one"]) == "1" })
        _ = try await server.cli(["PUBLISH", "ap:inbox:b", "two"])
        _ = try await server.cli(["PUBLISH", "ap:inbox:c", "not mine"])
        #expect(await eventually { received.withLock { $0 } == ["ap:inbox:a=one", "ap:inbox:b=two"] })
        // A subscriber sends no commands.
        guard case .failure(.unavailable) = try await tested.send(["GET", "x"]) else {
            Issue.record("a subscriber sent a command")
            return
        }
        try await server.kill()
        try await server.restart()
        #expect(try await eventually { try await server.cli(["PUBLISH", "ap:inbox:a", "three"]) == "1" })
        #expect(await eventually { received.withLock { $0 }.last == "ap:inbox:a=three" })
        #expect(tested.readied.withLock { $0 } == 2)
        try await tested.stop()
    }

    @Test func aFrozenServerIsFoundByTheSubscribersProbe() async throws {
        let server = try await RedisServer.start()
        let tested = try await ClientUnderTest.ready(on: server, subscribe: ["ap:inbox:a"]) {
            $0.commandTimeoutSeconds = 0.3
            $0.probeAfterQuietSeconds = 0.3
        }
        // Quiet and answering: probes come and go without a loss.
        try await Task.sleep(nanoseconds: 1_000_000_000)
        #expect(tested.lost.withLock { $0 }.isEmpty)
        server.freeze()
        defer { server.thaw() }
        #expect(await eventually(timeout: 5) { tested.lost.withLock { !$0.isEmpty } })
        #expect(tested.lost.withLock { $0 } == [.timedOut(seconds: 0.3)])
        server.thaw()
        #expect(await eventually(timeout: 5) { tested.readied.withLock { $0 } >= 2 })
        try await tested.stop()
    }
}
