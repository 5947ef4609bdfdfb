// Where the keys that sign each client's `id_token_hint`s come from: a JWK Set file read at start, or a URL fetched
// with the HTTP client — cached for an hour, and fetched again when a hint names a key the cache lacks (at most once
// in ten seconds, so that hints with made-up `kid`s cannot make the broker hammer the issuer).
import EventLoop
import Foundation
import HTTP
import Logging
import OIDC

/// `@unchecked Sendable`: made before the loop runs, then used on its thread only.
final class HintKeySources: @unchecked Sendable {
    private let fixed: [String: HintKeys]
    private let fetched: [String: FetchedHintKeys]

    /// - Parameter files: the keys of each client whose trust names a file, read by the caller.
    init(
        settings: OIDCSettings, files: [String: HintKeys], loop: EventLoop?, caFile: String?, logger: Logger,
        clock: @escaping () -> Double = monotonicSeconds
    ) throws {
        fixed = files
        var fetched: [String: FetchedHintKeys] = [:]
        var byURL: [String: FetchedHintKeys] = [:]
        for client in settings.clients {
            guard case .url(let url)? = client.hintTrust?.keys else { continue }
            if let shared = byURL[url] {
                fetched[client.clientID] = shared
                continue
            }
            guard let loop else { continue }
            let speaking: ClientProtocol = url.lowercased().hasPrefix("https://") ? .negotiated : .http1
            let (httpClient, path) = try connect(
                to: url, speaking: speaking, caFile: caFile, loop: loop, logger: logger)
            let source = FetchedHintKeys(client: httpClient, path: path, url: url, logger: logger, clock: clock)
            byURL[url] = source
            fetched[client.clientID] = source
        }
        self.fetched = fetched
    }

    /// The keys of `clientID`'s hint issuer; `refresh` when a hint named a key they lack. Nil: none could be had.
    func keys(for clientID: String, refresh: Bool, _ done: @escaping (HintKeys?) -> Void) {
        if let keys = fixed[clientID] { return done(keys) }
        guard let source = fetched[clientID] else { return done(nil) }
        source.keys(refresh: refresh, done)
    }
}

/// One JWK Set URL's keys, fetched when first needed and then as they age.
final class FetchedHintKeys: @unchecked Sendable {
    /// How long fetched keys are used before they are fetched again.
    static let maximumAgeSeconds = 3600.0
    /// How soon after a fetch a hint's unknown `kid` may cause another.
    static let refreshIntervalSeconds = 10.0

    private let client: any HTTPClient
    private let path: String
    private let url: String
    private let logger: Logger
    private let clock: () -> Double
    private var cached: HintKeys?
    private var fetchedAt = -Double.infinity
    /// Those waiting for the fetch under way; empty when none is.
    private var waiting: [(HintKeys?) -> Void] = []

    init(client: any HTTPClient, path: String, url: String, logger: Logger, clock: @escaping () -> Double) {
        self.client = client
        self.path = path
        self.url = url
        self.logger = logger
        self.clock = clock
    }

    func keys(refresh: Bool, _ done: @escaping (HintKeys?) -> Void) {
        guard waiting.isEmpty else { return waiting.append(done) }
        let age = clock() - fetchedAt
        let stale = cached == nil || age >= (refresh ? Self.refreshIntervalSeconds : Self.maximumAgeSeconds)
        guard stale, age >= Self.refreshIntervalSeconds else { return done(cached) }
        waiting.append(done)
        client.send(method: "GET", path: path, headers: [("accept", "application/json")]) { [self] result in
            fetchedAt = clock()
            switch result {
            case .success(let response) where response.status == 200:
                if let keys = HintKeys(jwkSet: String(decoding: response.body, as: UTF8.self)) {
                    cached = keys
                } else {
                    logger.warning("the id_token_hint key set is not a JWK Set", metadata: ["url": "\(url)"])
                }
            case .success(let response):
                logger.warning(
                    "the id_token_hint key set could not be fetched",
                    metadata: ["url": "\(url)", "status": "\(response.status)"])
            case .failure(let error):
                logger.warning(
                    "the id_token_hint key set could not be fetched", metadata: ["url": "\(url)", "error": "\(error)"])
            }
            let answered = waiting
            waiting = []
            for done in answered { done(cached) }
        }
    }
}
