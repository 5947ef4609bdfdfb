// The Service over a store that refuses every commit: answers that need durability say 503, reads still work, and
// a request that changes nothing never reaches the store.
import Core
import Crypto
import EventLoop
import Foundation
import HTTP
import Locking
import Logging
import Store
import TestSupport
import Testing

@testable import Service

/// Counts commits and fails each one, answering on the loop as a real store would.
final class FailingStore: Journal, @unchecked Sendable {
    let loop: EventLoop
    let commits = Locked(0)

    init(loop: EventLoop) { self.loop = loop }

    func load(_ each: (StoredRecord) -> Void) throws(StoreError) {}

    func commit(
        _ changes: [Change], outbox: [OutboxChange],
        completion: @escaping @Sendable (Result<Void, StoreError>) -> Void
    ) {
        commits.withLock { $0 += 1 }
        loop.execute { completion(.failure(StoreError("disk full"))) }
    }

    func dueCallbacks(
        in partitions: [Partition], now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping @Sendable (Result<DueCallbacks, StoreError>) -> Void
    ) { loop.execute { completion(.failure(StoreError("disk full"))) } }

    func deadLetters(
        tenantID: String, limit: Int, completion: @escaping @Sendable (Result<[DeadLetter], StoreError>) -> Void
    ) { loop.execute { completion(.failure(StoreError("disk full"))) } }

    func redrive(
        tenantID: String, challengeID: String?, now: UnixMillis,
        completion: @escaping @Sendable (Result<Int, StoreError>) -> Void
    ) { loop.execute { completion(.failure(StoreError("disk full"))) } }

    func close() {}
}

@Suite struct StoreFailureTests {
    @Test func durableAnswersBecome503AndReadsNeverTouchTheStore() async throws {
        let (broker, store) = try await InProcessBroker.over(FailingStore.init)
        defer { broker.stop() }

        // A change that cannot be made durable is not acknowledged.
        let policy = try await broker.idp("PUT", "/v1/tenants/contoso/policy", "{\"choices\":4}")
        #expect(policy.status == 503)
        #expect(String(decoding: policy.body, as: UTF8.self).contains("\"code\":\"unavailable\""))
        let key = try P256PrivateKey()
        let registration = InProcessBroker.registration("alice", key)
        #expect(try await broker.idp("PUT", "/v1/tenants/contoso/devices/phone-1", registration).status == 503)
        let afterWrites = store.commits.withLock { $0 }
        #expect(afterWrites >= 1)

        // Reads need no commit and never reach the store.
        #expect(try await broker.idp("GET", "/v1/tenants/contoso/policy").status == 200)
        #expect(try await broker.idp("GET", "/v1/tenants/contoso/challenges/ch_nope").status == 404)
        // A read the store cannot serve is 503, not an empty list.
        let letters = try await broker.idp("GET", "/v1/tenants/contoso/dead-letters")
        #expect(letters.status == 503)
        #expect(String(decoding: letters.body, as: UTF8.self).contains("\"code\":\"unavailable\""))
        // A redrive the store cannot make durable is 503, not a 202 nor a 404.
        for path in ["/v1/tenants/contoso/dead-letters/ch_x/retry", "/v1/tenants/contoso/dead-letters/retry"] {
            let redrive = try await broker.idp("POST", path)
            #expect(redrive.status == 503, "\(path)")
            #expect(String(decoding: redrive.body, as: UTF8.self).contains("\"code\":\"unavailable\""))
        }
        #expect(store.commits.withLock { $0 } == afterWrites)

        // A device's first request stores when it was seen; the next, a moment later, changes nothing.
        func deviceGet() async throws -> Int {
            let path = "/v1/devices/phone-1/challenges"
            let authorization = try InProcessBroker.deviceAuthorization(key, "phone-1", "GET", path)
            return try await broker.send("GET", path, headers: ["authorization": authorization]).status
        }
        #expect(try await deviceGet() == 200)
        try await Task.sleep(nanoseconds: 100_000_000)
        let afterFirstRead = store.commits.withLock { $0 }
        #expect(afterFirstRead == afterWrites + 1)
        #expect(try await deviceGet() == 200)
        try await Task.sleep(nanoseconds: 100_000_000)
        #expect(store.commits.withLock { $0 } == afterFirstRead)
    }
}
