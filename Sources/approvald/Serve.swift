// `approvald serve`: run the broker from a configuration file.
import ArgumentParser
import Broker
import Foundation
import Glibc
import Logging
import Service

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the broker.",
        discussion: """
            Reads the TOML configuration (see Config/approvald.example.toml for every option), opens the listeners and \
            serves until SIGTERM or SIGINT, which drain connections gracefully. Environment variables \
            APPROVALD_<SECTION>_<KEY> override the file (APPROVALD_HTTP2_IDLE_TIMEOUT_SECONDS=60, \
            APPROVALD_LISTENERS_0_PORT=9000). Exits 0 after a graceful stop, 78 for a configuration error (the \
            message names the key), 1 when it cannot start (a port in use, an unreadable store) or recovery fails. \
            With --check-config it only reads and checks the configuration, prints it as it would be in effect \
            (defaults and overrides applied, secrets masked) and exits 0, or 78 for an error.
            """)

    @Option(name: .long, help: "The configuration file.")
    var config = "Config/approvald.toml"

    @Option(
        name: .long,
        help: "Once ready (listening and recovered), write the bound listeners here as JSON (port 0 picks a free port)."
    )
    var readyFile: String?

    @Flag(
        name: .long,
        help: "Check the configuration and print it as in effect, secrets masked; exit 0, or 78 for an error.")
    var checkConfig = false

    func run() throws {
        let configuration: Configuration
        do {
            configuration = try Configuration.load(path: config)
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("approvald: configuration error: \(error.description)\n".utf8))
            throw ExitCode(78)  // EX_CONFIG
        }
        if checkConfig {
            print(
                "# \(BuildInfo.line): \(config) as in effect (defaults and APPROVALD_… overrides applied, secrets masked)"
            )
            print(configuration.effectiveTOML, terminator: "")
            return
        }
        LogOutput.bootstrap(format: configuration.logFormat, level: configuration.logLevel)
        var logger = Logger(label: "approvald")
        // Which of the instances on one Redis wrote a line.
        if let redis = configuration.redis { logger[metadataKey: "instance"] = .string(redis.instanceID) }
        let broker = try Broker(configuration: configuration, logger: logger)
        do {
            try broker.start()
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode.failure
        }
        broker.stopOnSignals()
        if let readyFile {
            let listeners = broker.boundListeners
            broker.onReady = {
                // Written once recovery is done: whoever waits for it may use the API at once.
                guard let data = try? JSONEncoder().encode(["listeners": listeners]) else { return }
                let temporary = readyFile + ".tmp"
                guard (try? data.write(to: URL(fileURLWithPath: temporary))) != nil else { return }
                _ = rename(temporary, readyFile)  // atomic: a reader never sees half a file
            }
        }
        broker.run()
        // Everything durable is committed and the store closed: exit now rather than free a domain of perhaps
        // millions of entries one object at a time.
        Glibc.exit(broker.hasFailed ? EXIT_FAILURE : EXIT_SUCCESS)
    }
}
