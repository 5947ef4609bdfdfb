// The Service over a store that refuses every commit: answers that need durability say 503, reads still work, and
// a request that changes nothing never reaches the store.
import Core
import Crypto
import Foundation
import H2
import Logging
import Store
import Synchronization
import TestSupport
import Testing

@testable import Service

/// Counts commits and fails each one, answering on the loop as a real store would.
final class FailingStore: DurableStore, @unchecked Sendable {
    let loop: EventLoop
    let commits = Mutex(0)

    init(loop: EventLoop) { self.loop = loop }

    func load() throws(StoreError) -> StoredState { StoredState() }

    func commit(_ events: [CoreEvent], completion: @escaping @Sendable (Result<Void, StoreError>) -> Void) {
        commits.withLock { $0 += 1 }
        loop.execute { completion(.failure(StoreError("disk full"))) }
    }

    func close() {}
}

@Suite struct StoreFailureTests {
    let secret = Array("a secret of at least thirty-two bytes, for tests".utf8)

    func signature(_ method: String, _ path: String, _ body: String) -> String {
        let time = String(Int64(Date().timeIntervalSince1970))
        let mac = HMACSHA256.authenticationCode(key: secret, message: "\(time)\n\(method)\n\(path)\n\(body)")
        return "key=k, t=\(time), v1=\(mac.map { String(format: "%02x", $0) }.joined())"
    }

    @Test func durableAnswersBecome503AndReadsNeverTouchTheStore() async throws {
        let thread = try LoopThread()
        defer { thread.stop() }
        let loop = thread.loop
        let store = FailingStore(loop: loop)
        let logger = Logger(label: "test")
        let clients = [
            Configuration.IdPClient(keyID: "k", secret: secret, tenants: ["contoso"], verifierURL: "http://127.0.0.1:9")
        ]
        let setup: UncheckedBox<(H2Server, H2Client)> = try await thread.run {
            let application = Application(logger: logger)
            application.service = ApprovalService(
                loop: loop, core: ApprovalCore(random: SecureRandom()), store: store, clients: clients,
                keepaliveSeconds: 25, logger: logger, clock: { UnixMillis(Date().timeIntervalSince1970 * 1000) })
            let server = H2Server(loop: loop, logger: logger) { application.handle($0, $1) }
            let port = try server.listen(host: "127.0.0.1", port: 0)
            return UncheckedBox((server, try H2Client(loop: loop, origin: "http://127.0.0.1:\(port)", logger: logger)))
        }
        // The loop stops before the server and client it runs are released.
        defer { withExtendedLifetime(setup) { thread.stop() } }
        let client = setup.value.1
        func send(
            _ method: String, _ path: String, _ body: String = "", headers: HTTPHeaders = [:]
        ) async throws
            -> H2ClientResponse
        {
            let box = UncheckedBox(headers)
            let result: Result<H2ClientResponse, H2ClientError> = try await thread.wait { done in
                client.send(method: method, path: path, headers: box.value, body: Array(body.utf8)) { done($0) }
            }
            return try result.get()
        }
        func idp(_ method: String, _ path: String, _ body: String = "") async throws -> H2ClientResponse {
            try await send(method, path, body, headers: ["approvald-signature": signature(method, path, body)])
        }

        // A change that cannot be made durable is not acknowledged.
        let policy = try await idp("PUT", "/v1/tenants/contoso/policy", "{\"choices\":4}")
        #expect(policy.status == 503)
        #expect(String(decoding: policy.body, as: UTF8.self).contains("\"code\":\"unavailable\""))
        let key = try P256PrivateKey()
        let registration =
            "{\"user_id\":\"alice\",\"public_key\":\"\(Data(key.spkiDER).base64EncodedString())\"}"
        #expect(try await idp("PUT", "/v1/tenants/contoso/devices/phone-1", registration).status == 503)
        let afterWrites = store.commits.withLock { $0 }
        #expect(afterWrites >= 1)

        // Reads need no commit and never reach the store.
        #expect(try await idp("GET", "/v1/tenants/contoso/policy").status == 200)
        #expect(try await idp("GET", "/v1/tenants/contoso/challenges/ch_nope").status == 404)
        #expect(store.commits.withLock { $0 } == afterWrites)

        // A device's first request stores when it was seen; the next, a moment later, changes nothing.
        func deviceGet() async throws -> Int {
            let path = "/v1/devices/phone-1/challenges"
            let time = String(Int64(Date().timeIntervalSince1970))
            let signature = Base64URL.encode(try key.signature(for: "\(time)\nGET\n\(path)\n"))
            return try await send(
                "GET", path, headers: ["authorization": "Approvald-Device device=phone-1, t=\(time), sig=\(signature)"]
            ).status
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
