// The broker's API (API.md) on the event loop: each route authenticates, reads its body, and has the commit
// pipeline decide over one user's state; deliveries of durable commits go to device streams, wake-ups and long
// polls.
import Core
import Crypto
import EventLoop
import Foundation
import HTTP
import JSONText
import Logging
import OIDC
import Protocol
import Store

/// `@unchecked Sendable`: everything runs on the event loop; store completions come back through it.
public final class ApprovalService: @unchecked Sendable {
    private let loop: EventLoop
    private let store: StoreRoles
    private let pipeline: CommitPipeline
    private let authenticator: Authenticator
    private let deviceKeys = DeviceKeys()
    private let logger: Logger
    private let clock: () -> UnixMillis
    private var random = BufferedSecureRandom()
    let streams: DeviceStreams
    let longPolls: LongPolls
    private(set) var metrics = ServiceMetrics()
    /// The tenants some IdP client may act on: the only ones that can hold queue entries.
    let tenants: Set<String>
    private let sweep: ExpirySweep
    private let wakeUps: WakeUps
    /// Sends results to the verifiers.
    let forwarder: Forwarder
    /// Wakes devices through APNs and FCM.
    let pushRelay: PushRelay
    let enrollments: Enrollments
    /// Keycloak's CIBA authentication requests.
    let ciba: CIBAChannel

    /// - Parameters:
    ///   - publicURL: the base URL phones reach the broker at, for activation URIs.
    ///   - ciba: the tenants that are Keycloak's CIBA channel, and the realm keys of those whose keys are a file.
    public init(
        loop: EventLoop, store: StoreRoles, clients: [IdPClient],
        keepaliveSeconds: Double, forwarding: Forwarder.Settings = Forwarder.Settings(),
        apns: APNsSettings? = nil, fcm: FCMSettings? = nil, publicURL: String = "http://127.0.0.1:8080",
        ciba: (settings: [String: CIBASettings], keyFiles: [String: IssuerKeys]) = ([:], [:]),
        logger: Logger, clock: @escaping () -> UnixMillis
    ) throws {
        self.loop = loop
        self.store = store
        self.authenticator = Authenticator(clients: clients)
        tenants = clients.reduce(into: []) { $0.formUnion($1.tenants) }
        self.logger = logger
        self.clock = clock
        streams = DeviceStreams(loop: loop, keepaliveSeconds: keepaliveSeconds)
        longPolls = LongPolls(loop: loop)
        pipeline = CommitPipeline(states: store.states, membership: store.membership, clock: clock, logger: logger)
        sweep = ExpirySweep(loop: loop, deadlines: store.deadlines, pipeline: pipeline, clock: clock)
        forwarder = try Forwarder(
            loop: loop, store: store.outbox, membership: store.membership, outbox: pipeline, clients: clients,
            cibaCallbackURLs: ciba.settings.mapValues(\.callbackURL), settings: forwarding, clock: clock,
            logger: logger)
        self.ciba = try CIBAChannel(
            settings: ciba.settings, keyFiles: ciba.keyFiles, loop: loop, caFile: forwarding.caFile, logger: logger,
            clock: clock)
        wakeUps = WakeUps(states: store.states, streams: streams, pipeline: pipeline, clock: clock)
        pushRelay = try PushRelay(loop: loop, apns: apns, fcm: fcm, clock: clock, logger: logger, source: wakeUps)
        enrollments = Enrollments(
            store: store, pipeline: pipeline, longPolls: longPolls, publicURL: publicURL, clock: clock, logger: logger)
        pipeline.results = self
        pipeline.sweep = sweep
        store.fanOut.sink = self
        streams.onLastClosed = { [fanOut = store.fanOut] deviceID in fanOut.streamClosed(deviceID: deviceID) }
    }

    var gauges: Gauges {
        var gauges = store.operations.gauges
        // Every tenant's queue depth, 0 for one with nothing queued (its series stays rather than going stale).
        for tenant in tenants where gauges.queueDepthByTenant[tenant] == nil { gauges.queueDepthByTenant[tenant] = 0 }
        return gauges
    }

    /// The parts with figures on `/metrics`, in the order they are written.
    var metricsSources: [MetricsSource] { [self, streams, forwarder, pushRelay, enrollments, ciba] }

    /// After recovery: expires what lapsed meanwhile and starts forwarding.
    public func start() {
        sweep.run()
        forwarder.start()
    }

    // MARK: Routing

    /// Handles `/v1/...`; returns false for any other path.
    func handle(_ request: HTTPRequest, _ responder: HTTPResponder) -> Bool {
        let route: Route
        do throws(Problem) {
            guard let matched = try RouteTable.api.match(method: request.method, path: request.pathOnly) else {
                return false
            }
            route = matched
        } catch {
            responder.respond(error.response)
            return true
        }
        do throws(Problem) {
            try perform(route, request, responder)
        } catch {
            refuse(error, route, responder)
        }
        return true
    }

    private func refuse(_ problem: Problem, _ route: Route, _ responder: HTTPResponder) {
        if problem.status == 401 { metrics.authFailures.increment(route.isDeviceRoute ? "device" : "idp") }
        responder.respond(problem.response)
    }

    private func perform(_ route: Route, _ request: HTTPRequest, _ responder: HTTPResponder) throws(Problem) {
        /// Answers with `success` or the problem.
        func reply<Outcome>(_ result: Result<Outcome, Problem>, _ success: (Outcome) -> HTTPResponse) {
            switch result {
            case .success(let outcome): responder.respond(success(outcome))
            case .failure(let problem): refuse(problem, route, responder)
            }
        }
        switch route {
        case .getPolicy(let tenantID):
            _ = try idp(request, tenantID)
            responder.respond(.json(200, Views.policy(store.states.policy(for: tenantID))))
        case .putPolicy(let tenantID):
            _ = try idp(request, tenantID)
            let policy = try decodeBody(PolicyBody.self, from: request.body).policy()
            let change = try core(Rules.setPolicy(policy, for: tenantID))
            pipeline.commit(nil, [change]) { result in
                if case .durable = result {
                    responder.respond(.json(200, Views.policy(policy)))
                } else {
                    responder.respond(Problem.unavailable("the store could not commit").response)
                }
            }
        case .putDevice(let tenantID, let deviceID):
            _ = try idp(request, tenantID)
            let registration = try decodeBody(DeviceBody.self, from: request.body).registration()
            let user = UserKey(tenantID: tenantID, userID: registration.userID)
            pipeline.decide(.registration(user, deviceID: deviceID)) { [self] loaded throws(Problem) in
                try core(
                    Rules.register(
                        deviceID, registration, policy: store.states.policy(for: tenantID), registeredTo: loaded.heldBy,
                        user: loaded.state ?? UserState(key: user), now: clock()))
            } then: { result in
                reply(result) { outcome in
                    let status = if case .created = outcome { 201 } else { 200 }
                    return .json(status, Views.device(outcome.device))
                }
            }
        case .deleteDevice(let tenantID, let deviceID):
            _ = try idp(request, tenantID)
            remove(deviceID, of: tenantID) { reply($0) { HTTPResponse(status: 204) } }
        case .listDevices(let tenantID, let userID):
            _ = try idp(request, tenantID)
            try core(Validate.userID(userID))
            store.states.load(.user(UserKey(tenantID: tenantID, userID: userID))) { loaded in
                guard case .success(let found) = loaded else {
                    responder.respond(Problem.unavailable("the store could not be read").response)
                    return
                }
                responder.respond(.json(200, Views.devices(found.state.map { Array($0.devices) } ?? [])))
            }
        case .createChallenge(let tenantID): try createChallenge(request, tenantID) { reply($0, Self.createdResponse) }
        case .getChallenge(let tenantID, let challengeID): try getChallenge(request, tenantID, challengeID, responder)
        case .cancelChallenge(let tenantID, let challengeID):
            _ = try idp(request, tenantID)
            cancel(challengeID, of: tenantID) { reply($0) { .json(200, Views.challenge($0)) } }
        case .deadLetters(let tenantID): try deadLetters(request, tenantID, responder)
        case .redrive(let tenantID, let challengeID): try redrive(request, tenantID, challengeID, responder)
        case .deviceQueue(let deviceID):
            try authenticatedDevice(request, deviceID, route, responder) { [self] state in
                responder.respond(.json(200, Views.deviceQueue(durableQueue(of: deviceID, in: state))))
            }
        case .deviceStream(let deviceID):
            try authenticatedDevice(request, deviceID, route, responder) { [self] state in
                openStream(deviceID, state, responder)
            }
        case .answer(let deviceID, let challengeID):
            try answerChallenge(request, deviceID, challengeID) { reply($0, Self.answerResponse) }
        case .pushToken(let deviceID):
            let body = try decodeBody(PushBody.self, from: request.body)
            guard let provider = PushTarget.Provider(rawValue: body.provider) else {
                throw Problem.invalidField("provider must be apns, fcm or none")
            }
            let push = PushTarget(provider: provider, token: body.token ?? "", topic: body.topic ?? "")
            try authenticatedDevice(request, deviceID, route, responder) { [self] _ in
                pipeline.decide(.device(deviceID)) { loaded throws(Problem) in
                    guard let state = loaded.state else { throw .notFound("no such device") }
                    return try core(Rules.updatePush(push, for: deviceID, user: state))
                } then: { result in
                    reply(result) { HTTPResponse(status: 204) }
                }
            }
        case .removeSelf(let deviceID):
            try authenticatedDevice(request, deviceID, route, responder) { [self] state in
                remove(deviceID, of: state.key.tenantID) { reply($0) { HTTPResponse(status: 204) } }
            }
        case .createEnrollment(let tenantID):
            _ = try idp(request, tenantID)
            try enrollments.create(try decodeBody(EnrollmentBody.self, from: request.body), tenantID: tenantID) {
                reply($0) { $0 }
            }
        case .getEnrollment(let tenantID, let enrollmentID):
            _ = try idp(request, tenantID)
            enrollments.read(
                tenantID: tenantID, enrollmentID: enrollmentID, wait: try longPollSeconds(request), responder)
        case .cancelEnrollment(let tenantID, let enrollmentID):
            _ = try idp(request, tenantID)
            enrollments.cancel(tenantID: tenantID, enrollmentID: enrollmentID) { reply($0) { $0 } }
        case .enroll:
            try enrollments.complete(try decodeBody(EnrollBody.self, from: request.body)) { reply($0) { $0 } }
        case .ciba(let tenantID): ciba.request(request, tenantID: tenantID, service: self) { responder.respond($0) }
        }
    }

    /// `?wait=`: how long a read may wait for a status to leave pending, 0–30 s (0 when not given).
    private func longPollSeconds(_ request: HTTPRequest) throws(Problem) -> Double {
        guard let text = queryValue(request.query, "wait") else { return 0 }
        guard let seconds = Double(text), (0...30).contains(seconds) else {
            throw Problem.invalidField("wait must be a number of seconds within 0...30")
        }
        return seconds
    }

    /// Removes the tenant's device: the IdP's removal, or the device's own ("turn off phone sign-in").
    private func remove(_ deviceID: String, of tenantID: String, _ done: @escaping (Result<Void, Problem>) -> Void) {
        pipeline.decide(.device(deviceID)) { loaded throws(Problem) in
            guard let state = loaded.state, state.key.tenantID == tenantID else { throw .notFound("no such device") }
            return try core(Rules.remove(deviceID, user: state))
        } then: {
            done($0)
        }
    }

    private func idp(_ request: HTTPRequest, _ tenantID: String) throws(Problem) -> IdPClient {
        try authenticator.idp(request, tenantID: tenantID, nowSeconds: clock() / 1000)
    }

    /// Checks a device's request signature with the key of the device it names, notes that the device was seen,
    /// and goes on with the device's user state.
    private func authenticatedDevice(
        _ request: HTTPRequest, _ deviceID: String, _ route: Route, _ responder: HTTPResponder,
        then proceed: @escaping (UserState) -> Void
    ) throws(Problem) {
        let named = authenticator.claimedDevice(request) ?? deviceID
        store.states.load(.device(named)) { [self] loaded in
            guard case .success(let found) = loaded else {
                responder.respond(Problem.unavailable("the store could not be read").response)
                return
            }
            do throws(Problem) {
                try authenticator.device(request, deviceID: deviceID, nowSeconds: clock() / 1000) { id in
                    guard id == named, let device = found.state?.device(id) else { return nil }
                    return deviceKeys.key(of: device)
                }
            } catch {
                return refuse(error, route, responder)
            }
            guard let state = found.state else { return }
            let seen = Rules.noteSeen(deviceID, user: state, now: clock())
            if !seen.changesNothing { pipeline.commit(seen.state, seen.changes) { _ in } }
            proceed(seen.state)
        }
    }

    /// The device's queue as it may be shown: durable entries only.
    private func durableQueue(of deviceID: String, in state: UserState) -> [Challenge] {
        state.queue(of: deviceID, now: clock()).filter { pipeline.isDurable($0.id) }
    }

    // MARK: Challenges

    private static func createdResponse(_ outcome: CreateOutcome) -> HTTPResponse {
        let replay: HTTPHeaders = ["idempotent-replay": "true"]
        switch outcome {
        case .created(let challenge): return .json(201, Views.challenge(challenge))
        case .fallback(let fallback): return .json(200, Views.fallback(fallback))
        case .replayedChallenge(let challenge): return .json(200, Views.challenge(challenge), headers: replay)
        case .replayedFallback(let fallback): return .json(200, Views.fallback(fallback), headers: replay)
        }
    }

    private func createChallenge(
        _ request: HTTPRequest, _ tenantID: String, _ done: @escaping (Result<CreateOutcome, Problem>) -> Void
    ) throws(Problem) {
        _ = try idp(request, tenantID)
        let challengeRequest = try decodeBody(ChallengeBody.self, from: request.body).request()
        // An invalid traceparent is ignored (Trace Context's rule), not refused.
        let traceparent = request.headers[field: "traceparent"].flatMap { TraceContext.traceparent($0[...]) }
        create(challengeRequest, in: tenantID, traceparent: traceparent, done)
    }

    /// Decides a create for the tenant's user, as the IdP's create does; `channel` says where its result goes, and
    /// `notAfter` when it must have expired at the latest.
    func create(
        _ challengeRequest: ChallengeRequest, in tenantID: String, traceparent: String? = nil,
        channel: ResultChannel = .verifier, notAfter: UnixMillis? = nil,
        _ done: @escaping (Result<CreateOutcome, Problem>) -> Void
    ) {
        let user = UserKey(tenantID: tenantID, userID: challengeRequest.userID)
        let requestKey = RequestKey(tenantID: tenantID, requestID: challengeRequest.requestID)
        pipeline.decide(.creation(user, requestKey)) { [self] loaded throws(Problem) in
            try core(
                Rules.create(
                    challengeRequest, traceparent: traceparent, channel: channel, notAfter: notAfter,
                    policy: store.states.policy(for: tenantID), requestHeldBy: loaded.heldBy,
                    user: loaded.state ?? UserState(key: user), now: clock(), random: &random))
        } then: { [self] result in
            if case .success(let outcome) = result {
                switch outcome {
                case .created(let challenge):
                    metrics.created += 1
                    logger.debug(
                        "challenge created",
                        metadata: [
                            "tenant": "\(tenantID)", "challenge_id": "\(challenge.id)",
                            "request_id": "\(challengeRequest.requestID)",
                            "traceparent": "\(challenge.traceparent ?? "-")",
                        ])
                case .fallback(let fallback): metrics.fallbacks.increment(fallback.reason.rawValue)
                case .replayedChallenge, .replayedFallback: metrics.duplicates += 1
                }
            }
            done(result)
        }
    }

    private func getChallenge(
        _ request: HTTPRequest, _ tenantID: String, _ challengeID: String, _ responder: HTTPResponder
    ) throws(Problem) {
        _ = try idp(request, tenantID)
        follow(challengeID, of: tenantID, wait: try longPollSeconds(request), responder) {
            .json(200, Views.challenge($0))
        }
    }

    /// Answers `responder` with `view` of the tenant's challenge once it has ended or `wait` seconds have passed.
    func follow(
        _ challengeID: String, of tenantID: String, wait: Double, _ responder: HTTPResponder,
        view: @escaping (Challenge) -> HTTPResponse
    ) {
        // Due expiries first, so that the status is exact to the millisecond.
        pipeline.decide(.challenge(challengeID)) { [self] loaded throws(Problem) in
            guard let state = loaded.state, state.key.tenantID == tenantID else { throw .notFound("no such challenge") }
            let ticked = Rules.tick(user: state, now: clock())
            return ticked.map { ticked.state.challenge(challengeID) }
        } then: { [self] result in
            let current: Challenge
            switch result {
            case .failure(let problem):
                responder.respond(problem.response)
                return
            case .success(let challenge?): current = challenge
            case .success(nil):
                responder.respond(Problem.notFound("no such challenge").response)
                return
            }
            guard current.isPending, wait > 0 else {
                responder.respond(view(current))
                return
            }
            longPolls.wait(responder, for: challengeID, seconds: wait, fanOut: store.fanOut) {
                [states = store.states] answer in
                states.load(.challenge(challengeID)) { loaded in
                    guard case .success(let found) = loaded, let challenge = found.state?.challenge(challengeID) else {
                        return answer(nil)
                    }
                    answer((view(challenge), !challenge.isPending))
                }
            }
        }
    }

    /// "Use your password instead": the tenant's pending challenge is cancelled; an ended one is as it ended.
    func cancel(_ challengeID: String, of tenantID: String, _ done: @escaping (Result<Challenge, Problem>) -> Void) {
        pipeline.decide(.challenge(challengeID)) { [self] loaded throws(Problem) in
            guard let state = loaded.state, state.key.tenantID == tenantID else { throw .notFound("no such challenge") }
            return try core(Rules.cancel(challengeID, user: state, now: clock()))
        } then: {
            done($0)
        }
    }

    /// Redeems the OpenID Connect authorization code of the tenant's approved challenge: once, among all instances.
    func redeemCode(
        of challengeID: String, in tenantID: String, _ done: @escaping (Result<Challenge, Problem>) -> Void
    ) {
        pipeline.decide(.challenge(challengeID)) { loaded throws(Problem) in
            guard let state = loaded.state, state.key.tenantID == tenantID else { throw .notFound("no such challenge") }
            return try core(Rules.redeemCode(for: challengeID, user: state))
        } then: {
            done($0)
        }
    }

    /// The tenant's dead letters, newest first: at most `?limit=` (1–1000, default 100).
    private func deadLetters(_ request: HTTPRequest, _ tenantID: String, _ responder: HTTPResponder) throws(Problem) {
        _ = try idp(request, tenantID)
        var limit = 100
        if let text = queryValue(request.query, "limit") {
            guard let value = Int(text), (1...1000).contains(value) else {
                throw Problem.invalidField("limit must be within 1...1000")
            }
            limit = value
        }
        store.outbox.deadLetters(tenantID: tenantID, limit: limit) { result in
            switch result {
            case .success(let letters):
                responder.respond(.json(200, Views.deadLetters(letters)))
            case .failure: responder.respond(Problem.unavailable("the store could not be read").response)
            }
        }
    }

    /// Puts one dead letter, or all of the tenant's, back in the outbox (durably, before the 202); the forwarder
    /// sends them as it sends new results.
    private func redrive(
        _ request: HTTPRequest, _ tenantID: String, _ challengeID: String?, _ responder: HTTPResponder
    ) throws(Problem) {
        _ = try idp(request, tenantID)
        store.outbox.redrive(tenantID: tenantID, challengeID: challengeID, now: clock()) { [self] result in
            switch result {
            case .success(let requeued):
                if requeued > 0 {
                    forwarder.pump()
                    // Only ids that named a dead letter are written: what else a path holds is the caller's.
                    logger.info(
                        "dead letters requeued",
                        metadata: [
                            "tenant": "\(tenantID)", "challenge_id": "\(challengeID ?? "*")",
                            "requeued": "\(requeued)",
                        ])
                }
                if challengeID != nil && requeued == 0 {
                    responder.respond(Problem.notFound("no such dead letter").response)
                } else {
                    responder.respond(.json(202, JSONWriter.object { $0.integer("requeued", Int64(requeued)) }))
                }
            case .failure: responder.respond(Problem.unavailable("the store could not be written").response)
            }
        }
    }

    // MARK: Device routes

    private func openStream(_ deviceID: String, _ state: UserState, _ responder: HTTPResponder) {
        responder.startStream(status: 200, headers: ["content-type": "text/event-stream", "cache-control": "no-cache"])
        let queue = durableQueue(of: deviceID, in: state)
        for challenge in queue {
            responder.write(
                eventStreamFrame(event: "challenge", id: challenge.id, data: Views.deviceChallenge(challenge)))
        }
        streams.add(responder, for: deviceID, sent: queue.map(\.id))
        store.fanOut.streamOpened(deviceID: deviceID) { [self] in resync(deviceID) }
    }

    /// Sends the device's streams what is queued for it and they were not sent.
    private func resync(_ deviceID: String, then done: @escaping () -> Void = {}) {
        store.states.load(.device(deviceID)) { [self] loaded in
            defer { done() }
            guard case .success(let found) = loaded, let state = found.state else { return }
            for challenge in streams.unsent(of: deviceID, in: durableQueue(of: deviceID, in: state)) {
                streams.sendChallenge(id: challenge.id, data: Views.deviceChallenge(challenge), to: deviceID)
            }
        }
    }

    private static func answerResponse(_ outcome: AnswerOutcome) -> HTTPResponse {
        switch outcome {
        case .resolved(let challenge), .replayed(let challenge): .json(200, Views.answer(challenge))
        case .expired: Problem(CoreError(.expired, "the challenge expired")).response
        }
    }

    private func answerChallenge(
        _ request: HTTPRequest, _ deviceID: String, _ challengeID: String,
        _ done: @escaping (Result<AnswerOutcome, Problem>) -> Void
    ) throws(Problem) {
        let decision = try decodeBody(AnswerBody.self, from: request.body).signedDecision()
        var verified = false
        pipeline.decide(.answer(deviceID: deviceID, challengeID: challengeID)) { [self] loaded throws(Problem) in
            // The decision signature names the device and binds the challenge: it is the authentication.
            guard let state = loaded.state, let challenge = state.challenge(challengeID, queuedTo: deviceID),
                let device = state.device(deviceID), let key = deviceKeys.key(of: device)
            else { throw .notFound("no such challenge for this device") }
            if !verified {
                guard let signature = Base64URL.decode(decision.signature),
                    key.isValidSignature(signature, for: decisionString(challenge, deviceID: deviceID, decision))
                else {
                    metrics.authFailures.increment("device")
                    throw .badSignature("the decision signature does not verify with the device's key")
                }
                verified = true
            }
            let now = clock()
            guard abs(now / 1000 - decision.signedAtUnix) <= Authenticator.deviceClockSkewSeconds else {
                throw .badSignature("signed_at_unix is more than 60 s from the broker's clock")
            }
            return try core(
                Rules.answer(
                    challengeID, from: deviceID, decision, policy: store.states.policy(for: state.key.tenantID),
                    user: state,
                    now: now))
        } then: {
            done($0)
        }
    }

}

// MARK: Deliveries

extension ApprovalService: DeliverySink, ResultsListener {
    public func deliver(_ delivery: Delivery, committedHere: Bool) {
        switch delivery {
        case .queued(let challenge, let device):
            if streams.isStreaming(device.id) {
                streams.sendChallenge(id: challenge.id, data: Views.deviceChallenge(challenge), to: device.id)
            } else {
                pushRelay.wake(device, for: challenge)
            }
        case .unqueued(let challengeID, let deviceID, let outcome):
            streams.sendResolved(id: challengeID, data: Views.resolved(challengeID, outcome), to: deviceID)
        case .ended(let challenge):
            // Counted once, where it was committed; long polls anywhere.
            if committedHere { metrics.resolved.increment(challenge.status.rawValue) }
            longPolls.end(challenge.id, with: .json(200, Views.challenge(challenge)))
        case .deviceRemoved(let deviceID):
            streams.close(deviceID)
        case .enrollmentEnded(let enrollment):
            enrollments.ended(enrollment, committedHere: committedHere)
        }
    }

    /// Every stream reads its queue again, a thousand devices at a time: a store that just came back is not sent a
    /// load for each of a hundred thousand streams at once.
    public func resync() { resync(streams.deviceIDs[...]) }

    private func resync(_ deviceIDs: ArraySlice<String>) {
        guard !deviceIDs.isEmpty else { return }
        let batch = deviceIDs.prefix(Self.resyncBatch)
        var remaining = batch.count
        for deviceID in batch {
            resync(deviceID) { [self] in
                remaining -= 1
                if remaining == 0 { resync(deviceIDs.dropFirst(batch.count)) }
            }
        }
    }

    static let resyncBatch = 1000

    func resultsDurable(_ entries: [OutboxEntry]) { forwarder.enqueued(entries) }
}

/// Core's refusals as problems.
func core<Result>(_ operation: @autoclosure () throws(CoreError) -> Result) throws(Problem) -> Result {
    do {
        return try operation()
    } catch {
        throw Problem(error)
    }
}

extension ApprovalService: MetricsSource {
    /// Whether the store answers now (`/readyz`).
    var isStoreReachable: Bool { store.operations.isReachable }

    /// The store's gauges (the same on every instance of a shared store) and the counters of this instance's API.
    func writeMetrics(to writer: inout MetricsWriter) {
        let gauges = self.gauges
        writer.family("approvald_queue_depth", .gauge, help: "Pending entries over all device queues.")
        writer.sample("approvald_queue_depth", gauges.queueDepth)
        writer.family("approvald_tenant_queue_depth", .gauge, help: "Pending entries in device queues, by tenant.")
        for (tenant, depth) in gauges.queueDepthByTenant.sorted(by: { $0.key < $1.key }) {
            writer.sample("approvald_tenant_queue_depth", depth, labels: ["tenant": tenant])
        }
        writer.family("approvald_pending_challenges", .gauge, help: "Challenges waiting for an answer.")
        writer.sample("approvald_pending_challenges", gauges.pendingChallenges)
        writer.family(
            "approvald_forward_queue_depth", .gauge, help: "Results not yet acknowledged by a verifier nor dead.")
        writer.sample("approvald_forward_queue_depth", gauges.forwardQueueDepth)
        writer.family("approvald_challenges_created_total", .counter, help: "Challenges created.")
        writer.sample("approvald_challenges_created_total", Double(metrics.created))
        writer.family("approvald_challenges_resolved_total", .counter, help: "Challenges ended, by outcome.")
        metrics.resolved.write("approvald_challenges_resolved_total", labelName: "outcome", to: &writer)
        writer.family("approvald_password_fallback_total", .counter, help: "password_fallback answers, by reason.")
        metrics.fallbacks.write("approvald_password_fallback_total", labelName: "reason", to: &writer)
        writer.family("approvald_duplicate_requests_total", .counter, help: "IdP retries answered from memory.")
        writer.sample("approvald_duplicate_requests_total", Double(metrics.duplicates))
        writer.family("approvald_auth_failures_total", .counter, help: "Refused authentications, by kind.")
        metrics.authFailures.write("approvald_auth_failures_total", labelName: "kind", to: &writer)
        writer.family(
            "approvald_store_commands_total", .counter,
            help: "Commands this instance sent to a shared store (Redis); 0 on the embedded store.")
        writer.sample("approvald_store_commands_total", Double(store.operations.commandsSent))
    }
}

/// Counters of what the API did, for `/metrics`.
struct ServiceMetrics {
    var created: UInt64 = 0
    var duplicates: UInt64 = 0
    var resolved = LabelledCounter(known: ChallengeStatus.allCases.filter { $0 != .pending }.map(\.rawValue))
    var fallbacks = LabelledCounter(known: FallbackReason.allCases.map(\.rawValue))
    var authFailures = LabelledCounter(known: ["idp", "device"])
}
