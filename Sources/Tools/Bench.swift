// `approvald bench`: drives a running broker as IdPs and devices would — distinct users, HMAC-signed creates over
// the project's HTTP client; phones on ApprovalKit with P-256 device keys, their event streams and signed answers —
// and reports throughput and latency. Everything, the phones' tasks included, runs on one event loop's thread.
import ApprovalKit
import ArgumentParser
import Crypto
import DequeModule
import EventLoop
import Foundation
import HTTP
import Histogram
import JSONText
import Logging
import Protocol

public struct Bench: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Load a running broker as IdPs and devices would, and report throughput and latency percentiles.",
        discussion: """
            Registers one device (a fresh P-256 key) per simulated user, then runs the timed phase: \
            'creates' sends HMAC-signed challenge creations for distinct users; 'roundtrips' runs whole sign-ins \
            for --users users whose phones hold their event streams open (up to 100 on a connection), from a second \
            after the streams were opened, so that their connecting is over before the timing starts: the IdP \
            creates a challenge, the phone gets it on its stream and answers with a signed approval of the right \
            number, and the sign-in counts once both the create and the answer are answered (one sign-in per user \
            at a time, users taking turns, so each does about requests/users; the tenant's policy must allow a \
            few more per user and window); 'streams' \
            opens every device's event stream, each on a connection of its own as a phone would, and holds them for \
            --hold seconds. Prints a progress line each second and one summary line per phase. Defaults match \
            `make run`'s development IdP.
            """)

    enum Mode: String, ExpressibleByArgument, CaseIterable { case creates, roundtrips, streams }

    @Option(help: "The broker (http:// or TLS https://).") var url = "http://127.0.0.1:8080"
    @Option(
        help: """
            What the IdP's clients speak: h2 (h2c with prior knowledge over http://), http/1.1 (a pool of persistent \
            connections per client), or negotiated (https only). The phones speak HTTP/2.
            """)
    var idpProtocol = ClientProtocol.h2
    @Option(help: "Where the phones connect, when not --url: another instance on the same store.")
    var deviceURL: String?
    @Option(help: "CA file for https (default: the system's).") var caFile: String?
    @Option(help: "The IdP client's key id.") var keyID = "demo-dev"
    @Option(help: "The IdP client's secret.") var secret = "development-only-secret-do-not-use-0123456789"
    @Option(help: "The tenant.") var tenant = "demo"
    @Option(help: "What to time: \(Mode.allCases.map(\.rawValue).joined(separator: ", ")).") var mode = Mode.roundtrips
    @Option(help: "Sign-ins (creates: one user each).") var requests = 10_000
    @Option(help: "roundtrips: users (phones with an open event stream) the sign-ins are spread over.")
    var users = 2_000
    @Option(help: "Sign-ins in flight at once.") var concurrency = 64
    @Flag(help: "Register the devices for APNs wake-ups (a hex token each), so that creates make pushes.")
    var apns = false
    @Option(
        help: """
            The IdP's clients: HTTP/2 connections, or HTTP/1.1 pools that share --concurrency connections (phones have \
            their own: one each in streams, one per 100 in roundtrips).
            """)
    var connections = 4
    @Option(help: "streams: how long to hold the streams open, in seconds.") var hold = 60.0
    @Option(
        help: """
            creates, roundtrips: start the timed sign-ins at this many per second (an open loop, at most \
            --concurrency in flight), each timed from when it was due, instead of keeping --concurrency in flight.
            """)
    var rate: Double?
    @Option(
        help: """
            The broker's process id, on this machine: each phase also reports the broker's CPU time (user + system) \
            per request over the phase; given for each of several instances, their sum.
            """)
    var brokerPID: [Int32] = []
    @Option(help: "The store's process id (a redis-server on this machine): each phase reports its CPU per request.")
    var storePID: Int32?
    @Option(
        help: """
            With one --broker-pid whose broker runs with bench/broker/malloc-count.c preloaded: the file it writes its \
            allocation count to on SIGUSR2. Each phase then reports the broker's allocations per request.
            """)
    var brokerAllocationsFile: String?

    public func validate() throws {
        guard requests > 0, concurrency > 0, connections > 0, users > 0 else {
            throw ValidationError("requests, concurrency, connections and users must be positive")
        }
        if let rate, !(rate > 0) { throw ValidationError("rate must be positive") }
        if brokerAllocationsFile != nil && brokerPID.count != 1 {
            throw ValidationError("--broker-allocations-file counts one broker: give one --broker-pid")
        }
    }

    public init() {}

    public func run() throws {
        let loop = try EventLoop()
        let tls = url.hasPrefix("https://") ? try TLSClientContext(caFile: caFile) : nil
        var logger = Logger(label: "approvald-bench")
        logger.logLevel = .error
        let runner = try BenchRunner(loop: loop, bench: self, tls: tls, logger: logger)
        loop.execute { runner.start() }
        loop.run()
        runner.release()
        if runner.failures > 0 { throw ExitCode.failure }
    }
}

/// The load generator's state, on its own event loop.
///
/// `@unchecked Sendable`: confined to the loop.
final class BenchRunner: @unchecked Sendable {
    /// Event streams on one connection in roundtrips mode (the broker allows 128 concurrent streams).
    private static let streamsPerConnection = 100

    private let loop: EventLoop
    private let bench: Bench
    /// The IdP's connections: registrations and creates.
    private let idpClients: [any HTTPClient]
    /// The phones' connections (none in creates mode): each phone's in streams mode, one per 100 phones in
    /// roundtrips mode.
    private var transports: [EventLoopTransport] = []
    /// Each user's phone, and the tasks that follow their prompts.
    private var phones: [ApprovalDevice] = []
    private var phoneTasks: [Task<Void, Never>] = []
    private var phoneTasksRunning = 0
    /// Distinguishes this run's users and devices from earlier runs' on the same broker.
    private let run = String(SecureRandom.bytes(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }, radix: 36)
    private let userCount: Int
    private let concurrency: Int
    private let keys: [SoftwareDeviceKey]
    private lazy var hmacKey = HMACSHA256.Key(bench.secret)
    private var next = 0
    private var done = 0
    private var phaseCount = 0
    private(set) var failures = 0
    private var firstFailure: String?
    private var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    /// roundtrips: from sending a create to its event on the phone's stream, in µs.
    private var deliveries = Histogram<UInt64>(
        highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    private var phase = ""
    private var phaseStart: UInt64 = 0
    /// The brokers' and the store's CPU seconds when the phase started, if their pids were given.
    private var phaseBrokerCPU: Double?
    private var phaseStoreCPU: Double?
    /// This process's CPU seconds when the phase started: the load tool's own cost per request.
    private var phaseClientCPU = 0.0
    /// The broker's allocations when the phase started, when it counts them.
    private var phaseBrokerAllocations: Double?
    /// Nanoseconds between starts in a paced phase; nil: keep `concurrency` in flight.
    private var pace: Double?
    private var pacer: LoopTimer?
    private var progress: LoopTimer?
    private var onPhaseDone: (() -> Void)?
    private var step: ((Int, @escaping (String?) -> Void) -> Void)?
    private var holdingOver = false
    private var inFlight = 0
    private var filling = false
    private var nextPhase: LoopTimer?
    private var pauseAfterPhase = 0.0
    private var holdTimer: LoopTimer?
    private var stopAnyway: LoopTimer?
    /// roundtrips: users without a sign-in in flight, the one idle longest first (users take turns), and each
    /// user's sign-in.
    private var idleUsers = Deque<Int>()
    private var signIns: [SignIn?] = []

    init(loop: EventLoop, bench: Bench, tls: TLSClientContext?, logger: Logger) throws {
        self.loop = loop
        self.bench = bench
        userCount = bench.mode == .roundtrips ? min(bench.users, bench.requests) : bench.requests
        concurrency = bench.mode == .roundtrips ? min(bench.concurrency, userCount) : bench.concurrency
        // Before any connection exists: its connect timeout would run while the keys are made.
        keys = try (0..<userCount).map { _ in try SoftwareDeviceKey() }
        var idpOptions = HTTPClientOptions()
        idpOptions.requestTimeoutSeconds = 30
        idpOptions.maxConnections = max(1, (bench.concurrency - 1) / bench.connections + 1)
        idpClients = try (0..<bench.connections).map { _ in
            try makeHTTPClient(
                loop: loop, origin: bench.url, tls: bench.url.hasPrefix("https://") ? tls : nil,
                speaking: bench.idpProtocol, options: idpOptions, logger: logger)
        }
        let phonesURL = bench.deviceURL ?? bench.url
        let connections =
            switch bench.mode {
            case .creates: 0
            case .streams: userCount
            case .roundtrips: (userCount - 1) / Self.streamsPerConnection + 1
            }
        transports = try (0..<connections).map { _ in
            try EventLoopTransport(baseURL: phonesURL, clientProtocol: .h2, caFile: bench.caFile, loop: loop)
        }
        guard connections > 0 else { return }
        phones = (0..<userCount).map { index in
            ApprovalDevice(
                credentials: DeviceCredentials(
                    baseURL: phonesURL, tenantID: bench.tenant, deviceID: device(index), userID: user(index),
                    displayName: ""),
                key: keys[index],
                transport: transports[bench.mode == .streams ? index : index / Self.streamsPerConnection])
        }
    }

    /// After the loop has stopped: drops the closures and timers that refer back to the runner, so that it, its
    /// clients and their connections are freed rather than kept by their own references.
    func release() {
        onPhaseDone = nil
        step = nil
        pacer = nil
        progress = nil
        nextPhase = nil
        holdTimer = nil
        phoneTasks = []
        phones = []
        transports = []
    }

    func start() {
        say(
            "approvald bench: \(bench.mode.rawValue), \(bench.requests) sign-ins, \(concurrency) in flight, "
                + "\(bench.connections) connections, \(bench.url) tenant \(bench.tenant), run \(run)")
        // The phones' tasks end first (cancelled, their requests failed by the closed transports), so that nothing
        // of theirs is left queued on the loop when it stops.
        let finish = { [self] in
            holdingOver = true
            for client in idpClients { client.close() }
            for task in phoneTasks { task.cancel() }
            for transport in transports { transport.close() }
            if phoneTasksRunning == 0 { loop.stop() }
            stopAnyway = loop.schedule(after: 5) { [unowned self] in
                say("  \(phoneTasksRunning) phones still running after 5 s; stopping")
                loop.stop()
            }
        }
        let registerStep: (Int, @escaping (String?) -> Void) -> Void = { [unowned self] in register($0, $1) }
        let streamStep: (Int, @escaping (String?) -> Void) -> Void = { [unowned self] in openStream($0, $1) }
        runPhase("register", count: userCount, step: registerStep) { [self] in
            switch bench.mode {
            case .creates:
                runPhase(
                    "creates", count: bench.requests, paced: true, step: { [unowned self] in createOnly($0, $1) },
                    then: finish)
            case .roundtrips:
                idleUsers = Deque(0..<userCount)
                signIns = Array(repeating: nil, count: userCount)
                // A thousand phones connecting at once keep the broker busy for a moment after their requests went
                // out (authenticating each, routing its deliveries, reading its queue): a burst of its own, which
                // the sign-ins' latency would otherwise include.
                runPhase("streams", count: userCount, pauseAfter: 1, step: streamStep) { [self] in
                    runPhase(
                        "roundtrips", count: bench.requests, paced: true,
                        step: { [unowned self] in roundTrip($0, $1) }, then: finish)
                }
            case .streams:
                runPhase("streams", count: userCount, step: streamStep) { [self] in
                    say("holding \(userCount) streams for \(bench.hold) s")
                    holdTimer = loop.schedule(after: bench.hold) { [self] in
                        if failures > 0 { say("  failures while holding: \(failures), first: \(firstFailure ?? "")") }
                        finish()
                    }
                }
            }
        }
    }

    // MARK: Phases

    /// Runs `step` for each of `count`, then `then` once `pauseAfter` seconds have passed since the last completed.
    private func runPhase(
        _ name: String, count: Int, paced: Bool = false, pauseAfter: Double = 0,
        step: @escaping (Int, @escaping (String?) -> Void) -> Void, then: @escaping () -> Void
    ) {
        pace = paced ? bench.rate.map { 1e9 / $0 } : nil
        pauseAfterPhase = pauseAfter
        phase = name
        phaseCount = count
        next = 0
        done = 0
        inFlight = 0
        histogram.reset()
        deliveries.reset()
        self.step = step
        onPhaseDone = then
        say("  \(name): started")
        phaseStart = monotonicNanoseconds()
        phaseBrokerCPU = cpuSeconds(bench.brokerPID)
        phaseStoreCPU = cpuSeconds(bench.storePID.map { [$0] } ?? [])
        phaseClientCPU = ownCPUSeconds()
        phaseBrokerAllocations = brokerAllocations()
        progress = loop.schedule(after: 1) { [unowned self] in reportProgress() }
        fill()
    }

    /// Keeps `concurrency` steps in flight, or starts them as they fall due in a paced phase. A loop, not recursion:
    /// a step may complete before `step` returns.
    private func fill() {
        guard !filling else { return }
        filling = true
        defer { filling = false }
        while inFlight < concurrency && next < phaseCount, let step {
            var started = monotonicNanoseconds()
            if let pace {
                let due = phaseStart + UInt64(Double(next) * pace)
                guard due <= started else {
                    if pacer == nil { pacer = loop.makeTimer { [unowned self] in fill() } }
                    pacer?.schedule(after: Double(due - started) / 1e9)
                    break
                }
                // Late starts (at the in-flight cap, or a busy loop) count against the latency.
                started = due
            }
            let index = next
            next += 1
            inFlight += 1
            step(index) { [unowned self] failure in
                if let failure {
                    failures += 1
                    if firstFailure == nil { firstFailure = failure }
                } else {
                    _ = histogram.record((monotonicNanoseconds() - started) / 1000)
                }
                inFlight -= 1
                done += 1
                if done == phaseCount { finishPhase() } else { fill() }
            }
        }
    }

    private func reportProgress() {
        say("  \(phase): \(done)/\(phaseCount)")
        progress?.schedule(after: 1)
    }

    private func finishPhase() {
        progress = nil
        let seconds = Double(monotonicNanoseconds() - phaseStart) / 1e9
        func ms(_ percentile: Double) -> String {
            String(format: "%.2f", Double(histogram.valueAtPercentile(percentile)) / 1000)
        }
        say(
            "bench \(phase) requests=\(phaseCount) concurrency=\(concurrency) connections=\(bench.connections) "
                + (pace.map { "rate=\(String(format: "%.0f", 1e9 / $0))/s " } ?? "")
                + "seconds=\(String(format: "%.2f", seconds)) throughput=\(String(format: "%.0f", Double(phaseCount) / seconds))/s "
                + "p50=\(ms(50))ms p90=\(ms(90))ms p99=\(ms(99))ms max=\(String(format: "%.2f", Double(histogram.maxRecorded) / 1000))ms "
                + deliveryLatency() + processCPU() + "failures=\(failures)")
        if let firstFailure { say("  first failure: \(firstFailure)") }
        // The next phase starts from the loop, not from inside this step's completion.
        let then = onPhaseDone
        onPhaseDone = nil
        nextPhase = loop.schedule(after: pauseAfterPhase) { then?() }
    }

    /// `broker_cpu_us=…` (and `store_cpu_us=…`) per request of the phase, when the pids were given.
    private func processCPU() -> String {
        func perRequest(_ name: String, _ before: Double?, _ pids: [Int32]) -> String {
            guard let before, let after = cpuSeconds(pids) else { return "" }
            return "\(name)=\(String(format: "%.1f", (after - before) / Double(phaseCount) * 1e6)) "
        }
        let client = (ownCPUSeconds() - phaseClientCPU) / Double(phaseCount) * 1e6
        var allocations = ""
        if let before = phaseBrokerAllocations, let after = brokerAllocations() {
            allocations = "broker_allocs=\(String(format: "%.1f", (after - before) / Double(phaseCount))) "
        }
        return perRequest("broker_cpu_us", phaseBrokerCPU, bench.brokerPID)
            + perRequest("store_cpu_us", phaseStoreCPU, bench.storePID.map { [$0] } ?? [])
            + allocations + "client_cpu_us=\(String(format: "%.1f", client)) "
    }

    /// The broker's allocations so far, from its counter (bench/broker/malloc-count.c): asked for by SIGUSR2, read
    /// from the file it writes then (waiting at most a second). Nil when not counted.
    private func brokerAllocations() -> Double? {
        guard let file = bench.brokerAllocationsFile, bench.brokerPID.count == 1 else { return nil }
        unlink(file)
        guard kill(bench.brokerPID[0], SIGUSR2) == 0 else { return nil }
        for _ in 0..<200 {
            if let text = try? String(contentsOfFile: file, encoding: .utf8), text.hasSuffix("\n"),
                let count = Double(text.dropLast())
            {
                return count
            }
            usleep(5000)
        }
        return nil
    }

    /// The summed CPU seconds of these processes; nil for none or one that is gone.
    private func cpuSeconds(_ pids: [Int32]) -> Double? {
        guard !pids.isEmpty else { return nil }
        var total = 0.0
        for pid in pids {
            guard let seconds = processCPUSeconds(pid) else { return nil }
            total += seconds
        }
        return total
    }

    /// roundtrips: `delivery_p50=… delivery_p99=…`, from a create sent to its event on the phone's stream.
    private func deliveryLatency() -> String {
        guard deliveries.totalCount > 0 else { return "" }
        func ms(_ percentile: Double) -> String {
            String(format: "%.2f", Double(deliveries.valueAtPercentile(percentile)) / 1000)
        }
        return "delivery_p50=\(ms(50))ms delivery_p99=\(ms(99))ms "
    }

    // MARK: Steps

    private func user(_ index: Int) -> String { "bench-\(run)-user-\(index)" }
    private func device(_ index: Int) -> String { "bench-\(run)-device-\(index)" }

    private func register(_ index: Int, _ done: @escaping (String?) -> Void) {
        let body = JSONWriter.object { device in
            device.string("user_id", user(index))
            device.string("public_key", Data(keys[index].publicKeySPKI).base64EncodedString())
            device.object("push") { push in
                push.string("provider", bench.apns ? "apns" : "none")
                if bench.apns {
                    push.string("token", String(format: "%064x", index))
                    push.string("topic", "com.example.bench")
                }
            }
        }
        idp(index, "PUT", "/v1/tenants/\(bench.tenant)/devices/\(device(index))", body) { status, text in
            done(status == 201 ? nil : "register: \(status) \(text.prefix(200))")
        }
    }

    private func createChallenge(_ index: Int, for user: Int, _ done: @escaping (String?) -> Void) {
        let body = JSONWriter.object { challenge in
            challenge.string("request_id", "bench-\(run)-\(index)")
            challenge.string("user_id", self.user(user))
            challenge.integer("number", 42)
        }
        idp(index, "POST", "/v1/tenants/\(bench.tenant)/challenges", body) { status, text in
            done(status == 201 ? nil : "create: \(status) \(text.prefix(200))")
        }
    }

    private func createOnly(_ index: Int, _ done: @escaping (String?) -> Void) {
        createChallenge(index, for: index, done)
    }

    /// Starts the phone's task: it follows the device's prompts (ApprovalKit's event stream) until the run is
    /// over, approving each sign-in in roundtrips mode. The step is done once the phone's connection is up and the
    /// broker knows the device (its queue read), so that at most `concurrency` connections are being set up at
    /// once: thousands started in one turn of the loop would wait past their connect timeout for it. A stream
    /// lost before the run is over counts as a failure.
    private func openStream(_ index: Int, _ done: @escaping (String?) -> Void) {
        let phone = phones[index]
        let stepDone = LoopBound(done)
        phoneTasksRunning += 1
        // On the loop's thread, as everything of the runner: no hop between a response and the phone's code.
        phoneTasks.append(
            Task(executorPreference: loop) { [self] in
                defer { phoneEnded() }
                do {
                    _ = try await phone.pendingPrompts()
                } catch {
                    return stepDone.value("connection of \(device(index)): \(error)")
                }
                stepDone.value(nil)
                do {
                    for try await event in phone.prompts() {
                        switch event {
                        case .prompt(let prompt): await prompted(prompt, on: phone, of: index)
                        case .withdrawn: break
                        case .disconnected(let reason):
                            if !holdingOver { fail("stream of \(device(index)) lost: \(reason)") }
                        }
                    }
                } catch {
                    if !holdingOver { fail("stream of \(device(index)) refused: \(error)") }
                }
            })
    }

    private func phoneEnded() {
        phoneTasksRunning -= 1
        if holdingOver && phoneTasksRunning == 0 { loop.stop() }
    }

    private func fail(_ why: String) {
        failures += 1
        if firstFailure == nil { firstFailure = why }
    }

    /// One sign-in of an idle user: the IdP creates the challenge; the phone answers when its stream delivers it.
    private func roundTrip(_ index: Int, _ done: @escaping (String?) -> Void) {
        let user = idleUsers.removeFirst()
        let signIn = SignIn(requestID: "bench-\(run)-\(index)", sentAt: monotonicNanoseconds(), done: done)
        signIns[user] = signIn
        createChallenge(index, for: user) { [self] failure in
            if let failure { return finish(signIn, of: user, failure) }
            signIn.created = true
            if signIn.answered { finish(signIn, of: user, nil) }
        }
    }

    private func finish(_ signIn: SignIn, of user: Int, _ failure: String?) {
        guard signIns[user] === signIn else { return }
        signIns[user] = nil
        idleUsers.append(user)
        signIn.done(failure)
    }

    /// A prompt on a user's phone: the sign-in in flight for the user, approved with the right number.
    private func prompted(_ prompt: Prompt, on phone: ApprovalDevice, of user: Int) async {
        guard let signIn = signIns[user], prompt.requestID == signIn.requestID else {
            return fail("unexpected prompt on \(device(user)): \(prompt.requestID)")
        }
        _ = deliveries.record((monotonicNanoseconds() - signIn.sentAt) / 1000)
        do {
            let answer = try await phone.approve(prompt, selecting: 42)
            guard answer.outcome == "approved" else { return finish(signIn, of: user, "answer: \(answer.outcome)") }
            signIn.answered = true
            if signIn.created { finish(signIn, of: user, nil) }
        } catch {
            finish(signIn, of: user, "answer: \(error)")
        }
    }

    // MARK: Requests

    private func idp(
        _ index: Int, _ method: String, _ path: String, _ body: String, _ done: @escaping (Int, String) -> Void
    ) {
        let header = IdPSignature.header(
            keyID: bench.keyID, key: hmacKey, time: Int64(Date().timeIntervalSince1970), method: method, path: path,
            body: Array(body.utf8))
        send(idpClients[index % idpClients.count], method, path, body, [(IdPSignature.field, header)], done)
    }

    private func send(
        _ client: any HTTPClient, _ method: String, _ path: String, _ body: String, _ headers: HTTPHeaders,
        _ done: @escaping (Int, String) -> Void
    ) {
        var fields = headers
        if !body.isEmpty { fields.append("content-type", "application/json") }
        client.send(method: method, path: path, headers: fields, body: Array(body.utf8)) { result in
            switch result {
            case .success(let response): done(response.status, String(decoding: response.body, as: UTF8.self))
            case .failure(let error): done(0, "\(error)")
            }
        }
    }
}

/// A round trip in flight: done once the create is answered 201 and the answer 200 `approved`, in either order.
private final class SignIn {
    let requestID: String
    /// When the create was sent (monotonic nanoseconds).
    let sentAt: UInt64
    let done: (String?) -> Void
    var created = false
    var answered = false

    init(requestID: String, sentAt: UInt64, done: @escaping (String?) -> Void) {
        self.requestID = requestID
        self.sentAt = sentAt
        self.done = done
    }
}

/// Prints and flushes: progress lines show as they happen, also into a file or a pipe.
/// A line on standard output, written at once, past stdio: `fflush(nil)` would take standard input's lock too, which
/// a thread blocked reading it (the terminal authenticator's) holds.
func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

private func monotonicNanoseconds() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// This process's user + system CPU seconds, every thread.
private func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// utime + stime of a process, from `/proc/<pid>/stat` (fields 14 and 15, counted after the command's parentheses).
private func processCPUSeconds(_ pid: Int32) -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = text.lastIndex(of: ")")
    else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}
