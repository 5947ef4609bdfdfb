// `approvald simulate`: a watched tour of a running broker. It plays the IdP, the users' phones and (unless another
// one listens there) the IdP's verifier, runs sign-ins that end in each way the product knows, prints every step as
// it happens, and checks each outcome against the one the contract promises.
import ApprovalKit
import ArgumentParser
import EventLoop
import Foundation
import HTTP
import JSONText
import Locking
import Protocol

public struct Simulate: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Run simulated sign-ins against a running broker and show each one as it happens.",
        discussion: """
            Reads the broker's URL, an IdP client's key and its verifier URL from --config (the file the broker \
            runs with), registers --devices phones with fresh P-256 keys, and runs --flows sign-ins spread over \
            them, each phone's one after another and the phones at once. Each sign-in plays one scenario of --mix; \
            the phone:

              approve         taps the number the browser shows: approved
              wrong_number    taps another number: denied (wrong_number)
              not_me          denies: denied (not_me); the next sign-in gets locked_out
              silence         never answers: expired after --silence-ttl seconds
              second_sign_in  gets a second sign-in meanwhile (pending_challenge), approves

            Unless --no-verifier is given, a verifier listens where the IdP client's verifier_url points (an \
            http:// URL on this machine) and checks that every ended sign-in's signed result arrives; if something \
            else already listens there, results go to it instead. Prints each step with its time since the \
            sign-in began, then a summary, and exits non-zero if any sign-in ended otherwise than its scenario \
            promises or a result did not reach the verifier.
            """)

    @Option(help: "The broker's configuration file: where to reach it, the IdP client's key, its verifier URL.")
    var config = "Config/approvald.toml"
    @Option(help: "The broker (http:// or https://); default: the configuration's first listener.")
    var url: String?
    @Option(
        name: .customLong("protocol"),
        help: """
            What the IdP and the phones speak: h2 (h2c with prior knowledge over http://, ALPN h2 over https://), \
            http/1.1, or negotiated (https only: as the broker chooses by ALPN).
            """)
    var httpProtocol = ClientProtocol.h2
    @Option(
        help: """
            Where the phones connect (their streams, polls and answers), when not --url: another instance on the \
            same store, to watch a sign-in cross instances.
            """)
    var deviceURL: String?
    @Option(help: "CA file for https (default: the configuration's TLS certificate, as make run's is self-signed).")
    var caFile: String?
    @Option(help: "The IdP client's key id (default: the configuration's first IdP client).") var keyID: String?
    @Option(help: "The tenant (default: the IdP client's first).") var tenant: String?
    @Option(help: "Simulated phones, one user each.") var devices = 4
    @Option(help: "Sign-ins to run.") var flows = 8
    @Option(
        help: """
            Scenarios and their weights, comma-separated: \(Scenario.allCases.map(\.rawValue).joined(separator: ", ")) \
            (a name alone weighs 1).
            """)
    var mix = "approve=3,wrong_number=1,not_me=1,silence=1,second_sign_in=2"
    @Option(help: "How phones receive challenges: stream (the event stream) or poll (the queue, every 250 ms).")
    var delivery = Delivery.stream
    @Option(help: "The lifetime of a challenge in the silence scenario, in seconds (10–600).")
    var silenceTTL = 10
    @Flag(help: "Do not listen for results: they go to whatever verifier the configuration names.")
    var noVerifier = false

    enum Delivery: String, ExpressibleByArgument, CaseIterable { case stream, poll }

    public func validate() throws {
        guard devices > 0, flows > 0 else { throw ValidationError("--devices and --flows must be positive") }
        guard (10...600).contains(silenceTTL) else { throw ValidationError("--silence-ttl must be 10–600") }
        _ = try Scenario.parseMix(mix)
    }

    public init() {}

    public func run() async throws {
        let setup = try SimulationSetup(self)
        let simulation = try Simulation(setup)
        let passed = await simulation.run()
        await simulation.stop()
        if !passed { throw ExitCode.failure }
    }
}

/// How one sign-in is played, and how it must end.
enum Scenario: String, CaseIterable, Sendable {
    case approve
    case wrongNumber = "wrong_number"
    case notMe = "not_me"
    case silence
    case secondSignIn = "second_sign_in"

    /// What the IdP must see in the end, as the summary counts it.
    var expected: String {
        switch self {
        case .approve: "approved"
        case .wrongNumber: "denied (wrong_number)"
        case .notMe: "denied (not_me), then locked_out"
        case .silence: "expired"
        case .secondSignIn: "pending_challenge, then approved"
        }
    }

    /// `--mix` as scenarios, each as often as its weight.
    static func parseMix(_ text: String) throws -> [Scenario] {
        var scenarios: [Scenario] = []
        for part in text.split(separator: ",") {
            let pieces = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard let scenario = Scenario(rawValue: pieces[0]) else {
                throw ValidationError(
                    "--mix: unknown scenario '\(pieces[0])' (known: \(allCases.map(\.rawValue).joined(separator: ", ")))"
                )
            }
            let weight = pieces.count == 2 ? Int(pieces[1]) : 1
            guard let weight, (0...1000).contains(weight) else {
                throw ValidationError("--mix: the weight of \(pieces[0]) must be a whole number 0–1000")
            }
            scenarios += Array(repeating: scenario, count: weight)
        }
        guard !scenarios.isEmpty else { throw ValidationError("--mix names no scenario with a weight above 0") }
        return scenarios
    }
}

/// What the simulation needs from the command line and the broker's configuration.
struct SimulationSetup: Sendable {
    /// The IdP the simulation plays, and the broker's URL.
    let account: IdPAccount
    /// Where the phones connect: the account's URL unless --device-url names another instance.
    let deviceURL: String
    let httpProtocol: ClientProtocol
    /// Where the simulation's verifier listens; nil: results go to the configured verifier, unchecked.
    let verifierAddress: (host: String, port: Int)?
    let devices: Int
    /// The scenario of each sign-in, in the order they are handed to the phones.
    let plan: [Scenario]
    let delivery: Simulate.Delivery
    let silenceTTL: Int

    init(_ command: Simulate) throws {
        account = try IdPAccount(
            config: command.config, url: command.url, keyID: command.keyID, tenant: command.tenant,
            caFile: command.caFile)
        deviceURL = command.deviceURL ?? account.url
        httpProtocol = command.httpProtocol
        verifierAddress = command.noVerifier ? nil : Self.localAddress(of: account.verifierURL)
        devices = command.devices
        delivery = command.delivery
        silenceTTL = command.silenceTTL
        // The mix repeated to --flows sign-ins; a not_me locks its user out, so each phone runs those last.
        let mix = try Scenario.parseMix(command.mix)
        let flows = (0..<command.flows).map { mix[$0 % mix.count] }
        plan = flows.filter { $0 != .notMe } + flows.filter { $0 == .notMe }
    }

    /// The host and port of an `http://` URL on this machine: the only kind of verifier URL the simulation can
    /// stand in for.
    private static func localAddress(of url: String) -> (host: String, port: Int)? {
        guard let components = URLComponents(string: url), components.scheme == "http",
            let host = components.host, ["127.0.0.1", "localhost", "::1"].contains(host)
        else { return nil }
        return (host == "localhost" ? "127.0.0.1" : host, components.port ?? 80)
    }
}

/// A simulated phone: its user, and the device ApprovalKit enrolled for it.
struct SimulatedPhone: Sendable {
    let user: String
    let device: ApprovalDevice

    var deviceID: String { device.credentials.deviceID }
}

/// How one sign-in ended, for the summary.
struct FlowReport: Sendable {
    let index: Int
    let scenario: Scenario
    let outcome: String
    let asExpected: Bool
    /// Challenges that ended and so owe a result to the verifier.
    let ended: [String]
    /// Milliseconds from the create to the phone's copy, and from the phone's answer to the IdP's view of it.
    let toPhone: Double?
    let answerToOutcome: Double?
}

/// The simulation: an event loop on a thread of its own carries every connection; each phone's sign-ins run as a
/// task of their own, one after another.
final class Simulation: Sendable {
    private let setup: SimulationSetup
    private let loop: EventLoop
    private let idp: BrokerRequests
    /// The phones' instance, when another than the IdP's: its readiness is checked too.
    private let phonesInstance: BrokerRequests?
    /// Distinguishes this run's users, phones and requests from earlier runs' on the same broker.
    private let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    private let events = Mailbox<String, PromptEvent>()
    /// Each phone's prompt stream, cancelled when the run stops.
    private let streams = Locked<[Task<Void, Never>]>([])
    /// Each phone's transport, on the simulation's loop, closed when the run stops.
    private let transports = Locked<[EventLoopTransport]>([])
    private let results = Mailbox<String, ReceivedResult>()
    private let verifier: UncheckedBox<HTTPServer?>
    private let started = ContinuousClock.now
    private let loopEnded = DispatchSemaphore(value: 0)

    init(_ setup: SimulationSetup) throws {
        self.setup = setup
        loop = try EventLoop()
        let account = setup.account
        let tls =
            [account.url, setup.deviceURL].contains { $0.hasPrefix("https://") }
            ? try TLSClientContext(caFile: account.caFile) : nil
        let loop = self.loop
        func requests(_ origin: String) throws -> BrokerRequests {
            try BrokerRequests(to: origin, as: account, speaking: setup.httpProtocol, tls: tls, loop: loop)
        }
        idp = try requests(account.url)
        phonesInstance = setup.deviceURL == account.url ? nil : try requests(setup.deviceURL)
        verifier = UncheckedBox(nil)
        let loopEnded = self.loopEnded
        let thread = Thread {
            loop.run()
            loopEnded.signal()
        }
        thread.start()
        if let address = setup.verifierAddress { startVerifier(at: address) }
    }

    /// Closes the connections and stops the loop once the verifier's connections have drained: an acknowledgement
    /// still unsent would make the broker retry a result the simulation already counted. The drain starts a second
    /// after the last result: a socket closed while the broker's last frames wait unread in it is reset, and a reset
    /// can discard an acknowledgement the broker had not read yet. Bounded: 5 s.
    func stop() async {
        for stream in streams.withLock({ $0 }) { stream.cancel() }
        for transport in transports.withLock({ $0 }) { transport.close() }
        idp.close()
        phonesInstance?.close()
        let verifier = self.verifier
        let loop = self.loop
        let drain = UncheckedBox<LoopTimer?>(nil)
        loop.execute {
            guard let server = verifier.value else { return loop.stop() }
            drain.value = loop.schedule(after: 1) { server.shutdown(graceSeconds: 2) { loop.stop() } }
        }
        let loopEnded = self.loopEnded
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                _ = loopEnded.wait(timeout: .now() + 5)
                continuation.resume()
            }
        }
        withExtendedLifetime(drain) {}  // the timer lives until the loop has ended
    }

    // MARK: The run

    /// Runs every sign-in and prints the summary; true if each ended as its scenario promises.
    func run() async -> Bool {
        say(
            "approvald simulate: \(setup.plan.count) sign-ins on \(setup.devices) phones against \(setup.account.url)"
                + (setup.deviceURL == setup.account.url ? ", " : " (phones on \(setup.deviceURL)), ")
                + "tenant \(setup.account.tenant), key \(setup.account.keyID), "
                + "delivery by \(setup.delivery.rawValue)")
        guard await reachable() else { return false }
        let phones: [SimulatedPhone]
        do {
            phones = try await register()
        } catch {
            say("cannot register the phones: \(error)")
            return false
        }
        let reports = await withTaskGroup(of: [FlowReport].self) { group in
            for (index, phone) in phones.enumerated() {
                let flows = stride(from: index, to: setup.plan.count, by: phones.count).map { ($0, setup.plan[$0]) }
                group.addTask {
                    var reports: [FlowReport] = []
                    for (number, scenario) in flows {
                        reports.append(await self.signIn(number + 1, scenario, phone))
                    }
                    return reports
                }
            }
            return await group.reduce(into: []) { $0 += $1 }.sorted { $0.index < $1.index }
        }
        let delivered = await awaitResults(for: reports.flatMap(\.ended))
        return summarize(reports, delivered: delivered)
    }

    /// Whether the broker (and the phones' instance, when another) is ready.
    private func reachable() async -> Bool {
        var targets = [(idp, setup.account.url)]
        if let phonesInstance { targets.append((phonesInstance, setup.deviceURL)) }
        for (requests, url) in targets {
            let (status, body) = await requests.send("GET", "/readyz")
            switch status {
            case 200: continue
            case 0: say("cannot reach the broker at \(url): \(body); is it running (make run)?")
            default: say("the broker at \(url) is not ready: \(status) \(body)")
            }
            return false
        }
        return true
    }

    /// Each phone is enrolled as a person would enrol one: the IdP makes an enrollment, and the phone (ApprovalKit,
    /// on the simulation's loop) completes it from the activation URI with a key of its own.
    private func register() async throws -> [SimulatedPhone] {
        var phones: [SimulatedPhone] = []
        for index in 0..<setup.devices {
            let user = "sim-\(runID)-user\(index + 1)@example.com"
            let body = JSONWriter.object { enrollment in
                enrollment.string("user_id", user)
                enrollment.string("display_name", "Simulated phone \(index + 1)")
            }
            let (status, text) = await idp.idp("POST", "/v1/tenants/\(setup.account.tenant)/enrollments", body)
            guard status == 201, let uri = JSONValue.parse(Array(text.utf8))?["activation_uri"]?.string else {
                throw SimulationError("\(user): \(status) \(text)")
            }
            // The phones reach the instance they are told to, whatever base URL the code carries.
            let transport = try EventLoopTransport(
                baseURL: setup.deviceURL, clientProtocol: setup.httpProtocol, caFile: setup.account.caFile, loop: loop)
            transports.withLock { $0.append(transport) }
            let device = try await ApprovalDevice.enroll(activationURI: uri, key: try SoftwareDeviceKey()) { _ in
                transport
            }
            let phone = SimulatedPhone(user: user, device: device)
            if setup.delivery == .stream { openStream(phone) }
            phones.append(phone)
        }
        say("registered \(phones.count) phones (\(phones.map(\.deviceID).joined(separator: ", ")))")
        return phones
    }

    // MARK: One sign-in

    private func signIn(
        _ index: Int, _ scenario: Scenario, _ phone: SimulatedPhone
    ) async
        -> FlowReport
    {
        let clock = ContinuousClock()
        let start = clock.now
        let label = "[\(index) \(scenario.rawValue)]"
        func log(_ text: String) {
            let elapsed = start.duration(to: clock.now)
            say("\(label) \(text) (+\(milliseconds(elapsed)) ms)")
        }
        func report(
            _ outcome: String, ok: Bool, ended: [String] = [], toPhone: Double? = nil, toIdP: Double? = nil
        )
            -> FlowReport
        {
            log(ok ? "as expected: \(outcome)" : "UNEXPECTED: \(outcome), expected \(scenario.expected)")
            return FlowReport(
                index: index, scenario: scenario, outcome: outcome, asExpected: ok, ended: ended, toPhone: toPhone,
                answerToOutcome: toIdP)
        }

        let number = Int.random(in: 0...99)
        let requestID = "sim-\(runID)-\(index)"
        let created = await create(requestID, phone, number, ttl: scenario == .silence ? setup.silenceTTL : nil)
        guard created.status == 201, let challengeID = created.json["challenge_id"]?.string else {
            return report(describe(created), ok: false)
        }
        log("\(phone.user) signs in; the browser shows \(number); challenge \(challengeID)")
        if scenario == .secondSignIn {
            let second = await create(requestID + "-again", phone, Int.random(in: 0...99), ttl: nil)
            log("a second sign-in while the first is pending: \(describe(second))")
            guard second.json["reason"]?.string == "pending_challenge" else {
                return report("second sign-in: \(describe(second))", ok: false, ended: [challengeID])
            }
        }

        // The IdP holds a long poll on the challenge while the phone gets and answers it.
        async let outcome = idpOutcome(of: challengeID)
        guard let prompt = await nextPrompt(challengeID, phone) else {
            _ = await outcome
            return report("the challenge never reached the phone", ok: false, ended: [challengeID])
        }
        let toPhone = milliseconds(start.duration(to: clock.now))
        let choices = prompt.choices
        log("the phone shows \(choices.map(String.init).joined(separator: " ")) for \(describeContext(prompt))")

        var answeredAt = clock.now
        switch scenario {
        case .approve, .secondSignIn, .wrongNumber:
            let tapped =
                scenario == .wrongNumber ? choices.first { $0 != number } ?? (number + 1) % 100 : number
            answeredAt = clock.now
            let answer = await respond(phone, prompt) { try await $0.approve(prompt, selecting: tapped) }
            log("the user taps \(tapped) and approves with the device key: \(describe(answer))")
        case .notMe:
            answeredAt = clock.now
            let answer = await respond(phone, prompt) { try await $0.deny(prompt, reason: .notMe) }
            log("the user taps \"it wasn't me\": \(describe(answer))")
        case .silence:
            log("the phone stays silent")
            if setup.delivery == .stream,
                case .withdrawn(_, let ending)? = await events.next(
                    for: phone.deviceID, within: Double(setup.silenceTTL) + 10)
            {
                log("the phone is told: \(ending)")
            }
        }
        let final = await outcome
        let toIdP = milliseconds(answeredAt.duration(to: clock.now))
        let status = final.json["status"]?.string ?? "?"
        let reason = final.json["reason"]?.string
        let seen = reason.map { "\(status) (\($0))" } ?? status
        log("the IdP sees \(seen)")

        let ok: Bool
        var outcomeText = seen
        switch scenario {
        case .approve, .secondSignIn: ok = seen == "approved"
        case .wrongNumber: ok = seen == "denied (wrong_number)"
        case .silence: ok = seen == "expired"
        case .notMe:
            let next = await create(requestID + "-next", phone, Int.random(in: 0...99), ttl: nil)
            log("the user's next sign-in: \(describe(next))")
            let lockedOut = next.json["reason"]?.string == "locked_out"
            outcomeText += lockedOut ? ", then locked_out" : ", then \(describe(next))"
            ok = seen == "denied (not_me)" && lockedOut
        }
        return report(
            outcomeText, ok: ok, ended: [challengeID], toPhone: toPhone,
            toIdP: scenario == .silence ? nil : toIdP)
    }

    /// The phone's prompt for the challenge: from its event stream, or by polling its queue.
    private func nextPrompt(_ challengeID: String, _ phone: SimulatedPhone) async -> Prompt? {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            switch setup.delivery {
            case .stream:
                guard let event = await events.next(for: phone.deviceID, within: 15) else { return nil }
                if case .prompt(let prompt) = event, prompt.challengeID == challengeID { return prompt }
            case .poll:
                if let queue = try? await phone.device.pendingPrompts(),
                    let prompt = queue.first(where: { $0.challengeID == challengeID })
                {
                    return prompt
                }
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
        return nil
    }

    /// The phone's answer, as the broker took it: 200 and its outcome, or the problem it refused it with.
    private func respond(
        _ phone: SimulatedPhone, _ prompt: Prompt, _ answer: (ApprovalDevice) async throws -> AnswerOutcome
    ) async -> Answer {
        do {
            let outcome = try await answer(phone.device)
            return Answer(
                status: 200,
                text: JSONWriter.object { answered in
                    answered.string("status", outcome.outcome)
                    answered.string("reason", outcome.reason)
                })
        } catch ApprovalError.refused(let status, let code, let detail) {
            return Answer(
                status: status,
                text: JSONWriter.object { problem in
                    problem.string("code", code)
                    problem.string("detail", detail)
                })
        } catch {
            return Answer(status: 0, text: "\(error)")
        }
    }

    // MARK: The IdP

    private func create(_ requestID: String, _ phone: SimulatedPhone, _ number: Int, ttl: Int?) async -> Answer {
        let body = JSONWriter.object { challenge in
            challenge.string("request_id", requestID)
            challenge.string("user_id", phone.user)
            challenge.integer("number", Int64(number))
            challenge.raw("context", Self.contexts.randomElement()!)
            if let ttl { challenge.integer("ttl_seconds", Int64(ttl)) }
        }
        let (status, text) = await idp.idp("POST", "/v1/tenants/\(setup.account.tenant)/challenges", body)
        return Answer(status: status, text: text)
    }

    /// The challenge once it has left `pending`, by long polls.
    private func idpOutcome(of challengeID: String) async -> Answer {
        while true {
            let (status, text) = await idp.idp(
                "GET", "/v1/tenants/\(setup.account.tenant)/challenges/\(challengeID)?wait=30", "")
            let answer = Answer(status: status, text: text)
            if status != 200 || answer.json["status"]?.string != "pending" { return answer }
        }
    }

    private static let contexts = [
        #"{"app":"Outlook","ip":"203.0.113.7","location":"Stockholm, SE","browser":"Edge"}"#,
        #"{"app":"Teams","ip":"198.51.100.23","location":"Lisbon, PT","browser":"Firefox"}"#,
        #"{"app":"Payroll","ip":"192.0.2.44","location":"Osaka, JP","browser":"Safari"}"#,
    ]

    // MARK: The verifier

    private func startVerifier(at address: (host: String, port: Int)) {
        let results = self.results
        let verifier = self.verifier
        let loop = self.loop
        let keyID = setup.account.keyID
        let secret = String(decoding: setup.account.secret, as: UTF8.self)
        let bound = DispatchSemaphore(value: 0)
        let outcome = UncheckedBox<String?>(nil)
        loop.execute {
            let server = makeVerifierServer(loop: loop, keyID: keyID, secret: secret) { result in
                results.deliver(result, for: result.challengeID)
            }
            do {
                _ = try server.listen(host: address.host, port: address.port)
                verifier.value = server
            } catch {
                outcome.value = "\(error)"
            }
            bound.signal()
        }
        bound.wait()
        if let failure = outcome.value {
            say(
                "verifier: \(failure); results go to whatever listens there, unchecked")
        } else {
            say("verifier: listening on \(address.host):\(address.port) for results signed with \(keyID)")
        }
    }

    /// The results of `challenges` the verifier received within 10 s of the last sign-in (all of them when none
    /// listens here: nothing to check).
    private func awaitResults(for challenges: [String]) async -> [ReceivedResult]? {
        guard verifier.value != nil else { return nil }
        var received: [ReceivedResult] = []
        let deadline = ContinuousClock.now + .seconds(10)
        for challenge in challenges {
            let left = max(0, Double(ContinuousClock.now.duration(to: deadline).components.seconds))
            guard let result = await results.next(for: challenge, within: left + 0.5) else { continue }
            say(
                "verifier: \(result.challengeID) \(result.outcome)\(result.reason.map { " (\($0))" } ?? ""), "
                    + "signature \(result.signatureValid ? "valid" : "INVALID")")
            received.append(result)
        }
        return received
    }

    // MARK: The summary

    private func summarize(_ reports: [FlowReport], delivered: [ReceivedResult]?) -> Bool {
        let seconds = Double(milliseconds(started.duration(to: .now))) / 1000
        let good = reports.filter(\.asExpected).count
        say(
            "summary: \(reports.count) sign-ins in \(String(format: "%.1f", seconds)) s, \(good) as expected, "
                + "\(reports.count - good) not")
        for scenario in Scenario.allCases {
            let ofScenario = reports.filter { $0.scenario == scenario }
            guard !ofScenario.isEmpty else { continue }
            let outcomes = Dictionary(grouping: ofScenario, by: \.outcome).sorted { $0.key < $1.key }
                .map { "\($0.value.count) \($0.key)" }.joined(separator: ", ")
            say("  \(scenario.rawValue): \(outcomes)")
        }
        let toPhone = reports.compactMap(\.toPhone)
        let toIdP = reports.compactMap(\.answerToOutcome)
        if !toPhone.isEmpty {
            say(
                "  create to phone: median \(median(toPhone)) ms; phone's answer to the IdP's view: median \(median(toIdP)) ms"
            )
        }
        let ended = reports.flatMap(\.ended).count
        guard let delivered else {
            say("  results: \(ended) sent to \(setup.account.verifierURL), not checked here")
            return good == reports.count
        }
        let valid = delivered.filter(\.signatureValid).count
        say("  results at the verifier: \(delivered.count) of \(ended), \(valid) with a valid signature")
        return good == reports.count && delivered.count == ended && valid == ended
    }

    // MARK: The phones

    /// Follows the phone's prompts for the whole run; they go to the phone's mailbox.
    private func openStream(_ phone: SimulatedPhone) {
        let events = self.events
        let task = Task {
            do {
                // The stream reconnects by itself: the scenario waits for prompts and their ends only.
                for try await event in phone.device.prompts() {
                    if case .disconnected = event { continue }
                    events.deliver(event, for: phone.deviceID)
                }
            } catch {
                say("\(phone.deviceID): the prompt stream ended: \(error)")
            }
        }
        streams.withLock { $0.append(task) }
    }
}

// MARK: - Helpers

/// A response's status and body, with the body parsed on demand.
struct Answer: Sendable {
    let status: Int
    let text: String
    var json: JSONValue { JSONValue.parse(Array(text.utf8)) ?? .null }
}

/// `201 pending`, `200 password_fallback (pending_challenge)`, `409 already_resolved: …`.
private func describe(_ answer: Answer) -> String {
    let json = answer.json
    if answer.status < 300, let status = json["status"]?.string {
        return "\(answer.status) \(status)\(json["reason"]?.string.map { " (\($0))" } ?? "")"
    }
    if let code = json["code"]?.string { return "\(answer.status) \(code): \(json["detail"]?.string ?? "")" }
    return "\(answer.status) \(answer.text.prefix(200))"
}

private func describeContext(_ prompt: Prompt) -> String {
    let app = prompt.context["app"] ?? "a sign-in"
    let place = prompt.context["location"].map { " from \($0)" } ?? ""
    return "\"\(app)\(place)\""
}

private func milliseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return ((Double(seconds) * 1000 + Double(attoseconds) / 1e15) * 10).rounded() / 10
}

private func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

struct SimulationError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Values handed from the loop to waiting tasks, first in first out per key; a wait ends with nil after its time.
final class Mailbox<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Value?, Never>
    }
    private struct State {
        var values: [Key: [Value]] = [:]
        var waiters: [Key: Waiter] = [:]
        var nextWaiter: UInt64 = 0
    }
    private let state = Locked(State())

    func deliver(_ value: Value, for key: Key) {
        let waiter = state.withLock { state -> Waiter? in
            if let waiter = state.waiters.removeValue(forKey: key) { return waiter }
            state.values[key, default: []].append(value)
            return nil
        }
        waiter?.continuation.resume(returning: value)
    }

    /// The next value for `key`, or nil if none comes within `seconds`. One waiter per key at a time.
    func next(for key: Key, within seconds: Double) async -> Value? {
        await withCheckedContinuation { continuation in
            let id = state.withLock { state -> UInt64? in
                if var queued = state.values[key], !queued.isEmpty {
                    let value = queued.removeFirst()
                    state.values[key] = queued
                    continuation.resume(returning: value)
                    return nil
                }
                state.nextWaiter += 1
                state.waiters[key] = Waiter(id: state.nextWaiter, continuation: continuation)
                return state.nextWaiter
            }
            guard let id else { return }
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
                let waiter = state.withLock { state -> Waiter? in
                    guard state.waiters[key]?.id == id else { return nil }
                    return state.waiters.removeValue(forKey: key)
                }
                waiter?.continuation.resume(returning: nil)
            }
        }
    }
}

/// A value handed between the loop and the caller under their own ordering (a semaphore, the loop's queue).
final class UncheckedBox<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

extension ClientProtocol: ExpressibleByArgument {}
