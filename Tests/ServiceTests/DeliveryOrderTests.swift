// Nothing reaches a phone before it is durable: a challenge whose commit is still in flight is neither in the
// device's queue nor sent on a stream opened meanwhile, and once durable the stream gets it exactly once.
import Core
import Crypto
import EventLoop
import Foundation
import HTTP
import Locking
import Store
import TestSupport
import Testing

@testable import Service

/// Completes commits at once while open; while held, keeps their completions until `open()`.
final class GatedStore: Journal, @unchecked Sendable {
    let loop: EventLoop
    private let state = Locked<(held: Bool, waiting: [@Sendable (Result<Void, StoreError>) -> Void])>((false, []))

    init(loop: EventLoop) { self.loop = loop }

    func load(_ each: (StoredRecord) -> Void) throws(StoreError) {}

    func commit(
        _ changes: [Change], outbox: [OutboxChange],
        completion: @escaping @Sendable (Result<Void, StoreError>) -> Void
    ) {
        let held = state.withLock { state in
            if state.held { state.waiting.append(completion) }
            return state.held
        }
        if !held { loop.execute { completion(.success(())) } }
    }

    func dueCallbacks(
        in partitions: [Partition], now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping @Sendable (Result<DueCallbacks, StoreError>) -> Void
    ) { loop.execute { completion(.success(DueCallbacks(entries: [], nextDueAt: nil))) } }

    func deadLetters(
        tenantID: String, limit: Int, completion: @escaping @Sendable (Result<[DeadLetter], StoreError>) -> Void
    ) { loop.execute { completion(.success([])) } }

    func redrive(
        tenantID: String, challengeID: String?, now: UnixMillis,
        completion: @escaping @Sendable (Result<Int, StoreError>) -> Void
    ) { loop.execute { completion(.success(0)) } }

    func hold() { state.withLock { $0.held = true } }

    var heldCommits: Int { state.withLock { $0.waiting.count } }

    func open() {
        let waiting = state.withLock { state in
            state.held = false
            defer { state.waiting = [] }
            return state.waiting
        }
        loop.execute { for completion in waiting { completion(.success(())) } }
    }

    func close() {}
}

/// What one event stream has received so far.
final class StreamRecorder: @unchecked Sendable {
    private let text = Locked("")
    func append(_ chunk: UnsafeBufferPointer<UInt8>) {
        let piece = String(decoding: chunk, as: UTF8.self)
        text.withLock { $0 += piece }
    }
    var received: String { text.withLock { $0 } }
}

@Suite struct DeliveryOrderTests {
    @Test func aChallengeReachesPhonesOnlyOnceDurableAndOnlyOnce() async throws {
        let (broker, store) = try await InProcessBroker.over(GatedStore.init)
        defer { broker.stop() }
        let key = try P256PrivateKey()
        let registered = try await broker.idp(
            "PUT", "/v1/tenants/contoso/devices/phone-1", InProcessBroker.registration("alice", key))
        #expect(registered.status == 201)

        // The create's commit is held: no 201 yet.
        store.hold()
        let createBody = "{\"request_id\":\"r-1\",\"user_id\":\"alice\",\"number\":42}"
        let created = Task { try await broker.idp("POST", "/v1/tenants/contoso/challenges", createBody) }
        #expect(await eventually { store.heldCommits >= 1 })

        // Meanwhile the phone polls and opens its stream: the challenge is not there yet.
        let queuePath = "/v1/devices/phone-1/challenges"
        let queue = try await broker.send(
            "GET", queuePath,
            headers: ["authorization": try InProcessBroker.deviceAuthorization(key, "phone-1", "GET", queuePath)])
        #expect(String(decoding: queue.body, as: UTF8.self) == "{\"challenges\":[]}")
        let streamPath = "/v1/devices/phone-1/stream"
        let authorization = UncheckedBox(
            try InProcessBroker.deviceAuthorization(key, "phone-1", "GET", streamPath))
        let recorder = StreamRecorder()
        let client = broker.client
        try await broker.thread.run {
            _ = client.send(
                method: "GET", path: streamPath, headers: [("authorization", authorization.value)],
                timeoutSeconds: 30, onData: recorder.append
            ) { _ in }
        }
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(!recorder.received.contains("event: challenge"))

        // Durable: the IdP gets its 201 and the stream the challenge, once.
        store.open()
        let response = try await created.value
        #expect(response.status == 201)
        #expect(await eventually { recorder.received.contains("event: challenge") })
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(recorder.received.components(separatedBy: "event: challenge").count == 2)
    }
}
