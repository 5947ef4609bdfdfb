// Wires a configuration into a running broker: the loop, the HTTP/2 server and its listeners, the application,
// signal handling and graceful shutdown.
import Core
import Crypto
import Foundation
import H2
import Logging
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
    let server: H2Server
    let logger: Logger
    private var signalWatchers: [SignalWatcher] = []
    private var store: SQLiteStore?
    public private(set) var boundListeners: [BoundListener] = []

    public init(configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        loop = try EventLoop()
        let application = Application(logger: logger)
        self.application = application
        server = H2Server(loop: loop, limits: configuration.http2, logger: logger) { request, responder in
            application.handle(request, responder)
        }
        server.onResponse = { application.recordResponse(status: $0) }
        server.earlyRefusal = { Problem($0).response }
        application.connectionCount = { [unowned server] in server.connectionCount }
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
                metadata: ["address": "\(listener.host):\(port)", "protocol": "\(listener.tls ? "h2" : "h2c")"])
        }
        let loop = self.loop
        let store = try SQLiteStore(directory: configuration.dataDirectory) { work in loop.execute(work) }
        self.store = store
        recoverInBackground(store)
    }

    /// Called on the loop once recovery has finished and the broker is ready.
    public var onReady: (() -> Void)?
    /// Set when the store could not be read: `run()` returns after a shutdown and the process should fail.
    public private(set) var recoveryFailed = false

    /// Reads the store into a new domain on a thread of its own while the loop already serves `/healthz` (200),
    /// `/readyz` (503) and the API (503); then hands the domain to the loop, which expires what lapsed meanwhile.
    private func recoverInBackground(_ store: SQLiteStore) {
        let started = Date()
        let loop = self.loop
        let logger = self.logger
        let policies = configuration.tenantPolicies
        let expected = configuration.expectedDevices
        let thread = Thread { [self] in
            do {
                // Owned by this thread until handed over.
                let core = ApprovalCore(random: BufferedSecureRandom(), configuredPolicies: policies)
                core.reserveCapacity(devices: expected, challenges: expected, fallbacks: 0)
                var counts = Recovered()
                try store.load { record in
                    switch record {
                    case .sizes(_, _, _, let callbacks): counts.callbacks = callbacks
                    case .device: counts.devices += 1
                    case .challenge: counts.challenges += 1
                    default: break
                    }
                    core.restore(record)
                }
                let handover = LoopBound(core)
                loop.execute { [self, counts] in
                    finishRecovery(handover.value, store: store, started: started, counts: counts)
                }
            } catch {
                logger.critical("cannot recover the store: \(error)")
                loop.execute { [self] in
                    recoveryFailed = true
                    shutdown()
                }
            }
        }
        thread.name = "approvald-recovery"
        thread.start()
    }

    private struct Recovered {
        var devices = 0
        var challenges = 0
        var callbacks = 0
    }

    private func finishRecovery(
        _ core: ApprovalCore<BufferedSecureRandom>, store: SQLiteStore, started: Date, counts: Recovered
    ) {
        let forwarding = Forwarder.Settings(
            timeoutSeconds: configuration.forwardTimeoutSeconds,
            maxInFlightPerVerifier: configuration.forwardMaxInFlightPerVerifier, caFile: configuration.forwardCAFile)
        let service: ApprovalService
        do {
            service = try ApprovalService(
                loop: loop, core: core, store: store, clients: configuration.idpClients,
                keepaliveSeconds: configuration.streamKeepaliveSeconds, forwarding: forwarding,
                apns: configuration.apns, fcm: configuration.fcm, logger: logger,
                clock: { UnixMillis(Date().timeIntervalSince1970 * 1000) })
        } catch {
            logger.critical("cannot start the service: \(error)")
            recoveryFailed = true
            return shutdown()
        }
        service.tick()
        service.forwarder.start(queued: counts.callbacks)
        application.service = service
        application.isReady = true
        let seconds = String(format: "%.3f", Date().timeIntervalSince(started))
        logger.info(
            "recovered",
            metadata: [
                "devices": "\(counts.devices)", "challenges": "\(counts.challenges)",
                "pending": "\(core.pendingChallenges)", "callbacks": "\(counts.callbacks)", "seconds": "\(seconds)",
            ])
        onReady?()
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
        application.isReady = false
        server.shutdown(graceSeconds: configuration.shutdownGraceSeconds) { [loop] in loop.stop() }
    }

    /// Runs the loop until shutdown completes.
    public func run() {
        loop.run()
        store?.close()
        logger.info("stopped")
    }
}
