// The approvald command line: serve, dev-cert.
import ArgumentParser

@main
struct Approvald: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approvald",
        abstract: "A push-approval broker for passwordless sign-in, over HTTP/2.",
        subcommands: [Serve.self, DevCert.self, Bench.self, Verifier.self],
        defaultSubcommand: Serve.self)
}
