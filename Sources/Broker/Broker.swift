// The composition root: wires a configuration into a running broker (the loop, the HTTP server and its listeners,
// the store, the application and its service) and carries out its lifecycle, from start-up to a graceful stop.
import Core
import EventLoop
import Foundation
import HTTP
import Logging
import OIDC
import RedisStore
import Service
import Store

/// `@unchecked Sendable`: set up before the loop runs, then touched only on the loop's thread.
public final class Broker: @unchecked Sendable {
    public struct BoundListener: Sendable, Codable {
        public let host: String
        public let port: Int
        public let tls: Bool
    }

    public let configuration: Configuration
    public let loop: EventLoop
    public let application: Application
    let server: HTTPServer
    let logger: Logger
    private var signalWatchers: [SignalWatcher] = []
    private var journal: SQLiteJournal?
    private var redisStore: RedisStore?
    private var lifecycle = BrokerLifecycle()
    public private(set) var boundListeners: [BoundListener] = []
    /// The realm keys of each CIBA tenant whose keys are a file, read at start.
    private let cibaKeyFiles: [String: IssuerKeys]

    public init(configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        loop = try EventLoop()
        let application = Application(logger: logger)
        self.application = application
        server = HTTPServer(loop: loop, limits: configuration.http2, logger: logger) { request, responder in
            application.handle(request, responder)
        }
        // Access lines are at info: a level above it leaves them out, as it would any info line.
        application.attach(to: server)
        cibaKeyFiles = try Self.issuerKeyFiles(
            configuration.cibaChannels.mapValues(\.keys), setting: { "tenants.\($0).ciba.jwks_file" })
        if let oidc = configuration.oidc {
            application.oidc = try OIDCProvider(
                settings: oidc,
                keys: try Self.signingKeys(oidc, dataDirectory: configuration.dataDirectory, logger: logger),
                hintKeyFiles: try Self.issuerKeyFiles(
                    oidc.hintKeySources, setting: { "oidc.clients \($0): hint_jwks_file" }), loop: loop,
                caFile: configuration.forwardCAFile,
                logger: logger)
        }
        if configuration.accessLog && configuration.logLevel <= .info {
            application.enableAccessLog(format: configuration.logFormat, instanceID: configuration.redis?.instanceID)
        }
    }

    /// Opens every listener. Throws, naming the listener, when one cannot be opened.
    public func start() throws {
        var tls: TLSServerContext?
        if configuration.listeners.contains(where: \.tls), let certificate = configuration.tlsCertificatePath,
            let key = configuration.tlsPrivateKeyPath
        {
            tls = try TLSServerContext(certificateChainPath: certificate, privateKeyPath: key)
        }
        for listener in configuration.listeners {
            let port = try server.listen(host: listener.host, port: listener.port, tls: listener.tls ? tls : nil)
            boundListeners.append(BoundListener(host: listener.host, port: port, tls: listener.tls))
            logger.info(
                "listening",
                metadata: [
                    "address": "\(listener.host):\(port)",
                    "protocols": "\(listener.tls ? "h2, http/1.1 (ALPN)" : "h2c (prior knowledge), http/1.1")",
                ])
        }
        lifecycle.listenersOpened()
        if let redis = configuration.redis { return openRedis(redis) }
        let loop = self.loop
        let journal = try SQLiteJournal(directory: configuration.dataDirectory) { work in loop.execute(work) }
        self.journal = journal
        recoverInBackground(journal)
    }

    /// Called on the loop once recovery has finished and the broker is ready.
    public var onReady: (() -> Void)?
    /// Whether a part could not start (the store could not be read, Redis refused, the service could not start):
    /// `run()` returns after a shutdown and the process should fail.
    public var hasFailed: Bool { lifecycle.hasFailed }

    /// Reads the journal into a new store on a thread of its own while the loop already serves `/healthz` (200),
    /// `/readyz` (503) and the API (503); then hands the store to the loop, which expires what lapsed meanwhile.
    private func recoverInBackground(_ journal: SQLiteJournal) {
        let started = Date()
        let loop = self.loop
        let logger = self.logger
        let policies = configuration.tenantPolicies
        let expected = configuration.expectedDevices
        let thread = Thread { [self] in
            do {
                // Owned by this thread until handed over.
                let (store, counts) = try EmbeddedStore.recover(
                    journal, executor: { work in loop.execute(work) }, configuredPolicies: policies,
                    expectedUsers: expected)
                let handover = LoopBound(store)
                loop.execute { [self, counts] in
                    finishRecovery(handover.value, started: started, counts: counts)
                }
            } catch {
                logger.critical("cannot recover the store: \(error)")
                loop.execute { [self] in partFailed() }
            }
        }
        thread.name = "approvald-recovery"
        thread.start()
    }

    private func finishRecovery(_ store: EmbeddedStore, started: Date, counts: EmbeddedStore.Recovered) {
        guard startService(on: store) else { return }
        let seconds = String(format: "%.3f", Date().timeIntervalSince(started))
        logger.info(
            "recovered",
            metadata: [
                "devices": "\(counts.devices)", "challenges": "\(counts.challenges)",
                "pending": "\(store.gauges.pendingChallenges)", "callbacks": "\(counts.callbacks)",
                "seconds": "\(seconds)",
            ])
        onReady?()
    }

    /// Connects to Redis (trying until it answers) and prepares it; an unsafe or newer Redis stops the broker.
    private func openRedis(_ settings: RedisStore.Settings) {
        let store = RedisStore(
            settings: settings, loop: loop, configuredPolicies: configuration.tenantPolicies,
            clock: { UnixMillis(Date().timeIntervalSince1970 * 1000) }, logger: logger)
        redisStore = store
        logger.info(
            "connecting to Redis", metadata: ["redis": "\(settings.url)", "instance": "\(settings.instanceID)"])
        loop.execute { [self] in
            store.open { [self] opened in
                switch opened {
                case .failure(let error):
                    logger.critical("cannot use Redis: \(error)")
                    partFailed()
                case .success:
                    guard startService(on: store) else { return }
                    logger.info("store open", metadata: ["backend": "redis", "redis": "\(settings.url)"])
                    onReady?()
                }
            }
        }
    }

    /// Where phones reach the broker: the configuration's `public_url`, else the first listener as bound.
    private var publicURL: String {
        if let configured = configuration.publicURL { return configured }
        guard let first = boundListeners.first else { return "http://127.0.0.1:8080" }
        let host = first.host.contains(":") ? "[\(first.host)]" : first.host
        return "\(first.tls ? "https" : "http")://\(host):\(first.port)"
    }

    /// Starts the API over an open store; false when it is not started (the broker is stopping, or the service
    /// cannot start, which stops it).
    private func startService(on store: UserStore) -> Bool {
        guard lifecycle.storeOpened() == .startService else { return false }
        var forwarding = Forwarder.Settings()
        forwarding.timeoutSeconds = configuration.forwardTimeoutSeconds
        forwarding.maxInFlightPerVerifier = configuration.forwardMaxInFlightPerVerifier
        forwarding.caFile = configuration.forwardCAFile
        let service: ApprovalService
        do {
            service = try ApprovalService(
                loop: loop, store: StoreRoles(store), clients: configuration.idpClients,
                keepaliveSeconds: configuration.streamKeepaliveSeconds, forwarding: forwarding,
                apns: configuration.apns, fcm: configuration.fcm, publicURL: publicURL,
                ciba: (configuration.cibaChannels, cibaKeyFiles), logger: logger,
                clock: { UnixMillis(Date().timeIntervalSince1970 * 1000) })
        } catch {
            logger.critical("cannot start the service: \(error)")
            partFailed()
            return false
        }
        service.start()
        application.serve(service)
        lifecycle.serviceStarted()
        return true
    }

    /// SIGTERM and SIGINT start a graceful shutdown; when it ends, the loop stops and `run()` returns.
    public func stopOnSignals() {
        signal(SIGPIPE, SIG_IGN)
        signalWatchers = loop.watchTermination { [unowned self] signal in
            logger.info("signal received: draining", metadata: ["signal": "\(signal)"])
            shutdown()
        }
    }

    /// Graceful shutdown: GOAWAY, in-flight requests get `shutdown_grace_seconds`, then the loop stops.
    public func shutdown() {
        if lifecycle.stopRequested() == .drain { drain() }
    }

    private func partFailed() {
        if lifecycle.partFailed() == .drain { drain() }
    }

    private func drain() {
        application.drain()
        server.shutdown(graceSeconds: configuration.shutdownGraceSeconds) { [self] in
            guard let redisStore else { return stopped() }
            redisStore.close { [self] in stopped() }
        }
    }

    private func stopped() {
        lifecycle.drained()
        loop.stop()
    }

    /// Runs the loop until shutdown completes.
    public func run() {
        loop.run()
        journal?.close()
        logger.info("stopped")
    }
}
