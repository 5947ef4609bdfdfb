// The approvald command line: serve, simulate, verifier, dev-cert, bench.
import ArgumentParser

@main
struct Approvald: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approvald",
        abstract: "A push-approval broker for passwordless sign-in, over HTTP/2.",
        subcommands: [Serve.self, Simulate.self, Verifier.self, DevCert.self, Bench.self],
        defaultSubcommand: Serve.self)
}
