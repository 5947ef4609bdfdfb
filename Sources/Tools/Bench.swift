// `approvald bench`: drives a running broker as IdPs and devices would — distinct users, HMAC-signed creates,
// P-256 device keys, signed answers — over the project's HTTP/2 client, and reports throughput and latency.
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

    public func validate() throws {
        guard requests > 0, concurrency > 0, connections > 0, users > 0 else {
            throw ValidationError("requests, concurrency, connections and users must be positive")
        }
        if let rate, !(rate > 0) { throw ValidationError("rate must be positive") }
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
    /// The phones' connections: event streams and answers (none in creates mode).
    private let deviceClients: [H2Client]
    /// Distinguishes this run's users and devices from earlier runs' on the same broker.
    private let run = String(SecureRandom.bytes(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }, radix: 36)
    private let userCount: Int
    private let concurrency: Int
    private let keys: [P256PrivateKey]
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
    /// roundtrips: users without a sign-in in flight, each user's sign-in, and its stream's parser.
    /// Users without a sign-in in flight, the one idle longest first: users take turns.
    private var idleUsers = Deque<Int>()
    private var signIns: [SignIn?] = []
    private var streamParsers: [EventStreamParser] = []

    init(loop: EventLoop, bench: Bench, tls: TLSClientContext?, logger: Logger) throws {
        self.loop = loop
        self.bench = bench
        userCount = bench.mode == .roundtrips ? min(bench.users, bench.requests) : bench.requests
        concurrency = bench.mode == .roundtrips ? min(bench.concurrency, userCount) : bench.concurrency
        // Before any connection exists: its connect timeout would run while the keys are made.
        keys = try (0..<userCount).map { _ in try P256PrivateKey() }
        var options = HTTPClientOptions()
        options.requestTimeoutSeconds = 30
        func clients(_ count: Int, to origin: String) throws -> [H2Client] {
            try (0..<count).map { _ in
                try H2Client(
                    loop: loop, origin: origin, tls: origin.hasPrefix("https://") ? tls : nil, options: options,
                    logger: logger)
            }
        }
        var idpOptions = options
        idpOptions.maxConnections = max(1, (bench.concurrency - 1) / bench.connections + 1)
        idpClients = try (0..<bench.connections).map { _ in
            try makeHTTPClient(
                loop: loop, origin: bench.url, tls: bench.url.hasPrefix("https://") ? tls : nil,
                speaking: bench.idpProtocol, options: idpOptions, logger: logger)
        }
        let phones = bench.deviceURL ?? bench.url
        switch bench.mode {
        case .creates: deviceClients = []
        case .streams: deviceClients = try clients(userCount, to: phones)
        case .roundtrips:
            deviceClients = try clients((userCount - 1) / Self.streamsPerConnection + 1, to: phones)
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
        streamParsers = []
    }

    func start() {
        say(
            "approvald bench: \(bench.mode.rawValue), \(bench.requests) sign-ins, \(concurrency) in flight, "
                + "\(bench.connections) connections, \(bench.url) tenant \(bench.tenant), run \(run)")
        let finish = { [self] in
            holdingOver = true
            for client in idpClients + deviceClients { client.close() }
            loop.stop()
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
                streamParsers = (0..<userCount).map { user in
                    EventStreamParser { [unowned self] in streamEvent($0, of: user) }
                }
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
        return perRequest("broker_cpu_us", phaseBrokerCPU, bench.brokerPID)
            + perRequest("store_cpu_us", phaseStoreCPU, bench.storePID.map { [$0] } ?? [])
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
            device.string("public_key", Data(keys[index].spkiDER).base64EncodedString())
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

    /// Opens the device's event stream and leaves it open. The step is done once the stream's connection is up (a
    /// GET /healthz on it answered), so that at most `concurrency` connections are being set up at once: thousands
    /// started in one turn of the loop would wait past their connect timeout for it. A stream that ends before the
    /// run is over counts as a failure. In roundtrips mode its events are parsed.
    private func openStream(_ index: Int, _ done: @escaping (String?) -> Void) {
        let client = deviceClient(index)
        client.send(method: "GET", path: "/healthz") { [unowned self] connected in
            guard case .success(let response) = connected, response.status == 200 else {
                return done("connection of \(device(index)): \(connected)")
            }
            let path = "/v1/devices/\(device(index))/stream"
            let header =
                (try? DeviceSignature.header(
                    device: device(index), time: Int64(Date().timeIntervalSince1970), method: "GET", path: path,
                    sign: keys[index].signature(for:))) ?? ""
            let onData: ((UnsafeBufferPointer<UInt8>) -> Void)? =
                bench.mode == .roundtrips ? { [unowned self] in streamParsers[index].feed($0) } : nil
            client.send(
                method: "GET", path: path, headers: [("authorization", header)], timeoutSeconds: 86_400,
                onData: onData
            ) { [unowned self] result in
                guard !holdingOver else { return }
                failures += 1
                if firstFailure == nil { firstFailure = "stream of \(device(index)) ended: \(result)" }
            }
            done(nil)
        }
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

    /// An event of a user's stream: each `challenge` event is answered with the right number.
    private func streamEvent(_ event: DeviceEvent, of user: Int) {
        guard case .challenge(let view) = event else { return }
        guard let signIn = signIns[user], view["request_id"]?.string == signIn.requestID else {
            failures += 1
            if firstFailure == nil { firstFailure = "unexpected challenge on \(device(user))'s stream: \(view)" }
            return
        }
        _ = deliveries.record((monotonicNanoseconds() - signIn.sentAt) / 1000)
        answer(user, view) { [self] status, text in
            guard status == 200, JSONValue.parse(Array(text.utf8))?["status"]?.string == "approved" else {
                return finish(signIn, of: user, "answer: \(status) \(text.prefix(200))")
            }
            signIn.answered = true
            if signIn.created { finish(signIn, of: user, nil) }
        }
    }

    private func answer(_ user: Int, _ view: JSONValue, _ done: @escaping (Int, String) -> Void) {
        let challengeID = view["challenge_id"]?.string ?? ""
        let body =
            (try? answerBody(
                to: view, device: device(user), decision: "approve", selectedNumber: 42, reason: nil,
                signedAtUnix: Int64(Date().timeIntervalSince1970), sign: keys[user].signature(for:))) ?? ""
        send(
            deviceClient(user), "POST", "/v1/devices/\(device(user))/challenges/\(challengeID)/response", body, [],
            done)
    }

    // MARK: Requests

    private func deviceClient(_ user: Int) -> H2Client {
        deviceClients[bench.mode == .streams ? user : user / Self.streamsPerConnection]
    }

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

/// utime + stime of a process, from `/proc/<pid>/stat` (fields 14 and 15, counted after the command's parentheses).
private func processCPUSeconds(_ pid: Int32) -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = text.lastIndex(of: ")")
    else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}
