// What the tools that play an IdP share: the account they act as (a broker's URL and one of its IdP clients' key and
// tenant, read from the broker's own configuration file) and requests to the broker from async code, signed with
// that client's key.
import ArgumentParser
import Broker
import Crypto
import EventLoop
import Foundation
import HTTP
import Logging
import Protocol

/// An IdP client of a broker's configuration, and where to reach that broker.
struct IdPAccount: Sendable {
    let url: String
    let caFile: String?
    let keyID: String
    let secret: [UInt8]
    let tenant: String
    let verifierURL: String

    /// The IdP client `keyID` (default: the first with a tenant) of the configuration at `path`, acting on `tenant`
    /// (default: its first), reaching the broker at `url` (default: its first plain listener, else its first).
    init(config path: String, url: String?, keyID: String?, tenant: String?, caFile: String?) throws {
        let configuration: Configuration
        do {
            configuration = try Configuration.load(path: path)
        } catch let error as ConfigError {
            throw ValidationError("cannot use the configuration: \(error.description)")
        }
        let clients = configuration.idpClients.filter { !$0.tenants.isEmpty }
        guard let client = keyID.map({ key in clients.first { $0.keyID == key } }) ?? clients.first else {
            throw ValidationError(
                keyID.map { "\(path) has no IdP client with key id \($0)" } ?? "\(path) has no IdP client with a tenant"
            )
        }
        self.keyID = client.keyID
        secret = client.secret
        guard let tenant = tenant ?? client.tenants.sorted().first, client.tenants.contains(tenant) else {
            throw ValidationError("IdP client \(client.keyID) does not act on tenant \(tenant ?? "")")
        }
        self.tenant = tenant
        let listener = configuration.listeners.first { !$0.tls } ?? configuration.listeners.first
        guard let url = url ?? listener.map({ Self.url(of: $0) }) else {
            throw ValidationError("\(path) has no listener: give --url")
        }
        self.url = url
        self.caFile = caFile ?? configuration.tlsCertificatePath
        verifierURL = client.verifierURL
    }

    private static func url(of listener: Configuration.Listener) -> String {
        let host = ["0.0.0.0", "::", ""].contains(listener.host) ? "127.0.0.1" : listener.host
        return "\(listener.tls ? "https" : "http")://\(host.contains(":") ? "[\(host)]" : host):\(listener.port)"
    }
}

/// Requests to one broker from async code, on an HTTP client of a loop; the IdP's are signed with its key.
final class BrokerRequests: Sendable {
    private let loop: EventLoop
    private let client: any HTTPClient
    private let signer: (keyID: String, key: HMACSHA256.Key)

    init(
        to origin: String, as account: IdPAccount, speaking clientProtocol: ClientProtocol, tls: TLSClientContext?,
        loop: EventLoop
    ) throws {
        var options = HTTPClientOptions()
        options.requestTimeoutSeconds = 40
        var logger = Logger(label: "approvald-idp")
        logger.logLevel = .error
        client = try makeHTTPClient(
            loop: loop, origin: origin, tls: origin.hasPrefix("https://") ? tls : nil, speaking: clientProtocol,
            options: options, logger: logger)
        self.loop = loop
        signer = (account.keyID, HMACSHA256.Key(account.secret))
    }

    /// A request signed as the IdP (`X-Approvald-Signature`); status 0 and the error's text when no response came.
    func idp(_ method: String, _ path: String, _ body: String = "") async -> (status: Int, text: String) {
        let header = IdPSignature.header(
            keyID: signer.keyID, key: signer.key, time: Int64(Date().timeIntervalSince1970), method: method,
            path: path, body: Array(body.utf8))
        return await send(method, path, body: body, headers: [(IdPSignature.field, header)])
    }

    /// A request without credentials (`/readyz`).
    func send(
        _ method: String, _ path: String, body: String = "", headers: HTTPHeaders = []
    ) async -> (status: Int, text: String) {
        var fields = headers
        if !body.isEmpty { fields.append("content-type", "application/json") }
        let request = fields
        let client = self.client
        return await withCheckedContinuation { continuation in
            loop.execute {
                client.send(method: method, path: path, headers: request, body: Array(body.utf8)) { result in
                    switch result {
                    case .success(let response):
                        continuation.resume(
                            returning: (response.status, String(decoding: response.body, as: UTF8.self)))
                    case .failure(let error): continuation.resume(returning: (0, "\(error)"))
                    }
                }
            }
        }
    }

    /// Closes the connection, on the loop, after what was handed to it already.
    func close() {
        let client = self.client
        loop.execute { client.close() }
    }
}
