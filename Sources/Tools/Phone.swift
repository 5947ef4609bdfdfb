// `approvald phone`: a terminal authenticator, the device SDK's reference app. `phone enroll <activation-uri>` makes a
// key and enrolls with it (the key and the credentials in a file of mode 0600); `phone` then shows each sign-in as it
// comes — the app, place and browser, the choices as large numbers, the time left — and takes the user's tap as a
// typed number, or `n` for "not me".
import ApprovalKit
import ArgumentParser
import Foundation
import Locking

public struct Phone: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "A terminal authenticator: enroll with an activation URI, then approve sign-ins by their number.",
        discussion: """
            Start with `approvald phone enroll '<activation-uri>'` (the text of the QR code an IdP shows), then run \
            `approvald phone` and tap the number the browser shows by typing it, or `n` if you did not start the \
            sign-in. The key and the credentials are kept in one file (mode 0600), by default \
            $XDG_CONFIG_HOME/approvald/phone.json (~/.config when XDG_CONFIG_HOME is not set).
            """,
        subcommands: [Listen.self, Enroll.self, Unenroll.self], defaultSubcommand: Listen.self)

    public init() {}
}

/// Where the phone keeps its key and credentials, and how it reaches the broker.
struct PhoneOptions: ParsableArguments {
    @Option(help: "The file of the key and credentials (default: $XDG_CONFIG_HOME/approvald/phone.json).")
    var credentials: String?
    @Option(help: "CA file for an https broker whose certificate the system does not trust.") var caFile: String?

    var path: String {
        if let credentials { return credentials }
        let environment = ProcessInfo.processInfo.environment
        let base =
            environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? NSHomeDirectory()) + "/.config"
        return base + "/approvald/phone.json"
    }
}

/// What the credentials file holds: the credentials, and the private key as PEM (whoever reads it is the phone).
struct PhoneFile: Codable {
    var credentials: DeviceCredentials
    var keyPEM: String

    static func read(_ path: String) throws -> PhoneFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("\(path) does not exist: enroll first (approvald phone enroll '<activation-uri>')")
        }
        return try JSONDecoder().decode(PhoneFile.self, from: data)
    }

    /// Written whole to a file of mode 0600, in a directory made (0700) if it is missing.
    func write(_ path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let temporary = path + ".new"
        guard
            FileManager.default.createFile(
                atPath: temporary, contents: try encoder.encode(self), attributes: [.posixPermissions: 0o600])
        else { throw ValidationError("cannot write \(temporary)") }
        guard rename(temporary, path) == 0 else { throw ValidationError("cannot write \(path)") }
    }

    /// The phone, on `transport` (which the caller closes when done).
    func device(on transport: EventLoopTransport) throws -> ApprovalDevice {
        ApprovalDevice(credentials: credentials, key: try SoftwareDeviceKey(pem: keyPEM), transport: transport)
    }

    func transport(caFile: String?) throws -> EventLoopTransport {
        try EventLoopTransport(baseURL: credentials.baseURL, caFile: caFile)
    }
}

extension Phone {
    struct Enroll: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enroll this terminal as a phone with an activation URI (the QR code's text).")

        @Argument(help: "approvald://enroll?v=1&url=…&tenant=…&code=…") var activationURI: String
        @Option(help: "The name the IdP shows for this phone (default: the one the IdP gave).") var name: String?
        @OptionGroup var options: PhoneOptions

        func run() async throws {
            let path = options.path
            if FileManager.default.fileExists(atPath: path) {
                throw ValidationError("\(path) holds a phone already: unenroll it first, or name another --credentials")
            }
            let key = try SoftwareDeviceKey()
            let made = Locked<EventLoopTransport?>(nil)
            defer { made.withLock { $0 }?.close() }
            let device = try await ApprovalDevice.enroll(
                activationURI: activationURI, key: key, displayName: name
            ) { [caFile = options.caFile] in
                let transport = try EventLoopTransport(baseURL: $0, caFile: caFile)
                made.withLock { $0 = transport }
                return transport
            }
            try PhoneFile(credentials: device.credentials, keyPEM: key.pem).write(path)
            let credentials = device.credentials
            say(
                "enrolled as \(credentials.deviceID) for \(credentials.userID) in \(credentials.tenantID) "
                    + "at \(credentials.baseURL); kept in \(path)")
        }
    }

    struct Unenroll: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Turn phone sign-in off: the broker forgets this phone, and its file is deleted.")

        @OptionGroup var options: PhoneOptions

        func run() async throws {
            let file = try PhoneFile.read(options.path)
            let transport = try file.transport(caFile: options.caFile)
            defer { transport.close() }
            try await file.device(on: transport).unenroll()
            try FileManager.default.removeItem(atPath: options.path)
            say("\(file.credentials.deviceID) is no longer a phone of \(file.credentials.userID)")
        }
    }

    struct Listen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show sign-ins as they come and answer them (the default).")

        @Flag(help: "Answer one sign-in, then exit (for scripts).") var once = false
        @OptionGroup var options: PhoneOptions

        func run() async throws {
            let file = try PhoneFile.read(options.path)
            let transport = try file.transport(caFile: options.caFile)
            defer { transport.close() }
            let device = try file.device(on: transport)
            say("\(file.credentials.userID)'s phone (\(file.credentials.deviceID)): waiting for sign-ins")
            var input = StandardInput.lines().makeAsyncIterator()
            for try await event in device.prompts() {
                switch event {
                case .withdrawn(let challengeID, let outcome):
                    say("sign-in \(challengeID) is over: \(outcome.replacingOccurrences(of: "_", with: " "))")
                case .disconnected(let reason): say("offline (\(reason)): connecting again")
                case .prompt(let prompt):
                    say(PromptScreen(prompt, now: Date()).text)
                    guard let answered = try await answer(prompt, on: device, reading: &input) else { return }
                    say(answered)
                    if once { return }
                }
            }
        }

        /// Reads the user's tap until it is one of the choices or `n`; nil when the input ends.
        private func answer(
            _ prompt: Prompt, on device: ApprovalDevice, reading input: inout AsyncStream<String>.Iterator
        ) async throws -> String? {
            while let line = await input.next() {
                let typed = line.trimmingCharacters(in: .whitespaces).lowercased()
                do {
                    if typed == "n" {
                        let outcome = try await device.deny(prompt, reason: .notMe)
                        return "not you: \(outcome.outcome) (passwordless sign-in is paused for a while)"
                    }
                    if let number = Int(typed), prompt.choices.contains(number) {
                        let outcome = try await device.approve(prompt, selecting: number)
                        return outcome.outcome == "approved" ? "approved" : "\(outcome.outcome): not the number shown"
                    }
                } catch let error as ApprovalError {
                    return "not answered: \(error)"
                }
                say("type one of \(prompt.choices.map(String.init).joined(separator: ", ")), or n if it was not you")
            }
            return nil
        }
    }
}

/// A prompt as the terminal shows it.
struct PromptScreen {
    let text: String

    init(_ prompt: Prompt, now: Date) {
        let context = prompt.context
        var lines = ["", "Sign-in request for \(prompt.userID)"]
        if let app = context["app"] { lines.append("  app:      \(app)") }
        if let place = context["location"] ?? context["place"] { lines.append("  from:     \(place)") }
        if let browser = context["browser"] { lines.append("  browser:  \(browser)") }
        if let address = context["ip"] { lines.append("  address:  \(address)") }
        if let left = Self.secondsLeft(until: prompt.expiresAt, now: now) {
            lines.append("  time left: \(left) s")
        }
        lines.append("Tap the number your browser shows (type it), or n if it was not you:")
        lines += BigDigits.render(prompt.choices)
        text = lines.joined(separator: "\n")
    }

    static func secondsLeft(until expiresAt: String, now: Date) -> Int? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: expiresAt).map { max(0, Int($0.timeIntervalSince(now).rounded())) }
    }
}

/// Numbers drawn five lines high, side by side.
enum BigDigits {
    private static let glyphs: [[String]] = [
        ["###", "# #", "# #", "# #", "###"], [" # ", "## ", " # ", " # ", "###"],
        ["###", "  #", "###", "#  ", "###"], ["###", "  #", "###", "  #", "###"],
        ["# #", "# #", "###", "  #", "  #"], ["###", "#  ", "###", "  #", "###"],
        ["###", "#  ", "###", "# #", "###"], ["###", "  #", "  #", "  #", "  #"],
        ["###", "# #", "###", "# #", "###"], ["###", "# #", "###", "  #", "###"],
    ]

    static func render(_ numbers: [Int]) -> [String] {
        (0..<5).map { row in
            numbers.map { number in
                String(number).compactMap { $0.wholeNumberValue }.map { glyphs[$0][row] }.joined(separator: " ")
            }.joined(separator: "      ")
        }
    }
}

/// Standard input's lines, read on a thread of their own (a blocking read must not hold a task's thread).
enum StandardInput {
    static func lines() -> AsyncStream<String> {
        AsyncStream { continuation in
            let thread = Thread {
                while let line = readLine() { continuation.yield(line) }
                continuation.finish()
            }
            thread.start()
        }
    }
}
