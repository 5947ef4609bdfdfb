// The terminal authenticator as a person uses it, in tmux: enroll with the activation URI an IdP made, wait for a
// sign-in, see its context and its numbers, type a wrong entry and then the number the browser shows; the IdP sees
// the approval by the enrolled device. Then "turn off phone sign-in".
import Foundation
import Glibc
import TestSupport
import Testing

/// A tmux session of its own on a socket of its own, in a directory of its own, killed at the end.
///
/// tmux runs under bash with every descriptor but the standard three closed: the tmux server a first command starts
/// would otherwise keep the descriptor by which Foundation's Process learns that its child ended, and the command
/// would never be seen to end. The server is ended by its process id as well as by its socket, so that it goes
/// even when the socket has gone first.
final class TerminalSession {
    let socket: String
    let name: String
    private let directory: URL
    private var serverPID: pid_t = 0

    init(name: String = "phone", command: [String]) throws {
        self.name = name
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-tmux-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        socket = directory.appendingPathComponent("tmux.sock").path
        let quoted = command.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let started = try tmux(["new-session", "-d", "-s", name, "-x", "160", "-y", "50", quoted])
        guard started.status == 0 else { throw TestFailure(description: "tmux: \(started.stderr)") }
        serverPID =
            pid_t(try tmux(["display-message", "-p", "#{pid}"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            ?? 0
        // The screen stays readable after the program ends.
        _ = try tmux(["set-option", "-t", name, "remain-on-exit", "on"])
    }

    deinit {
        _ = try? tmux(["kill-server"])
        if serverPID > 0 { kill(serverPID, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }

    private func tmux(_ arguments: [String]) throws -> CommandResult {
        let closingInherited =
            "for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ \"$fd\" -gt 2 ] && eval \"exec $fd>&-\"; done; "
        return try runCommand(
            ["bash", "-c", closingInherited + "tmux \"$@\"", "bash", "-S", socket] + arguments, timeout: 10)
    }

    /// What the terminal shows now.
    var screen: String {
        (try? tmux(["capture-pane", "-p", "-t", name, "-S", "-100"]))?.stdout ?? ""
    }

    func type(_ text: String) throws {
        _ = try tmux(["send-keys", "-t", name, text, "Enter"])
    }

    func shows(_ text: String, within seconds: Double = 10) -> Bool {
        eventuallyBlocking(timeout: seconds) { self.screen.contains(text) }
    }

    /// Whether the program in it has ended.
    var hasEnded: Bool {
        (try? tmux(["display-message", "-p", "-t", name, "#{pane_dead}"]))?.stdout.hasPrefix("1") == true
    }
}

@Suite struct PhoneTests {
    @Test func aPersonEnrollsTheTerminalAndApprovesASignInByItsNumber() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idp = IdP(broker: broker)
        let created = try idp.call(
            "POST", "/v1/tenants/contoso/enrollments", "{\"user_id\":\"kai@contoso.com\",\"display_name\":\"Kai\"}")
        let uri = try #require(created.json["activation_uri"] as? String)
        let file = broker.directory.appendingPathComponent("phone/phone.json").path

        let enrolled = try runCommand(
            [approvaldBinary, "phone", "enroll", uri, "--credentials", file, "--name", "Kai's terminal"], timeout: 30)
        #expect(enrolled.status == 0, "\(enrolled.stderr)")
        #expect(enrolled.stdout.contains("enrolled as dev_") && enrolled.stdout.contains("kai@contoso.com"))
        let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let kept = try String(contentsOfFile: file, encoding: .utf8)
        #expect(kept.contains("BEGIN PRIVATE KEY") && kept.contains("\"deviceID\""))
        let again = try runCommand([approvaldBinary, "phone", "enroll", uri, "--credentials", file], timeout: 30)
        #expect(again.status != 0 && again.stderr.contains("holds a phone already"))

        let terminal = try TerminalSession(
            command: [approvaldBinary, "phone", "--credentials", file, "--once"])
        #expect(terminal.shows("waiting for sign-ins"), "\(terminal.screen)")
        let signIn = try idp.call(
            "POST", "/v1/tenants/contoso/challenges",
            #"{"request_id":"kai-1","user_id":"kai@contoso.com","number":42,"context":{"app":"Teams","location":"Lisbon, PT","browser":"Firefox"}}"#
        )
        #expect(signIn.status == 201)
        let challengeID = try #require(signIn.json["challenge_id"] as? String)
        #expect(terminal.shows("Tap the number"), "\(terminal.screen)")
        let screen = terminal.screen
        #expect(screen.contains("app:      Teams") && screen.contains("from:     Lisbon, PT"))
        #expect(screen.contains("browser:  Firefox") && screen.contains("time left:"))
        // 42 drawn large: its "4" and "2" glyphs' middle row side by side.
        #expect(screen.contains("### ###"))

        // Choices are 0–99: 100 is never one of them, so it is asked for again rather than sent.
        try terminal.type("100")
        #expect(terminal.shows("type one of"), "\(terminal.screen)")
        try terminal.type("42")
        #expect(terminal.shows("approved"), "\(terminal.screen)")
        #expect(eventuallyBlocking(timeout: 10) { terminal.hasEnded }, "--once exits after one answer")
        let status = try idp.call("GET", "/v1/tenants/contoso/challenges/\(challengeID)")
        #expect(status.json["status"] as? String == "approved")
        let deviceID = try #require(status.json["device_id"] as? String)
        #expect(kept.contains(deviceID))

        // Turning phone sign-in off forgets the device and its file.
        let off = try runCommand([approvaldBinary, "phone", "unenroll", "--credentials", file], timeout: 30)
        #expect(off.status == 0, "\(off.stderr)")
        #expect(!FileManager.default.fileExists(atPath: file))
        let devices = try idp.call("GET", "/v1/tenants/contoso/users/kai@contoso.com/devices")
        #expect(devices.status == 200 && !devices.body.contains(deviceID))
    }

    /// The README's tour, beside a broker: the IdP tool in one terminal shows a QR code and its text, which the
    /// terminal authenticator enrolls with; then a sign-in shows its number there, the person types it on the
    /// phone in the other terminal, and the IdP's terminal tells that it was approved; a "not me" ends the next.
    @Test func theToursTwoTerminalsEnrollThePhoneAndSignInByTheNumberShown() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idpTool = [
            "--config", broker.directory.appendingPathComponent("approvald.toml").path, "--url", broker.h2cURL,
        ]
        let idpTerminal = try TerminalSession(
            name: "idp",
            command: [approvaldBinary, "idp", "enroll", "lee@contoso.com", "--name", "Lee's terminal"] + idpTool)
        #expect(idpTerminal.shows("waiting for the phone"), "\(idpTerminal.screen)")
        #expect(
            idpTerminal.screen.contains("\u{2588}\u{2588}\u{2588}\u{2588} \u{2584}\u{2584}\u{2584}\u{2584}\u{2584} "),
            "a QR code's finder pattern")
        let shown = try #require(
            idpTerminal.screen.split(separator: "\n").compactMap { $0.firstRange(of: "approvald://") }.first.map {
                range in idpTerminal.screen[range.lowerBound...].prefix { $0 != "'" }
            })
        let file = broker.directory.appendingPathComponent("phone/phone.json").path
        let enrolled = try runCommand(
            [approvaldBinary, "phone", "enroll", String(shown), "--credentials", file], timeout: 30)
        #expect(enrolled.status == 0, "\(enrolled.stderr)")
        #expect(idpTerminal.shows("enrolled: device dev_"), "\(idpTerminal.screen)")
        #expect(eventuallyBlocking(timeout: 10) { idpTerminal.hasEnded })

        let phone = try TerminalSession(
            command: [approvaldBinary, "phone", "--credentials", file])
        #expect(phone.shows("waiting for sign-ins"), "\(phone.screen)")
        let signIn = try TerminalSession(
            name: "sign-in",
            command: [approvaldBinary, "idp", "sign-in", "lee@contoso.com", "--app", "Tour"] + idpTool)
        #expect(signIn.shows("Tap "), "\(signIn.screen)")
        let number = try #require(
            signIn.screen.firstMatch(of: /the browser shows (\d+)\./).map { String($0.output.1) })
        #expect(phone.shows("app:      Tour"), "\(phone.screen)")
        try phone.type(number)
        #expect(phone.shows("approved"), "\(phone.screen)")
        #expect(signIn.shows("approved by dev_"), "\(signIn.screen)")

        let notMe = try TerminalSession(
            name: "not-me",
            command: [approvaldBinary, "idp", "sign-in", "lee@contoso.com", "--number", "7"] + idpTool)
        #expect(notMe.shows("Tap 7"), "\(notMe.screen)")
        #expect(phone.shows("Tap the number"), "\(phone.screen)")
        try phone.type("n")
        #expect(notMe.shows("denied (not_me)"), "\(notMe.screen)")
    }

    /// The IdP tool's unhappy ends: a user without a phone goes to the password, a wrong number or key id is
    /// refused before anything is sent, and a broker that is not there is named.
    @Test func theIdPToolSaysWhyASignInCannotStart() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let config = broker.directory.appendingPathComponent("approvald.toml").path
        func idp(_ arguments: [String], url: String? = nil) throws -> CommandResult {
            try runCommand(
                [approvaldBinary, "idp"] + arguments + ["--config", config, "--url", url ?? broker.h2cURL], timeout: 30)
        }
        let noPhone = try idp(["sign-in", "nobody@contoso.com"])
        #expect(noPhone.status == 1 && noPhone.stdout.contains("password_fallback (no_device)"), "\(noPhone)")
        let badNumber = try idp(["sign-in", "nobody@contoso.com", "--number", "100"])
        #expect(badNumber.status != 0 && badNumber.stderr.contains("--number must be 0–99"))
        let badKey = try idp(["enroll", "nobody@contoso.com", "--key-id", "nope"])
        #expect(badKey.status != 0 && badKey.stderr.contains("no IdP client with key id nope"))
        let gone = try idp(["enroll", "nobody@contoso.com"], url: "http://127.0.0.1:9")
        #expect(gone.status != 0 && gone.stderr.contains("cannot reach the broker"), "\(gone)")
    }

    @Test func aPhoneThatIsNotEnrolledSaysSo() throws {
        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-\(UUID())/phone.json")
            .path
        let run = try runCommand([approvaldBinary, "phone", "--credentials", missing], timeout: 30)
        #expect(run.status != 0 && run.stderr.contains("enroll first"))
        let bad = try runCommand(
            [approvaldBinary, "phone", "enroll", "https://example.com", "--credentials", missing], timeout: 30)
        #expect(bad.status != 0 && bad.stderr.contains("not an activation URI"))
    }
}
