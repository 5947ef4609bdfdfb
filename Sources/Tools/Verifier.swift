// `approvald verifier`: a small IdP verifier for trying the broker out, printing each result it receives.
import ArgumentParser
import EventLoop
import Foundation
import HTTP

public struct Verifier: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Receive and print the broker's signed results, as an IdP's verifier would (for trying out).",
        discussion: """
            Listens on --host and --port (make run's configuration sends results to 127.0.0.1:9090) and checks the \
            Approvald-Signature of every POST against the IdP client's key: a valid result is printed and \
            acknowledged with 204, anything else refused with 401. Defaults match make run's development IdP. Runs \
            until interrupted.
            """)

    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The port to listen on.") var port = 9090
    @Option(help: "The IdP client's key id.") var keyID = "demo-dev"
    @Option(help: "The IdP client's secret.") var secret = "development-only-secret-do-not-use-0123456789"

    public init() {}

    public func run() throws {
        let loop = try EventLoop()
        let server = makeVerifierServer(loop: loop, keyID: keyID, secret: secret) { say($0.line) }
        let bound = try server.listen(host: host, port: port)
        say("approvald verifier: listening on \(host):\(bound) (HTTP/1.1 and h2c) for key \(keyID)")
        signal(SIGPIPE, SIG_IGN)
        let watchers = loop.watchTermination { _ in loop.stop() }
        loop.run()
        withExtendedLifetime((server, watchers)) {}
    }
}
