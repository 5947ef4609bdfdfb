// The approvald command line: serve, simulate, verifier, dev-cert, bench.
import ArgumentParser
import Crypto
import Service
import Tools

@main
struct Approvald: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approvald",
        abstract: "A push-approval broker for passwordless sign-in, over HTTP/2.",
        discussion: """
            Start the broker with `approvald serve --config FILE` (make run uses Config/approvald.toml), then watch \
            sign-ins end to end with `approvald simulate` in another terminal. The HTTP API is described in \
            docs/openapi.yaml, every configuration option in Config/approvald.example.toml.
            """,
        version: BuildInfo.line,
        subcommands: [
            Serve.self, Simulate.self, IdP.self, Phone.self, DemoApp.self, Verifier.self, DevCert.self, Bench.self,
        ],
        defaultSubcommand: Serve.self)

    static func main() async {
        OpenSSLLifetime.keepStateUntilExit()
        await main(nil)
    }
}
