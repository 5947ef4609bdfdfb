// `approvald idp`: the IdP's side by hand, for a tour or a smoke test of a deployment. `idp enroll USER` makes an
// enrollment and shows its QR code in the terminal (and its text, for `approvald phone enroll`), then waits for the
// phone; `idp sign-in USER` starts a sign-in, shows the number a browser would show, and waits for its end. It acts
// as one of the IdP clients of the broker's configuration file, as `approvald simulate` does.
import ArgumentParser
import EventLoop
import Foundation
import HTTP
import JSONText
import QRCode

public struct IdP: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "idp",
        abstract: "Act as the IdP by hand: enroll a phone with a QR code, or start a sign-in and wait for its end.",
        discussion: """
            Signs its requests as an IdP client of --config (the file the broker runs with; make run's by default), \
            so against `make run`: `approvald idp enroll alice@example.com` shows a QR code and its text for \
            `approvald phone enroll`, then `approvald idp sign-in alice@example.com` shows the number to tap on \
            the phone and prints how the sign-in ended. Each exits 0 when the phone enrolled or approved, 1 \
            otherwise.
            """,
        subcommands: [Enroll.self, SignIn.self])

    public init() {}

    struct Enroll: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an enrollment, show its QR code and activation URI, and wait for the phone.")

        @Argument(help: "The user the phone signs in.") var user: String
        @Option(help: "The name the device is listed under (the phone may choose its own).") var name: String?
        @Option(help: "How long the code may be used, in seconds (60–3600).") var ttl = 600
        @Flag(help: "Print the code and exit instead of waiting for the phone.") var noWait = false
        @OptionGroup var options: IdPOptions

        func validate() throws {
            guard (60...3600).contains(ttl) else { throw ValidationError("--ttl must be 60–3600") }
        }

        func run() async throws {
            let session = try IdPSession(options)
            defer { session.stop() }
            let tenant = session.account.tenant
            let body = JSONWriter.object { enrollment in
                enrollment.string("user_id", user)
                if let name { enrollment.string("display_name", name) }
                enrollment.integer("ttl_seconds", Int64(ttl))
            }
            let created = await session.requests.idp("POST", "/v1/tenants/\(tenant)/enrollments", body)
            let json = JSONValue.parse(Array(created.text.utf8))
            guard created.status == 201, let id = json?["enrollment_id"]?.string,
                let uri = json?["activation_uri"]?.string
            else { throw refused("the enrollment", created) }
            say(QRCode.terminalText(try QRCode.modules(for: uri)))
            say("Scan the code with the authenticator app, or give its text to the terminal authenticator:")
            say("  approvald phone enroll '\(uri)'")
            say("enrollment \(id) for \(user), until \(json?["expires_at"]?.string ?? "?")")
            guard !noWait else { return }
            say("waiting for the phone…")
            let ended = try await session.waitForEnd(of: "/v1/tenants/\(tenant)/enrollments/\(id)")
            guard ended["status"]?.string == "completed", let device = ended["device_id"]?.string else {
                say("the enrollment ended \(ended["status"]?.string ?? "?")")
                throw ExitCode.failure
            }
            say("enrolled: device \(device) (\(ended["display_name"]?.string ?? ""))")
        }
    }

    struct SignIn: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sign-in",
            abstract: "Start a sign-in, show the number the browser would show, and wait for the phone's answer.")

        @Argument(help: "The user signing in.") var user: String
        @Option(help: "The number the browser shows (0–99; default: a random one of 10–99).") var number: Int?
        @Option(help: "The app the phone names as asking.") var app = "approvald idp"
        @Option(help: "How long the phone may answer, in seconds (10–600; default: the tenant's policy).")
        var ttl: Int?
        @OptionGroup var options: IdPOptions

        func validate() throws {
            if let number, !(0...99).contains(number) { throw ValidationError("--number must be 0–99") }
            if let ttl, !(10...600).contains(ttl) { throw ValidationError("--ttl must be 10–600") }
        }

        func run() async throws {
            let session = try IdPSession(options)
            defer { session.stop() }
            let tenant = session.account.tenant
            let shown = number ?? Int.random(in: 10...99)
            let body = JSONWriter.object { challenge in
                challenge.string("request_id", "idp-\(UInt64.random(in: 0...UInt64.max))")
                challenge.string("user_id", user)
                challenge.integer("number", Int64(shown))
                if let ttl { challenge.integer("ttl_seconds", Int64(ttl)) }
                challenge.object("context") { context in context.string("app", app) }
            }
            let created = await session.requests.idp("POST", "/v1/tenants/\(tenant)/challenges", body)
            let json = JSONValue.parse(Array(created.text.utf8))
            guard created.status == 201 || created.status == 200, let status = json?["status"]?.string else {
                throw refused("the sign-in", created)
            }
            guard status == "pending", let id = json?["challenge_id"]?.string else {
                say("password instead: \(status) (\(json?["reason"]?.string ?? ""))")
                throw ExitCode.failure
            }
            say("\(user) signs in: the browser shows \(shown). Tap \(shown) on the phone.")
            say("challenge \(id), until \(json?["expires_at"]?.string ?? "?"); waiting for the phone…")
            let ended = try await session.waitForEnd(of: "/v1/tenants/\(tenant)/challenges/\(id)")
            let outcome = ended["status"]?.string ?? "?"
            let reason = ended["reason"]?.string.map { " (\($0))" } ?? ""
            let device = ended["device_id"]?.string.map { " by \($0)" } ?? ""
            say("\(outcome)\(reason)\(device)")
            if outcome != "approved" { throw ExitCode.failure }
        }
    }
}

/// Where the IdP acts: the broker's configuration file and what overrides it.
struct IdPOptions: ParsableArguments {
    @Option(help: "The broker's configuration file: where to reach it, and the IdP client's key.")
    var config = "Config/approvald.toml"
    @Option(help: "The broker (http:// or https://); default: the configuration's first plain listener.")
    var url: String?
    @Option(help: "The IdP client's key id (default: the configuration's first IdP client).") var keyID: String?
    @Option(help: "The tenant (default: the IdP client's first).") var tenant: String?
    @Option(help: "CA file for https (default: the configuration's TLS certificate, as make run's is self-signed).")
    var caFile: String?
}

/// The account, and its requests on a loop of their own.
private final class IdPSession: Sendable {
    let account: IdPAccount
    let requests: BrokerRequests
    private let loop: EventLoop
    private let loopEnded = DispatchSemaphore(value: 0)

    init(_ options: IdPOptions) throws {
        account = try IdPAccount(
            config: options.config, url: options.url, keyID: options.keyID, tenant: options.tenant,
            caFile: options.caFile)
        loop = try EventLoop()
        let tls = account.url.hasPrefix("https://") ? try TLSClientContext(caFile: account.caFile) : nil
        requests = try BrokerRequests(to: account.url, as: account, speaking: .h2, tls: tls, loop: loop)
        let (loop, loopEnded) = (self.loop, self.loopEnded)
        Thread {
            loop.run()
            loopEnded.signal()
        }.start()
    }

    /// Long-polls `path` until its status leaves `pending`; throws when the broker cannot be asked.
    func waitForEnd(of path: String) async throws -> JSONValue {
        while true {
            let polled = await requests.idp("GET", path + "?wait=25")
            guard polled.status == 200, let json = JSONValue.parse(Array(polled.text.utf8)) else {
                throw refused("the long poll", polled)
            }
            if json["status"]?.string != "pending" { return json }
        }
    }

    /// Closes the connection and stops the loop, waiting (at most 2 s) for it to end.
    func stop() {
        requests.close()
        loop.stop()
        _ = loopEnded.wait(timeout: .now() + 2)
    }
}

/// The broker's refusal, or that it could not be reached, as the command's error.
private func refused(_ what: String, _ answer: (status: Int, text: String)) -> ValidationError {
    guard answer.status != 0 else { return ValidationError("cannot reach the broker: \(answer.text)") }
    let json = JSONValue.parse(Array(answer.text.utf8))
    let problem = json?["code"]?.string.map { "\($0): \(json?["detail"]?.string ?? "")" }
    return ValidationError("\(what) was refused: \(answer.status) \(problem ?? String(answer.text.prefix(200)))")
}
