// Where the keys of the issuers whose tokens approvald checks come from (an OpenID client's `id_token_hint` issuer,
// a tenant's Keycloak realm): a JWK Set file read at start, or a URL fetched with the HTTP client — cached for an
// hour, and fetched again when a token names a key the cache lacks (at most once in ten seconds, so that tokens with
// made-up `kid`s cannot make the broker hammer the issuer).
import EventLoop
import Foundation
import HTTP
import Logging
import OIDC

/// `@unchecked Sendable`: made before the loop runs, then used on its thread only.
final class IssuerKeySources: @unchecked Sendable {
    private let fixed: [String: IssuerKeys]
    private let fetched: [String: FetchedIssuerKeys]

    /// - Parameters:
    ///   - sources: where each trusted issuer's keys are, by the name its users ask for them by (a client id, a
    ///     tenant); one URL named twice is fetched once.
    ///   - files: the keys of each source that is a file, read by the caller.
    init(
        sources: [String: IssuerKeySource], files: [String: IssuerKeys], loop: EventLoop?, caFile: String?,
        logger: Logger, clock: @escaping () -> Double = monotonicSeconds
    ) throws {
        fixed = files
        var fetched: [String: FetchedIssuerKeys] = [:]
        var byURL: [String: FetchedIssuerKeys] = [:]
        for (name, source) in sources.sorted(by: { $0.key < $1.key }) {
            guard case .url(let url) = source else { continue }
            if let shared = byURL[url] {
                fetched[name] = shared
                continue
            }
            guard let loop else { continue }
            let speaking: ClientProtocol = url.lowercased().hasPrefix("https://") ? .negotiated : .http1
            let (httpClient, path) = try connect(
                to: url, speaking: speaking, caFile: caFile, loop: loop, logger: logger)
            let source = FetchedIssuerKeys(client: httpClient, path: path, url: url, logger: logger, clock: clock)
            byURL[url] = source
            fetched[name] = source
        }
        self.fetched = fetched
    }

    /// `check`'s verdict on a token against the keys `name` trusts, which are fetched again once (within the
    /// refresh interval) when the token names a key they lack; `unavailable` is the refusal when no keys can be had.
    func verify<Verified>(
        for name: String, unavailable: String, _ check: @escaping (IssuerKeys) throws(JWTRefusal) -> Verified,
        _ done: @escaping (Result<Verified, JWTRefusal>) -> Void
    ) {
        func attempt(refresh: Bool) {
            keys(for: name, refresh: refresh) { keys in
                guard let keys else { return done(.failure(.invalid(unavailable))) }
                do throws(JWTRefusal) {
                    done(.success(try check(keys)))
                } catch .unknownKey where !refresh {
                    attempt(refresh: true)
                } catch {
                    done(.failure(error))
                }
            }
        }
        attempt(refresh: false)
    }

    /// The keys `name` trusts; `refresh` when a token named a key they lack. Nil: none could be had.
    private func keys(for name: String, refresh: Bool, _ done: @escaping (IssuerKeys?) -> Void) {
        if let keys = fixed[name] { return done(keys) }
        guard let source = fetched[name] else { return done(nil) }
        source.keys(refresh: refresh, done)
    }
}

/// One JWK Set URL's keys, fetched when first needed and then as they age.
final class FetchedIssuerKeys: @unchecked Sendable {
    /// How long fetched keys are used before they are fetched again.
    static let maximumAgeSeconds = 3600.0
    /// How soon after a fetch a token's unknown `kid` may cause another.
    static let refreshIntervalSeconds = 10.0

    private let client: any HTTPClient
    private let path: String
    private let url: String
    private let logger: Logger
    private let clock: () -> Double
    private var cached: IssuerKeys?
    private var fetchedAt = -Double.infinity
    /// Those waiting for the fetch under way; empty when none is.
    private var waiting: [(IssuerKeys?) -> Void] = []

    init(client: any HTTPClient, path: String, url: String, logger: Logger, clock: @escaping () -> Double) {
        self.client = client
        self.path = path
        self.url = url
        self.logger = logger
        self.clock = clock
    }

    func keys(refresh: Bool, _ done: @escaping (IssuerKeys?) -> Void) {
        guard waiting.isEmpty else { return waiting.append(done) }
        let age = clock() - fetchedAt
        let stale = cached == nil || age >= (refresh ? Self.refreshIntervalSeconds : Self.maximumAgeSeconds)
        guard stale, age >= Self.refreshIntervalSeconds else { return done(cached) }
        waiting.append(done)
        client.send(method: "GET", path: path, headers: [("accept", "application/json")]) { [self] result in
            fetchedAt = clock()
            switch result {
            case .success(let response) where response.status == 200:
                if let keys = IssuerKeys(jwkSet: String(decoding: response.body, as: UTF8.self)) {
                    cached = keys
                } else {
                    logger.warning("an issuer's key set is not a JWK Set", metadata: ["url": "\(url)"])
                }
            case .success(let response):
                logger.warning(
                    "an issuer's key set could not be fetched",
                    metadata: ["url": "\(url)", "status": "\(response.status)"])
            case .failure(let error):
                logger.warning(
                    "an issuer's key set could not be fetched", metadata: ["url": "\(url)", "error": "\(error)"])
            }
            let answered = waiting
            waiting = []
            for done in answered { done(cached) }
        }
    }
}
