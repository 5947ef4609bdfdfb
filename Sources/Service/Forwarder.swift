// Results to the IdP's verifier (API.md, "Callbacks"): each ended challenge's callback is stored in the same commit
// as the ending, then POSTed to its IdP client's verifier_url, signed, until a 2xx, across outages and restarts.
// A CIBA request's callback goes the same way to its tenant's Keycloak callback endpoint, with Keycloak's bearer
// token instead of a signature.
// 408, 429, 5xx, timeouts and failed connections are retried with backoff for 24 h; any other answer, or 24 h
// without a 2xx, makes a dead letter. At most `window` callbacks are in memory whatever the backlog: the rest
// wait in the store and are read as room frees up and as they fall due.
import Core
import Crypto
import DequeModule
import EventLoop
import Foundation
import HTTP
import Logging
import OIDC
import Protocol
import Store

/// Exponential backoff with jitter: 1 s doubling to 60 s, each delay drawn from the upper half of its step.
enum RetrySchedule {
    static let periodMillis: UnixMillis = 24 * 3600 * 1000

    static func delayMillis<Random: RandomNumberGenerator>(
        afterFailures failures: Int, using random: inout Random
    ) -> UnixMillis {
        let ceiling = min(60_000, UnixMillis(1000) << UnixMillis(min(max(failures - 1, 0), 6)))
        return ceiling / 2 + UnixMillis.random(in: 0...(ceiling / 2), using: &random)
    }

    /// Answers worth trying again; any other non-2xx status is final.
    static func isRetryable(status: Int) -> Bool { status == 408 || status == 429 || (500...599).contains(status) }
}

/// Stores the forwarder's outcomes (delivered, retry, dead letter).
protocol OutboxCommitting: AnyObject {
    func commitOutbox(_ changes: [OutboxChange], then done: @escaping (Result<Void, StoreError>) -> Void)
}

/// `@unchecked Sendable`: confined to the event loop; store completions come back through it.
public final class Forwarder: @unchecked Sendable {
    public struct Settings: Sendable {
        public var timeoutSeconds = 10.0
        public var maxInFlightPerVerifier = 64
        /// Callbacks held in memory at once (being sent, waiting for a verifier slot, or their outcome being stored).
        var window = 4096
        public var caFile: String?

        public init() {}
    }

    /// One IdP client's verifier: a connection reused by every callback, with a bound on requests in flight.
    private struct Verifier {
        let client: BoundedClient
        let path: String
        let keyID: String
        let key: HMACSHA256.Key
    }

    /// A tenant's Keycloak CIBA callback endpoint (Keycloak's HTTP client and server speak HTTP/1.1, or h2 by ALPN).
    private struct CIBACallback {
        let client: BoundedClient
        let path: String
    }

    private let loop: EventLoop
    private let store: any OutboxStore
    private let membership: any InstanceMembership
    private let settings: Settings
    private let clock: () -> UnixMillis
    private let logger: Logger
    private unowned let outbox: OutboxCommitting
    private let verifierOfTenant: [String: Verifier]
    private let cibaCallbackOfTenant: [String: CIBACallback]
    private var taken: Set<String> = []
    private var reading = OutboxReading()
    /// Made on first use, on the loop.
    private lazy var timer = loop.makeTimer { [unowned self] in
        reading.woke()
        pump()
    }
    private var random = SystemRandomNumberGenerator()

    private(set) var attempts = LabelledCounter(known: ["delivered", "retry", "dead_letter"])
    /// CIBA callbacks Keycloak took, by the status they told.
    private(set) var cibaCallbacks = LabelledCounter(known: CIBAStatus.allCases.map(\.rawValue))
    private(set) var latency = Histogram(bounds: [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300, 3600,
    ])

    /// - Parameters:
    ///   - clients: each tenant's callbacks go to the first client that lists the tenant.
    ///   - cibaCallbackURLs: each CIBA tenant's Keycloak callback endpoint.
    init(
        loop: EventLoop, store: any OutboxStore, membership: any InstanceMembership, outbox: OutboxCommitting,
        clients: [IdPClient], cibaCallbackURLs: [String: String] = [:],
        settings: Settings, clock: @escaping () -> UnixMillis, logger: Logger
    ) throws {
        self.loop = loop
        self.store = store
        self.membership = membership
        self.settings = settings
        self.clock = clock
        self.logger = logger
        self.outbox = outbox
        var options = HTTPClientOptions()
        options.requestTimeoutSeconds = settings.timeoutSeconds
        // An HTTP/1.1 verifier gets a connection per callback in flight, as many as an HTTP/2 one gets streams.
        options.maxConnections = settings.maxInFlightPerVerifier
        var byTenant: [String: Verifier] = [:]
        for client in clients {
            let (http, path) = try connect(
                to: client.verifierURL, speaking: client.verifierProtocol, caFile: settings.caFile, options: options,
                loop: loop, logger: logger)
            let verifier = Verifier(
                client: BoundedClient(http, limit: settings.maxInFlightPerVerifier), path: path, keyID: client.keyID,
                key: HMACSHA256.Key(client.secret))
            for tenant in client.tenants where byTenant[tenant] == nil { byTenant[tenant] = verifier }
        }
        verifierOfTenant = byTenant
        cibaCallbackOfTenant = try cibaCallbackURLs.mapValues { url in
            let (http, path) = try connect(
                to: url, speaking: url.lowercased().hasPrefix("https://") ? .negotiated : .http1,
                caFile: settings.caFile, options: options, loop: loop, logger: logger)
            return CIBACallback(client: BoundedClient(http, limit: settings.maxInFlightPerVerifier), path: path)
        }
    }

    /// After recovery: what the outbox holds is read as it falls due.
    func start() { pump() }

    /// Callbacks this instance just made durable together with their challenges' endings, whatever partition they
    /// are in (the store holds them back from every read for a while: InstanceMembership.committerHoldMillis): sent at once
    /// while the window has room, otherwise read back from the store once due.
    func enqueued(_ entries: [OutboxEntry]) {
        let held = membership.committerHoldMillis > 0
        for entry in entries {
            guard taken.count < settings.window else { return reading.windowOverflowed() }
            // Held for this instance, a callback must not wait for a verifier slot past its hold (its partition's
            // forwarder would send it too): one that cannot go out now is left to that forwarder, once due.
            if held, let client = client(for: entry), !client.hasRoom { continue }
            take(entry)
        }
    }

    /// Reads what is due and not already taken, up to the window.
    func pump() {
        guard reading.startRead(windowHasRoom: taken.count < settings.window) else { return }
        store.dueCallbacks(
            in: membership.forwardingPartitions, now: clock(), after: reading.cursor, limit: settings.window
        ) { [self] result in
            switch result {
            case .failure(let error):
                logger.error("cannot read the outbox: \(error)")
                reading.readFailed()
                wake(at: clock() + 1000)
            case .success(let due):
                var considered: OutboxEntry?
                var windowFull = false
                for entry in due.entries {
                    if !taken.contains(entry.challengeID) {
                        guard taken.count < settings.window else {
                            windowFull = true
                            break
                        }
                        take(entry)
                    }
                    considered = entry
                }
                reading.readSucceeded(
                    full: windowFull || due.entries.count == settings.window, lastConsidered: considered)
                if let next = due.nextDueAt { wake(at: next) }
            }
            if reading.behind && taken.count < settings.window { pump() }
        }
    }

    private func wake(at time: UnixMillis) {
        guard reading.wake(at: time) else { return }
        timer.schedule(after: Double(max(0, time - clock())) / 1000)
    }

    /// The connection the callback goes out on; nil when its tenant has nowhere to send it.
    private func client(for entry: OutboxEntry) -> BoundedClient? {
        switch entry.target {
        case .verifier: verifierOfTenant[entry.tenantID]?.client
        case .ciba: cibaCallbackOfTenant[entry.tenantID]?.client
        }
    }

    private func take(_ entry: OutboxEntry) {
        taken.insert(entry.challengeID)
        switch entry.target {
        case .verifier:
            guard let verifier = verifierOfTenant[entry.tenantID] else {
                return deadLetter(
                    entry, attempted: false, status: 0, detail: "no IdP client acts on tenant \(entry.tenantID)")
            }
            send(entry, to: verifier)
        case .ciba(let token):
            guard let callback = cibaCallbackOfTenant[entry.tenantID] else {
                return deadLetter(
                    entry, attempted: false, status: 0, detail: "tenant \(entry.tenantID) has no CIBA channel")
            }
            let headers: HTTPHeaders = [("content-type", "application/json"), ("authorization", "Bearer \(token)")]
            callback.client.send(
                method: "POST", path: callback.path, headers: headers, body: Array(entry.body.utf8)
            ) { [self] result in
                completed(entry, result)
            }
        }
    }

    private func send(_ entry: OutboxEntry, to verifier: Verifier) {
        let body = Array(entry.body.utf8)
        let signature = IdPSignature.header(
            keyID: verifier.keyID, key: verifier.key, time: clock() / 1000, method: "POST", path: verifier.path,
            body: body)
        var headers: HTTPHeaders = [
            ("content-type", "application/json"), (IdPSignature.field, signature),
            ("idempotency-key", entry.challengeID),
        ]
        if let traceparent = entry.traceparent { headers.append(("traceparent", traceparent)) }
        verifier.client.send(method: "POST", path: verifier.path, headers: headers, body: body) { [self] result in
            completed(entry, result)
        }
    }

    private func completed(_ entry: OutboxEntry, _ result: Result<HTTPClientResponse, HTTPClientError>) {
        let now = clock()
        let problem: String
        switch result {
        case .success(let response) where (200...299).contains(response.status):
            attempts.increment("delivered")
            if case .ciba = entry.target,
                let status = CIBAStatus.allCases.first(where: { $0.callbackBody == entry.body })
            {
                cibaCallbacks.increment(status.rawValue)
            }
            latency.observe(Double(max(0, now - entry.endedAt)) / 1000)
            logger.debug("result delivered", metadata: Self.fields(of: entry))
            return finish(entry, .delivered(challengeID: entry.challengeID))
        case .success(let response) where !RetrySchedule.isRetryable(status: response.status):
            return deadLetter(
                entry, attempted: true, status: response.status,
                detail: "\(entry.target.name) answered \(response.status)")
        case .success(let response): problem = "\(entry.target.name) answered \(response.status)"
        case .failure(let error): problem = "\(error)"
        }
        let status = (try? result.get())?.status ?? 0
        guard now - entry.endedAt < RetrySchedule.periodMillis else {
            return deadLetter(entry, attempted: true, status: status, detail: "no 2xx within 24 h; last: \(problem)")
        }
        attempts.increment("retry")
        let failures = entry.attempts + 1
        let next = now + RetrySchedule.delayMillis(afterFailures: failures, using: &random)
        logger.debug(
            "callback to be retried",
            metadata: Self.fields(of: entry).merging(["attempts": "\(failures)", "problem": "\(problem)"]) { $1 })
        finish(
            entry, .retry(challengeID: entry.challengeID, attempts: failures, nextAttemptAt: next))
        wake(at: next)
    }

    private func deadLetter(_ entry: OutboxEntry, attempted: Bool, status: Int, detail: String) {
        attempts.increment("dead_letter")
        logger.warning(
            "callback dead-lettered", metadata: Self.fields(of: entry).merging(["detail": "\(detail)"]) { $1 })
        let letter = DeadLetter(
            entry: OutboxEntry(
                challengeID: entry.challengeID, tenantID: entry.tenantID, partition: entry.partition, body: entry.body,
                endedAt: entry.endedAt, attempts: entry.attempts + (attempted ? 1 : 0), traceparent: entry.traceparent,
                target: entry.target),
            status: status, detail: detail, deadAt: clock())
        finish(entry, .deadLetter(letter))
    }

    /// What every log line about a callback says: whose it is and the trace it belongs to.
    private static func fields(of entry: OutboxEntry) -> Logger.Metadata {
        [
            "tenant": "\(entry.tenantID)", "challenge_id": "\(entry.challengeID)",
            "traceparent": "\(entry.traceparent ?? "-")",
        ]
    }

    /// Stores the outcome; the callback stays taken until then, so that a read meanwhile does not send it again.
    private func finish(_ entry: OutboxEntry, _ change: OutboxChange) {
        outbox.commitOutbox([change]) { [self] result in
            taken.remove(entry.challengeID)
            switch result {
            case .success: break
            case .failure: reading.outcomeNotStored()
            }
            if reading.behind { pump() }
        }
    }
}

extension Forwarder: MetricsSource {
    func writeMetrics(to writer: inout MetricsWriter) {
        writer.family(
            "approvald_forward_attempts_total", .counter,
            help: "Callback attempts, by result: delivered, retry, dead_letter.")
        attempts.write("approvald_forward_attempts_total", labelName: "result", to: &writer)
        writer.family(
            "approvald_ciba_callbacks_total", .counter,
            help: "CIBA callbacks Keycloak took (2xx), by the status they told: SUCCEED, UNAUTHORIZED, CANCELLED.")
        cibaCallbacks.write("approvald_ciba_callbacks_total", labelName: "status", to: &writer)
        writer.family(
            "approvald_forward_latency_seconds", .histogram, help: "From a challenge's end to its verifier's 2xx.")
        latency.write("approvald_forward_latency_seconds", to: &writer)
    }
}

extension CallbackTarget {
    /// What answered, in a dead letter's detail and a log line.
    fileprivate var name: String {
        switch self {
        case .verifier: "the verifier"
        case .ciba: "the CIBA callback endpoint"
        }
    }
}
