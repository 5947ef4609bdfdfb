// The Service on its own loop thread over a store the test supplies, with an HTTP/2 server and client: for what an
// end-to-end test cannot arrange, such as a store that fails or holds its commits.
import Core
import Crypto
import EventLoop
import Foundation
import HTTP
import Logging
import Store
import TestSupport

@testable import Service

final class InProcessBroker: @unchecked Sendable {
    static let secret = Array("a secret of at least thirty-two bytes, for tests".utf8)

    let thread: LoopThread
    private let parts: UncheckedBox<(server: HTTPServer, client: H2Client, service: ApprovalService)>
    var client: H2Client { parts.value.client }
    /// The server's h2c port, for raw clients.
    let port: Int
    /// Loop-confined: touch it on `thread` only.
    var service: ApprovalService { parts.value.service }

    /// Tenant `contoso`, IdP key id `k`, results to `verifierURL`, time from `clock`.
    init(
        verifierURL: String = "http://127.0.0.1:9",
        clock: @escaping @Sendable () -> UnixMillis = { UnixMillis(Date().timeIntervalSince1970 * 1000) },
        forwarding: Forwarder.Settings = Forwarder.Settings(), apns: APNsSettings? = nil,
        fcm: FCMSettings? = nil,
        wrap: @escaping @Sendable (EmbeddedStore) -> StoreRoles = { StoreRoles($0) },
        store makeStore: (EventLoop) -> Journal
    ) async throws {
        thread = try LoopThread()
        let loop = thread.loop
        let store = UncheckedBox(makeStore(loop))
        let logger = Logger(label: "test")
        let clients = [
            IdPClient(
                keyID: "k", secret: Self.secret, tenants: ["contoso"], verifierURL: verifierURL)
        ]
        let made = try await thread.run {
            let application = Application(logger: logger)
            let embedded = try EmbeddedStore.recover(store.value, executor: { loop.execute($0) }).0
            let service = try ApprovalService(
                loop: loop, store: wrap(embedded), clients: clients, keepaliveSeconds: 25, forwarding: forwarding,
                apns: apns, fcm: fcm, logger: logger, clock: clock)
            application.serve(service)
            service.start()
            let server = HTTPServer(loop: loop, logger: logger) { application.handle($0, $1) }
            application.attach(to: server)
            let port = try server.listen(host: "127.0.0.1", port: 0)
            let client = try H2Client(loop: loop, origin: "http://127.0.0.1:\(port)", logger: logger)
            return (UncheckedBox((server: server, client: client, service: service)), port)
        }
        parts = made.0
        port = made.1
    }

    /// A broker over the store `make` builds on the broker's loop, and that store.
    static func over<Store: Journal>(
        _ make: @escaping (EventLoop) -> Store
    ) async throws -> (InProcessBroker, Store) {
        var made: Store?
        let broker = try await InProcessBroker { loop in
            let store = make(loop)
            made = store
            return store
        }
        // swift-format-ignore: NeverForceUnwrap
        return (broker, made!)
    }

    /// Reads or drives the service on its loop.
    func onLoop<Value: Sendable>(_ body: @escaping @Sendable (ApprovalService) -> Value) async throws -> Value {
        let parts = parts
        return try await thread.run { body(parts.value.service) }
    }

    /// Stops the loop; the server and client it runs are released only after that.
    func stop() { withExtendedLifetime(parts) { thread.stop() } }

    func send(
        _ method: String, _ path: String, _ body: String = "", headers: HTTPHeaders = [:]
    ) async throws -> HTTPClientResponse {
        let box = UncheckedBox(headers)
        let client = client
        let result: Result<HTTPClientResponse, HTTPClientError> = try await thread.wait { done in
            client.send(method: method, path: path, headers: box.value, body: Array(body.utf8)) { done($0) }
        }
        return try result.get()
    }

    /// An IdP request signed at `time` (Unix seconds; now by default: a broker on a moved clock needs its time).
    func idp(
        _ method: String, _ path: String, _ body: String = "", at time: Int64? = nil
    ) async throws
        -> HTTPClientResponse
    {
        try await send(
            method, path, body, headers: ["approvald-signature": Self.signature(method, path, body, at: time)])
    }

    static func signature(_ method: String, _ path: String, _ body: String, at time: Int64? = nil) -> String {
        let time = String(time ?? Int64(Date().timeIntervalSince1970))
        let mac = HMACSHA256.authenticationCode(key: secret, message: "\(time)\n\(method)\n\(path)\n\(body)")
        return "key=k, t=\(time), v1=\(mac.map { String(format: "%02x", $0) }.joined())"
    }

    /// The `Authorization` header of a device request.
    static func deviceAuthorization(
        _ key: P256PrivateKey, _ deviceID: String, _ method: String, _ path: String
    ) throws
        -> String
    {
        let time = String(Int64(Date().timeIntervalSince1970))
        let signature = Base64URL.encode(try key.signature(for: "\(time)\n\(method)\n\(path)\n"))
        return "Approvald-Device device=\(deviceID), t=\(time), sig=\(signature)"
    }

    static func registration(_ userID: String, _ key: P256PrivateKey, push: String? = nil) -> String {
        "{\"user_id\":\"\(userID)\",\"public_key\":\"\(Data(key.spkiDER).base64EncodedString())\""
            + (push.map { ",\"push\":\($0)" } ?? "") + "}"
    }
}
