// An instance whose Redis fails: while Redis is down, /readyz is 503 and requests that need the store get 503
// `unavailable` at once; device streams stay open; when Redis comes back on the same append-only file, nothing
// acknowledged is lost and the instance serves again by itself, its streams read again. Start-up refuses a Redis
// that could lose an acknowledged write, unless told to accept it.
import Foundation
import Glibc
import Locking
import TestSupport
import Testing

@Suite(.enabled(if: testsRunOnRedis, "runs in the Redis pass of the end-to-end suite"), .serialized)
struct RedisOutageTests {
    @Test func aKilledRedisIsAnOutageNotALossAndTheInstanceComesBackByItself() throws {
        let redis = try RedisServer()
        let broker = try ApprovaldProcess(extraConfig: brokerConfig, redis: redis)
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("olga-phone")
        #expect(try idp.register(phone, user: "olga@contoso.com").status == 201)
        let acknowledged = try idp.challenge("before", user: "olga@contoso.com")
        #expect(acknowledged.status == 201)
        let stream = try StreamReader(broker, phone)
        #expect(stream.shows("event: challenge"))
        #expect(eventuallyBlocking(timeout: 5) { routed(redis, phone.id) })

        redis.stop()
        #expect(eventuallyBlocking(timeout: 5) { (try? broker.curl("/readyz").status) == 503 })
        let started = Date()
        let refused = try idp.challenge("during", user: "olga@contoso.com")
        #expect(refused.status == 503 && refused.json["code"] as? String == "unavailable", "\(refused.body)")
        #expect(try idp.call("GET", "/v1/tenants/contoso/users/olga%40contoso.com/devices").status == 503)
        #expect(Date().timeIntervalSince(started) < 3, "requests waited on a Redis that is down")
        #expect(try broker.curl("/healthz").status == 200)

        try redis.restartBlocking()
        #expect(eventuallyBlocking(timeout: 15) { (try? broker.curl("/readyz").status) == 200 })
        // Acknowledged before the kill, so in the append-only file.
        let id = try #require(acknowledged.json["challenge_id"] as? String)
        let status = try idp.call("GET", "/v1/tenants/contoso/challenges/\(id)")
        #expect(status.json["status"] as? String == "pending")
        // The stream stayed open and is routed again: a cancel reaches it.
        #expect(eventuallyBlocking(timeout: 10) { routed(redis, phone.id) })
        #expect(try idp.call("DELETE", "/v1/tenants/contoso/challenges/\(id)").status == 200)
        #expect(stream.shows("event: resolved\nid: \(id)"))
        let after = try idp.challenge("after", user: "olga@contoso.com")
        #expect(after.status == 201)
        let afterID = try #require(after.json["challenge_id"] as? String)
        #expect(stream.shows("event: challenge\nid: \(afterID)"))
    }

    /// An instance that starts before its Redis keeps trying, and is ready once Redis answers: no restart needed.
    @Test func anInstanceStartedWhileRedisIsDownIsReadyOnceRedisComes() throws {
        let redis = try RedisServer()
        redis.stop()
        let comesBack = Locked<Bool?>(nil)
        let server = UncheckedBox(redis)
        let started = Date()
        DispatchQueue.global().asyncAfter(deadline: .now() + 2) {
            comesBack.withLock { $0 = (try? server.value.restartBlocking()) != nil }
        }
        // The process reports ready only once its store is open.
        let broker = try ApprovaldProcess(extraConfig: brokerConfig, redis: redis)
        #expect(Date().timeIntervalSince(started) >= 2)
        #expect(comesBack.withLock { $0 } == true)
        #expect(broker.log(tail: 200).contains("Redis connection failed; reconnecting"))
        #expect(try broker.curl("/readyz").status == 200)
        let phone = try SimulatedDevice("rosa-phone")
        #expect(try IdP(broker: broker).register(phone, user: "rosa@contoso.com").status == 201)
    }

    /// A message on the instance's inbox that is not a delivery is logged and dropped; the inbox goes on serving.
    @Test func aDamagedInboxMessageIsDroppedAndDeliveriesGoOn() throws {
        let redis = try RedisServer()
        let broker = try ApprovaldProcess(
            extraConfig: brokerConfig, environment: ["APPROVALD_STORE_REDIS_INSTANCE_ID": "inbox-test"], redis: redis)
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("sara-phone")
        #expect(try idp.register(phone, user: "sara@contoso.com").status == 201)
        let stream = try StreamReader(broker, phone)
        #expect(eventuallyBlocking(timeout: 5) { routed(redis, phone.id) })
        let published = try runCommand(
            ["redis-cli", "-p", String(redis.port), "PUBLISH", "ap:inbox:inbox-test", "\u{1}\u{9}not a delivery"],
            timeout: 5)
        #expect(published.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
        #expect(eventuallyBlocking(timeout: 5) { broker.log(tail: 100).contains("an inbox message cannot be read") })
        let created = try idp.challenge("after-damage", user: "sara@contoso.com")
        #expect(created.status == 201)
        let id = try #require(created.json["challenge_id"] as? String)
        #expect(stream.shows("event: challenge\nid: \(id)"))

        // A challenge's end names only its id (format 1, kind 5, the id): the instance reads the challenge before it
        // answers a long poll. Told of an end that did not happen, or of an unknown challenge, it answers none.
        let poll = try BackgroundPoll(idp, challengeID: id, wait: 3)
        try waitUntilWatched(redis, id)
        for named in [id, "ch_AAAAAAAAAAAAAAAAAAAAAA"] {
            let end = "\u{1}\u{5}" + String(UnicodeScalar(UInt8(named.utf8.count))) + named
            let command = ["redis-cli", "-p", String(redis.port), "PUBLISH", "ap:inbox:inbox-test", end]
            _ = try runCommand(command, timeout: 5)
        }
        #expect(poll.answer(within: 1.5) == nil, "a long poll ended on an end that did not happen")
        #expect(poll.answer(within: 10)?["status"] as? String == "pending")
        // Both were read: the one damaged message above is the only one logged as unreadable.
        #expect(broker.log(tail: 200).components(separatedBy: "an inbox message cannot be read").count == 2)
    }

    @Test func withWaitReplicasNothingIsAcknowledgedBeforeAReplicaHasIt() throws {
        let primary = try RedisServer()
        let broker = try ApprovaldProcess(
            extraConfig: brokerConfig,
            environment: [
                "APPROVALD_STORE_REDIS_WAIT_REPLICAS": "1", "APPROVALD_STORE_REDIS_COMMAND_TIMEOUT_MS": "400",
            ],
            redis: primary)
        let idp = IdP(broker: broker)
        // No replica: the commit is not confirmed in time, so it is not acknowledged.
        let started = Date()
        let alone = try idp.register(try SimulatedDevice("pia-phone"), user: "pia@contoso.com")
        #expect(alone.status == 503 && alone.json["code"] as? String == "unavailable", "\(alone.body)")
        #expect(Date().timeIntervalSince(started) < 3)
        // With a replica that keeps up, the same request is acknowledged, and the replica has it. The replica is up
        // once it says its link is: the primary calls it online as soon as it has sent the copy, while the replica
        // may still be loading it, and then acknowledges nothing within the command timeout.
        let replica = try RedisServer(replicating: primary)
        #expect(
            eventuallyBlocking(timeout: 10) {
                (try? runCommand(["redis-cli", "-p", String(replica.port), "INFO", "replication"], timeout: 5))?
                    .stdout.contains("master_link_status:up") == true
            })
        let phone = try SimulatedDevice("quinn-phone")
        // WAIT gives the replica half the command timeout (200 ms); on a loaded machine a first try may miss it, and
        // its commit may still have been applied: a retry is then answered 200 (the registration as it is).
        var statuses: [Int] = []
        #expect(
            try eventuallyBlocking(timeout: 10) {
                statuses.append(try idp.register(phone, user: "quinn@contoso.com").status)
                return statuses.last == 201 || statuses.last == 200
            }, "\(statuses)")
        #expect(statuses.dropLast().allSatisfy { $0 == 503 }, "\(statuses)")
        let copied = try runCommand(["redis-cli", "-p", String(replica.port), "GET", "ap:dev:quinn-phone"], timeout: 5)
        #expect(copied.stdout.contains("contoso"), "the replica lacks an acknowledged registration")
        #expect(try broker.curl("/readyz").status == 200)
    }

    @Test func startUpRefusesARedisThatCouldLoseAnAcknowledgedWrite() throws {
        let redis = try RedisServer()
        _ = try runCommand(["redis-cli", "-p", String(redis.port), "CONFIG", "SET", "appendfsync", "everysec"])
        do {
            _ = try ApprovaldProcess(extraConfig: brokerConfig, redis: redis)
            Issue.record("an instance started on appendfsync everysec")
        } catch {
            #expect("\(error)".contains("appendfsync everysec"), "\(error)")
        }
        // Told to accept it, the instance starts and says what it gives up.
        let accepted = try ApprovaldProcess(
            extraConfig: brokerConfig, environment: ["APPROVALD_STORE_REDIS_ALLOW_UNSAFE_PERSISTENCE": "true"],
            redis: redis)
        #expect(try accepted.curl("/readyz").status == 200)
        #expect(accepted.log(tail: 50).contains("may lose acknowledged requests"))
    }
}
