// `approvald simulate` against the real broker: every scenario ends as the contract promises and its signed result
// reaches the simulation's own verifier; a broker it cannot use makes it fail with a clear message.
import Foundation
import TestSupport
import Testing

@Suite struct SimulateTests {
    /// A broker whose IdP client sends results to a free local port, where the simulation's verifier listens.
    private func broker(policy: String = "", environment: [String: String] = [:]) throws -> ApprovaldProcess {
        let probe = try RecordingServer()
        let port = probe.port
        probe.stop()
        return try ApprovaldProcess(
            extraConfig: brokerConfiguration(verifierURL: "http://127.0.0.1:\(port)/verify") + "\n" + policy,
            environment: environment)
    }

    /// A broker and a simulation against it whose verifier listens on the port the broker was told. The port is
    /// free when chosen but may be taken (by any connection's ephemeral port) before the simulation binds it: then
    /// both are made again, at most three times.
    /// `overTLS`: the simulation reaches the broker's TLS listener instead of its plain one.
    private func simulateWithItsVerifier(
        _ arguments: [String], environment: [String: String] = [:], overTLS: Bool = false
    ) throws -> (ApprovaldProcess, CommandResult) {
        var attempt = 1
        while true {
            let made = try broker(environment: environment)
            let run = try simulate(
                made, (overTLS ? ["--ca-file", made.certificatePath] : []) + arguments,
                url: overTLS ? made.tlsURL : made.h2cURL)
            guard attempt < 3, run.stdout.contains("Address already in use") else { return (made, run) }
            attempt += 1
        }
    }

    /// `url`: the broker's plain listener unless given.
    private func simulate(_ broker: ApprovaldProcess, _ arguments: [String], url: String? = nil) throws -> CommandResult
    {
        try runCommand(
            [
                approvaldBinary, "simulate", "--config", broker.directory.appendingPathComponent("approvald.toml").path,
                "--url", url ?? broker.h2cURL,
            ] + arguments, timeout: 60)
    }

    /// Every party over HTTP/1.1: the IdP and the phones (their event streams chunked) on the TLS listener with
    /// ALPN http/1.1, and on the plain one; the results to the simulation's verifier over HTTP/1.1 too.
    @Test(arguments: [true, false])
    func everyPartyOverHTTP1(overTLS: Bool) throws {
        let (_, run) = try simulateWithItsVerifier(
            [
                "--protocol", "http/1.1", "--devices", "3", "--flows", "4", "--mix",
                "approve,wrong_number,second_sign_in",
            ],
            overTLS: overTLS)
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(run.stdout.contains("4 as expected, 0 not"))
        #expect(run.stdout.contains("results at the verifier: 4 of 4, 4 with a valid signature"))
    }

    @Test func everyScenarioEndsAsPromisedAndItsResultReachesTheVerifier() throws {
        let (broker, run) = try simulateWithItsVerifier(
            ["--devices", "5", "--flows", "5", "--mix", "approve,wrong_number,not_me,silence,second_sign_in"])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        let output = run.stdout
        #expect(output.contains("summary: 5 sign-ins in"))
        #expect(output.contains("5 as expected, 0 not"))
        #expect(output.contains("approve: 1 approved"))
        #expect(output.contains("wrong_number: 1 denied (wrong_number)"))
        #expect(output.contains("not_me: 1 denied (not_me), then locked_out"))
        #expect(output.contains("silence: 1 expired"))
        #expect(output.contains("second_sign_in: 1 approved"))
        #expect(
            output.contains("a second sign-in while the first is pending: 200 password_fallback (pending_challenge)"))
        #expect(output.contains("results at the verifier: 5 of 5, 5 with a valid signature"))
        // The number the browser shows is among the phone's choices, and the phone taps it.
        let shown = try #require(output.firstMatch(of: /\[1 approve\] .* the browser shows (\d+);/)?.1)
        #expect(output.contains(try Regex("\\[1 approve\\] the phone shows [0-9 ]*\\b\(shown)\\b")))
        #expect(output.contains("[1 approve] the user taps \(shown) and approves with the device key: 200 approved"))
        // The silent phone's challenge lived its full ten seconds.
        let expiry = try #require(output.firstMatch(of: /\[\d+ silence\] the IdP sees expired \(\+([0-9.]+) ms\)/)?.1)
        #expect((Double(expiry) ?? 0) >= 9_900)
        // The broker counted what the simulation did (the last result's 2xx may reach it just after simulate ends).
        let counted = [
            "approvald_password_fallback_total{reason=\"pending_challenge\"} 1",
            "approvald_password_fallback_total{reason=\"locked_out\"} 1",
            "approvald_forward_attempts_total{result=\"delivered\"} 5",
        ]
        #expect(
            eventuallyBlocking {
                let metrics = (try? broker.curl("/metrics").body) ?? ""
                return counted.allSatisfy { metrics.contains($0) }
            })
    }

    /// JSON logs with access lines, at debug level, over every scenario: each line is one JSON object with its time,
    /// level and message, requests are logged by route template, and nothing secret or personal is written — no
    /// IdP secret, no device signature, no context value, no user id.
    @Test func jsonLogsOfAFullRunParseAndHoldNoSecret() throws {
        let (broker, run) = try simulateWithItsVerifier(
            ["--devices", "3", "--flows", "5", "--mix", "approve,wrong_number,not_me,second_sign_in"],
            environment: ["APPROVALD_LOG_FORMAT": "json", "APPROVALD_LOG_ACCESS": "true"])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        let lines = try String(contentsOfFile: broker.logPath, encoding: .utf8).split(separator: "\n")
        var requests = 0
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object != nil, "not a JSON object: \(line)")
            guard let object else { continue }
            let time = object["ts"] as? String ?? ""
            #expect(time.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil, "\(line)")
            #expect(object["level"] is String && object["msg"] is String, "\(line)")
            if object["msg"] as? String == "request" {
                requests += 1
                let route = object["route"] as? String ?? ""
                #expect(route.hasPrefix("/") || route == "unmatched")
                #expect(object["status"] is Int && object["duration_ms"] is Double && object["method"] is String)
            }
        }
        #expect(requests >= 20)
        #expect(
            lines.contains {
                $0.contains(#""route":"/v1/tenants/{tenant}/challenges","status":201,"tenant":"contoso""#)
            })
        let text = lines.joined(separator: "\n")
        for secret in [
            "a test secret that is at least thirty-two bytes", "Approvald-Device", "sig=", "Outlook", "Stockholm",
            "203.0.113.7", "Teams", "Lisbon", "Payroll", "@example.com", "@contoso.com",
        ] {
            #expect(!text.contains(secret), "the log holds \(secret)")
        }
    }

    @Test func phonesThatPollGetTheirChallengesToo() throws {
        let (broker, run) = try simulateWithItsVerifier(
            ["--devices", "2", "--flows", "4", "--mix", "approve,wrong_number", "--delivery", "poll"])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(run.stdout.contains("4 as expected, 0 not"))
        #expect(run.stdout.contains("results at the verifier: 4 of 4, 4 with a valid signature"))
        #expect(try broker.curl("/metrics").body.contains("approvald_device_streams 0"))
    }

    @Test func aVerifierAlreadyListeningGetsTheResults() throws {
        let verifier = try RecordingServer()
        defer { verifier.stop() }
        let broker = try ApprovaldProcess(extraConfig: brokerConfiguration(verifierURL: verifier.url))
        let run = try simulate(broker, ["--devices", "2", "--flows", "2", "--mix", "approve"])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(run.stdout.contains("results go to whatever listens there, unchecked"))
        #expect(run.stdout.contains("results: 2 sent to \(verifier.url), not checked here"))
        #expect(eventuallyBlocking { verifier.received.count == 2 })
    }

    @Test func aSignInThatEndsOtherwiseFailsTheRun() throws {
        // The tenant's policy targets no one: the phones cannot even be registered.
        let broker = try broker(policy: "[tenants.contoso]\ntarget = \"selected\"")
        let run = try simulate(broker, ["--flows", "2"])
        #expect(run.status != 0)
        #expect(run.stdout.contains("cannot register the phones"), "\(run.stdout)")
    }

    @Test func aBrokerThatIsNotThereIsNamed() throws {
        let broker = try broker()
        let url = broker.h2cURL
        _ = broker.stop()
        let run = try simulate(broker, [])
        #expect(run.status != 0)
        #expect(run.stdout.contains("cannot reach the broker at \(url)"), "\(run.stdout)")
    }

    @Test(arguments: [
        ("--mix", "approve,teleport", "unknown scenario 'teleport'"),
        ("--mix", "approve=-1", "the weight of approve must be a whole number"),
        ("--mix", "approve=0", "names no scenario with a weight above 0"),
        ("--silence-ttl", "5", "--silence-ttl must be 10–600"),
        ("--flows", "0", "--devices and --flows must be positive"),
    ])
    func badOptionsAreRefusedBeforeAnythingIsSent(option: String, value: String, message: String) throws {
        // No broker: the options are refused before the configuration is even read.
        let run = try runCommand([approvaldBinary, "simulate", "--config", "/nonexistent.toml", option, value])
        #expect(run.status == 64, "\(run.stdout)\(run.stderr)")
        #expect(run.stderr.contains(message), "\(run.stderr)")
    }

    @Test func aWrongKeyIsReportedNotRetried() throws {
        let broker = try broker()
        let run = try simulate(broker, ["--key-id", "no-such-key"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("has no IdP client with key id no-such-key"), "\(run.stderr)")
    }
}
