// The broker's API (API.md) on the event loop: routes and authentication, Core's decisions made durable before
// anyone hears of them (one store commit per loop turn), then delivered: device streams, long polls, metrics.
import Core
import Crypto
import Foundation
import H2
import Logging
import Store

/// `@unchecked Sendable`: everything runs on the event loop; store completions come back through it.
final class ApprovalService: @unchecked Sendable {
    private let loop: EventLoop
    private let core: ApprovalCore<BufferedSecureRandom>
    private let store: DurableStore
    private let authenticator: Authenticator
    private let logger: Logger
    private let clock: () -> UnixMillis
    let streams: DeviceStreams
    private(set) var metrics = ServiceMetrics()
    /// The tenants some IdP client may act on: the only ones that can hold queue entries.
    let tenants: Set<String>

    private var queuedCommits:
        [(events: [CoreEvent], outbox: [OutboxChange], then: (Result<Void, StoreError>) -> Void)] = []
    private(set) var forwarder: Forwarder!
    private(set) var pushRelay: PushRelay!
    private var commitScheduled = false
    private var waiters: [String: [ObjectIdentifier: Waiter]] = [:]
    /// Long polls held now.
    var heldLongPolls: Int { waiters.values.reduce(0) { $0 + $1.count } }
    /// Challenges whose creation is not durable yet: their `.queued` deliveries are still to come, so a queue read
    /// or a stream opened meanwhile leaves them out (and a stream does not get them twice).
    private var notYetDurable: Set<String> = []
    private var tickTimer: LoopTimer!

    private struct Waiter {
        let responder: HTTPResponder
        let timer: LoopTimer
    }

    init(
        loop: EventLoop, core: ApprovalCore<BufferedSecureRandom>, store: DurableStore,
        clients: [Configuration.IdPClient],
        keepaliveSeconds: Double, forwarding: Forwarder.Settings = Forwarder.Settings(),
        apns: Configuration.APNs? = nil, fcm: Configuration.FCM? = nil, logger: Logger,
        clock: @escaping () -> UnixMillis
    ) throws {
        self.loop = loop
        self.core = core
        self.store = store
        self.authenticator = Authenticator(clients: clients)
        tenants = clients.reduce(into: []) { $0.formUnion($1.tenants) }
        self.logger = logger
        self.clock = clock
        streams = DeviceStreams(loop: loop, keepaliveSeconds: keepaliveSeconds)
        tickTimer = loop.makeTimer { [unowned self] in tick() }
        forwarder = try Forwarder(
            loop: loop, store: store, clients: clients, settings: forwarding, clock: clock, logger: logger
        ) { [unowned self] changes, then in persist([], outbox: changes, then: then) }
        pushRelay = try PushRelay(
            loop: loop, apns: apns, fcm: fcm, clock: clock, logger: logger,
            stillWanted: { [unowned self] challengeID, deviceID in
                guard !streams.isStreaming(deviceID), let challenge = core.challenge(challengeID, queuedTo: deviceID),
                    challenge.isPending, challenge.expiresAt > clock(), let device = core.device(deviceID)
                else { return nil }
                return (device, challenge)
            },
            clearToken: { [unowned self] deviceID, token in
                guard let push = core.device(deviceID)?.push, push.token == token else { return }
                let cleared = PushTarget(provider: push.provider, token: "", topic: push.topic)
                persist((try? core.updatePush(cleared, for: deviceID)) ?? []) { _ in }
            })
    }

    var queueDepth: Int { core.queueDepth }
    /// Every tenant's queue depth, 0 for one with nothing queued (its series stays rather than going stale).
    var queueDepthByTenant: [String: Int] {
        core.queueDepthByTenant.merging(tenants.lazy.map { ($0, 0) }) { depth, _ in depth }
    }
    var pendingChallenges: Int { core.pendingChallenges }

    // MARK: Time

    /// Expires and forgets what is due, and sets the timer for the next deadline.
    func tick() {
        persist(core.tick(now: clock())) { _ in }
        scheduleTick()
    }

    private func scheduleTick() {
        guard let deadline = core.nextDeadline else { return tickTimer.cancel() }
        tickTimer.schedule(after: Double(max(0, deadline - clock())) / 1000 + 0.001)
    }

    // MARK: Durability

    /// Queues `events` for the store; `then` runs once they are durable. Everything queued in one loop turn is one
    /// commit; deliveries (streams, long polls) go out only after it. Nothing to persist: `then` runs at once, and
    /// the store is not woken (most device requests change nothing).
    ///
    /// Every ended challenge's callback joins the outbox in the same commit as the ending.
    private func persist(
        _ events: [CoreEvent], outbox: [OutboxChange] = [], then: @escaping (Result<Void, StoreError>) -> Void
    ) {
        guard !events.isEmpty || !outbox.isEmpty else { return then(.success(())) }
        var changes = outbox
        for event in events {
            switch event {
            case .queued(let challengeID, _): notYetDurable.insert(challengeID)
            case .ended(let challenge):
                changes.append(
                    .enqueue(
                        OutboxEntry(
                            challengeID: challenge.id, tenantID: challenge.tenantID, body: Views.callback(challenge),
                            endedAt: challenge.resolvedAt ?? clock())))
            default: break
            }
        }
        queuedCommits.append((events, changes, then))
        if !commitScheduled {
            commitScheduled = true
            loop.execute { [self] in flushCommits() }
        }
    }

    private func flushCommits() {
        commitScheduled = false
        let batch = queuedCommits
        queuedCommits = []
        let batchBox = LoopBound(batch)
        store.commit(batch.flatMap(\.events), outbox: batch.flatMap(\.outbox)) { [self] result in
            for item in batchBox.value {
                for case .queued(let challengeID, _) in item.events { notYetDurable.remove(challengeID) }
                if case .success = result {
                    deliver(item.events)
                    forwarder.enqueued(
                        item.outbox.compactMap { change in
                            if case .enqueue(let entry) = change { entry } else { nil }
                        })
                }
                item.then(result)
            }
            if case .failure(let error) = result { logger.error("store commit failed: \(error)") }
        }
        scheduleTick()
    }

    private func deliver(_ events: [CoreEvent]) {
        for event in events {
            switch event {
            case .queued(let challengeID, let deviceID):
                guard let challenge = core.challenge(challengeID, queuedTo: deviceID), challenge.isPending else {
                    break
                }
                if streams.isStreaming(deviceID) {
                    streams.send("challenge", id: challengeID, data: Views.deviceChallenge(challenge), to: deviceID)
                } else if let device = core.device(deviceID) {
                    pushRelay.wake(device, for: challenge)
                }
            case .unqueued(let challengeID, let deviceID, let outcome):
                streams.send("resolved", id: challengeID, data: Views.resolved(challengeID, outcome), to: deviceID)
            case .ended(let challenge):
                metrics.resolved.increment(challenge.status.rawValue)
                answerWaiters(challenge)
            case .deviceRemoved(_, let deviceID):
                streams.close(deviceID)
            default:
                break
            }
        }
    }

    /// Answers with `respond(result)` once `events` are durable, or 503 if the store failed.
    private func answer(
        _ responder: HTTPResponder, after events: [CoreEvent], _ respond: @escaping () -> HTTPResponse
    ) {
        persist(events) { result in
            switch result {
            case .success: responder.respond(respond())
            case .failure: responder.respond(Problem(503, "unavailable", "the store could not commit").response)
            }
        }
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
            if error.status == 401 { metrics.authFailures.increment(route.isDeviceRoute ? "device" : "idp") }
            responder.respond(error.response)
        }
        return true
    }

    private func perform(_ route: Route, _ request: HTTPRequest, _ responder: HTTPResponder) throws(Problem) {
        switch route {
        case .getPolicy(let tenantID):
            _ = try idp(request, tenantID)
            responder.respond(.json(200, Views.policy(core.policy(for: tenantID))))
        case .putPolicy(let tenantID): try putPolicy(request, tenantID, responder)
        case .putDevice(let tenantID, let deviceID): try putDevice(request, tenantID, deviceID, responder)
        case .deleteDevice(let tenantID, let deviceID): try deleteDevice(request, tenantID, deviceID, responder)
        case .listDevices(let tenantID, let userID):
            _ = try idp(request, tenantID)
            try core(Validate.userID(userID))
            let list = core.devices(of: userID, in: tenantID).map(Views.device).joined(separator: ",")
            responder.respond(.json(200, "{\"devices\":[\(list)]}"))
        case .createChallenge(let tenantID): try createChallenge(request, tenantID, responder)
        case .getChallenge(let tenantID, let challengeID): try getChallenge(request, tenantID, challengeID, responder)
        case .cancelChallenge(let tenantID, let challengeID):
            try cancelChallenge(request, tenantID, challengeID, responder)
        case .deadLetters(let tenantID): try deadLetters(request, tenantID, responder)
        case .deviceQueue(let deviceID):
            try device(request, deviceID)
            let queue = durableQueue(of: deviceID).map(Views.deviceChallenge).joined(separator: ",")
            responder.respond(.json(200, "{\"challenges\":[\(queue)]}"))
        case .deviceStream(let deviceID): try openStream(request, deviceID, responder)
        case .answer(let deviceID, let challengeID): try answerChallenge(request, deviceID, challengeID, responder)
        case .pushToken(let deviceID): try putPushToken(request, deviceID, responder)
        }
    }

    private func idp(_ request: HTTPRequest, _ tenantID: String) throws(Problem) -> Configuration.IdPClient {
        try authenticator.idp(request, tenantID: tenantID, nowSeconds: clock() / 1000)
    }

    private func device(_ request: HTTPRequest, _ deviceID: String) throws(Problem) {
        try authenticator.device(request, deviceID: deviceID, nowSeconds: clock() / 1000) { publicKey(of: $0) }
        persist(core.noteSeen(deviceID, now: clock())) { _ in }
    }

    /// The device's key, parsed on each use: about 5 µs against a 66 µs signature check, and no per-device
    /// OpenSSL object kept in memory.
    private func publicKey(of deviceID: String) -> P256PublicKey? {
        core.device(deviceID).flatMap { try? P256PublicKey(spkiDER: $0.publicKey) }
    }

    /// The device's queue as it may be shown: durable entries only.
    private func durableQueue(of deviceID: String) -> [Challenge] {
        core.queue(of: deviceID, now: clock()).filter { !notYetDurable.contains($0.id) }
    }

    // MARK: IdP routes

    private func putPolicy(_ request: HTTPRequest, _ tenantID: String, _ responder: HTTPResponder) throws(Problem) {
        _ = try idp(request, tenantID)
        let body = try decodeBody(PolicyBody.self, from: request.body)
        var policy = TenantPolicy()
        if let target = body.target {
            guard let parsed = TenantPolicy.Target(rawValue: target) else {
                throw Problem(400, "invalid_field", "target must be all or selected")
            }
            policy.target = parsed
        }
        policy.passwordless = body.passwordless ?? policy.passwordless
        policy.users = Set(body.users ?? [])
        policy.maxDevicesPerUser = body.maxDevicesPerUser ?? policy.maxDevicesPerUser
        policy.challengeTTLSeconds = body.challengeTTLSeconds ?? policy.challengeTTLSeconds
        policy.choices = body.choices ?? policy.choices
        policy.maxPendingPerUser = body.maxPendingPerUser ?? policy.maxPendingPerUser
        policy.maxChallengesPerWindow = body.maxChallengesPerWindow ?? policy.maxChallengesPerWindow
        policy.windowSeconds = body.windowSeconds ?? policy.windowSeconds
        policy.lockoutSeconds = body.lockoutSeconds ?? policy.lockoutSeconds
        let events = try core(core.setPolicy(policy, for: tenantID))
        answer(responder, after: events) { .json(200, Views.policy(policy)) }
    }

    private func putDevice(
        _ request: HTTPRequest, _ tenantID: String, _ deviceID: String, _ responder: HTTPResponder
    )
        throws(Problem)
    {
        _ = try idp(request, tenantID)
        let body = try decodeBody(DeviceBody.self, from: request.body)
        guard let der = Data(base64Encoded: body.publicKey).map(Array.init), (try? P256PublicKey(spkiDER: der)) != nil
        else { throw Problem(400, "invalid_field", "public_key is not base64 of a P-256 SubjectPublicKeyInfo") }
        var push = PushTarget.none
        if let given = body.push {
            guard let provider = PushTarget.Provider(rawValue: given.provider) else {
                throw Problem(400, "invalid_field", "push.provider must be apns, fcm or none")
            }
            push = PushTarget(provider: provider, token: given.token ?? "", topic: given.topic ?? "")
            guard provider == .none || !push.token.isEmpty else {
                throw Problem(400, "invalid_field", "push.token is required for \(provider.rawValue)")
            }
        }
        let registration = DeviceRegistration(
            userID: body.userID, publicKey: der, push: push, mamRestricted: body.mamRestricted ?? false,
            displayName: body.displayName ?? "")
        let (outcome, events) = try core(core.registerDevice(deviceID, in: tenantID, registration, now: clock()))
        let status = if case .created = outcome { 201 } else { 200 }
        answer(responder, after: events) { .json(status, Views.device(outcome.device)) }
    }

    private func deleteDevice(
        _ request: HTTPRequest, _ tenantID: String, _ deviceID: String, _ responder: HTTPResponder
    )
        throws(Problem)
    {
        _ = try idp(request, tenantID)
        let events = try core(core.removeDevice(deviceID, in: tenantID))
        answer(responder, after: events) { HTTPResponse(status: 204) }
    }

    private func createChallenge(
        _ request: HTTPRequest, _ tenantID: String, _ responder: HTTPResponder
    )
        throws(Problem)
    {
        _ = try idp(request, tenantID)
        let body = try decodeBody(ChallengeBody.self, from: request.body)
        let challengeRequest = ChallengeRequest(
            requestID: body.requestID, userID: body.userID, number: body.number,
            ttlSeconds: body.ttlSeconds,
            context: try core(ChallengeContext(validating: body.context ?? [:])))
        let (outcome, events) = try core(core.createChallenge(challengeRequest, in: tenantID, now: clock()))
        let replay: HTTPHeaders = ["idempotent-replay": "true"]
        switch outcome {
        case .created(let challenge):
            metrics.created += 1
            answer(responder, after: events) { .json(201, Views.challenge(challenge)) }
        case .fallback(let fallback):
            metrics.fallbacks.increment(fallback.reason.rawValue)
            answer(responder, after: events) { .json(200, Views.fallback(fallback)) }
        case .replayedChallenge(let challenge):
            metrics.duplicates += 1
            answer(responder, after: events) { .json(200, Views.challenge(challenge), headers: replay) }
        case .replayedFallback(let fallback):
            metrics.duplicates += 1
            answer(responder, after: events) { .json(200, Views.fallback(fallback), headers: replay) }
        }
    }

    private func getChallenge(
        _ request: HTTPRequest, _ tenantID: String, _ challengeID: String, _ responder: HTTPResponder
    )
        throws(Problem)
    {
        _ = try idp(request, tenantID)
        var wait = 0.0
        if let text = queryValue(request.query, "wait") {
            guard let seconds = Double(text), (0...30).contains(seconds) else {
                throw Problem(400, "invalid_field", "wait must be a number of seconds within 0...30")
            }
            wait = seconds
        }
        tick()
        guard let challenge = core.challenge(challengeID, in: tenantID) else {
            throw Problem(404, "not_found", "no such challenge")
        }
        guard challenge.isPending, wait > 0 else {
            responder.respond(.json(200, Views.challenge(challenge)))
            return
        }
        // Held until the status leaves pending or the wait ends: a timer, no polling.
        let key = ObjectIdentifier(responder)
        let timer = loop.schedule(after: wait) { [unowned self] in
            guard waiters[challengeID]?.removeValue(forKey: key) != nil else { return }
            if waiters[challengeID]?.isEmpty == true { waiters[challengeID] = nil }
            if let current = core.challenge(challengeID, in: tenantID) {
                responder.respond(.json(200, Views.challenge(current)))
            }
        }
        waiters[challengeID, default: [:]][key] = Waiter(responder: responder, timer: timer)
        responder.onClose = { [unowned self] in
            waiters[challengeID]?[key] = nil
            if waiters[challengeID]?.isEmpty == true { waiters[challengeID] = nil }
        }
    }

    private func answerWaiters(_ challenge: Challenge) {
        guard let held = waiters.removeValue(forKey: challenge.id) else { return }
        let view = Views.challenge(challenge)
        for waiter in held.values {
            waiter.timer.cancel()
            waiter.responder.respond(.json(200, view))
        }
    }

    private func cancelChallenge(
        _ request: HTTPRequest, _ tenantID: String, _ challengeID: String, _ responder: HTTPResponder
    ) throws(Problem) {
        _ = try idp(request, tenantID)
        let (challenge, events) = try core(core.cancel(challengeID, in: tenantID, now: clock()))
        answer(responder, after: events) { .json(200, Views.challenge(challenge)) }
    }

    // MARK: Device routes

    private func openStream(_ request: HTTPRequest, _ deviceID: String, _ responder: HTTPResponder) throws(Problem) {
        try device(request, deviceID)
        responder.startStream(status: 200, headers: ["content-type": "text/event-stream", "cache-control": "no-cache"])
        for challenge in durableQueue(of: deviceID) {
            responder.write(
                Array("event: challenge\nid: \(challenge.id)\ndata: \(Views.deviceChallenge(challenge))\n\n".utf8))
        }
        streams.add(responder, for: deviceID)
    }

    /// The last value of a query parameter.
    /// The tenant's dead letters, newest first: at most `?limit=` (1–1000, default 100).
    private func deadLetters(_ request: HTTPRequest, _ tenantID: String, _ responder: HTTPResponder) throws(Problem) {
        _ = try idp(request, tenantID)
        var limit = 100
        if let text = queryValue(request.query, "limit") {
            guard let value = Int(text), (1...1000).contains(value) else {
                throw Problem(400, "invalid_field", "limit must be within 1...1000")
            }
            limit = value
        }
        store.deadLetters(tenantID: tenantID, limit: limit) { result in
            switch result {
            case .success(let letters):
                let list = letters.map(Views.deadLetter).joined(separator: ",")
                responder.respond(.json(200, "{\"dead_letters\":[\(list)]}"))
            case .failure: responder.respond(Problem(503, "unavailable", "the store could not be read").response)
            }
        }
    }

    private func answerChallenge(
        _ request: HTTPRequest, _ deviceID: String, _ challengeID: String, _ responder: HTTPResponder
    ) throws(Problem) {
        let body = try decodeBody(AnswerBody.self, from: request.body)
        let kind: Decision.Kind
        switch body.decision {
        case "approve":
            guard let number = body.selectedNumber, (0...99).contains(number) else {
                throw Problem(400, "invalid_field", "selected_number within 0...99 is required to approve")
            }
            kind = .approve(selectedNumber: number)
        case "deny":
            guard let reason = body.reason.flatMap(DenyReason.init(rawValue:)) else {
                throw Problem(400, "invalid_field", "reason must be not_me or cancelled to deny")
            }
            kind = .deny(reason: reason)
        default:
            throw Problem(400, "invalid_field", "decision must be approve or deny")
        }
        let decision = Decision(kind: kind, signedAtUnix: Int64(body.signedAtUnix), signature: body.signature)
        // The decision signature names the device and binds the challenge: it is the authentication.
        guard let challenge = core.challenge(challengeID, queuedTo: deviceID), let key = publicKey(of: deviceID) else {
            throw Problem(404, "not_found", "no such challenge for this device")
        }
        guard let signature = Base64URL.decode(body.signature),
            key.isValidSignature(signature, for: decisionString(challenge, deviceID: deviceID, decision))
        else {
            metrics.authFailures.increment("device")
            throw Problem(400, "bad_signature", "the decision signature does not verify with the device's key")
        }
        let now = clock()
        guard abs(now / 1000 - Int64(body.signedAtUnix)) <= Authenticator.deviceClockSkewSeconds else {
            throw Problem(400, "bad_signature", "signed_at_unix is more than 60 s from the broker's clock")
        }
        let (outcome, events) = try core(core.answer(challengeID, from: deviceID, decision, now: now))
        let ended: Challenge
        switch outcome {
        case .resolved(let challenge), .replayed(let challenge): ended = challenge
        }
        answer(responder, after: events) { .json(200, Views.answer(ended)) }
    }

    private func putPushToken(_ request: HTTPRequest, _ deviceID: String, _ responder: HTTPResponder) throws(Problem) {
        try device(request, deviceID)
        let body = try decodeBody(PushBody.self, from: request.body)
        guard let provider = PushTarget.Provider(rawValue: body.provider) else {
            throw Problem(400, "invalid_field", "provider must be apns, fcm or none")
        }
        let events = try core(
            core.updatePush(
                PushTarget(provider: provider, token: body.token ?? "", topic: body.topic ?? ""), for: deviceID))
        answer(responder, after: events) { HTTPResponse(status: 204) }
    }

    /// Core's refusals as problems.
    private func core<Result>(_ operation: @autoclosure () throws(CoreError) -> Result) throws(Problem) -> Result {
        do {
            return try operation()
        } catch {
            throw Problem(error)
        }
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

/// Carries loop-confined values through the store's `@Sendable` completion, which runs on the loop.
struct LoopBound<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

struct PolicyBody: RequestBody {
    var passwordless: Bool?
    var target: String?
    var users: [String]?
    var maxDevicesPerUser: Int?
    var challengeTTLSeconds: Int?
    var choices: Int?
    var maxPendingPerUser: Int?
    var maxChallengesPerWindow: Int?
    var windowSeconds: Int?
    var lockoutSeconds: Int?

    init(_ object: JSONObject) throws(Problem) {
        passwordless = try object.optionalBool("passwordless")
        target = try object.optionalString("target")
        users = try object.optionalStrings("users")
        maxDevicesPerUser = try object.optionalInteger("max_devices_per_user")
        challengeTTLSeconds = try object.optionalInteger("challenge_ttl_seconds")
        choices = try object.optionalInteger("choices")
        maxPendingPerUser = try object.optionalInteger("max_pending_per_user")
        maxChallengesPerWindow = try object.optionalInteger("max_challenges_per_window")
        windowSeconds = try object.optionalInteger("window_seconds")
        lockoutSeconds = try object.optionalInteger("lockout_seconds")
    }
}

struct PushBody: RequestBody {
    var provider: String
    var token: String?
    var topic: String?

    init(_ object: JSONObject) throws(Problem) {
        provider = try object.string("provider")
        token = try object.optionalString("token")
        topic = try object.optionalString("topic")
    }
}

struct DeviceBody: RequestBody {
    var userID: String
    var publicKey: String
    var push: PushBody?
    var mamRestricted: Bool?
    var displayName: String?

    init(_ object: JSONObject) throws(Problem) {
        userID = try object.string("user_id")
        publicKey = try object.string("public_key")
        push = try object.optionalObject("push").map { object throws(Problem) in try PushBody(object) }
        mamRestricted = try object.optionalBool("mam_restricted")
        displayName = try object.optionalString("display_name")
    }
}

struct ChallengeBody: RequestBody {
    var requestID: String
    var userID: String
    var number: Int
    var ttlSeconds: Int?
    var context: [String: String]?

    init(_ object: JSONObject) throws(Problem) {
        requestID = try object.string("request_id")
        userID = try object.string("user_id")
        number = try object.integer("number")
        ttlSeconds = try object.optionalInteger("ttl_seconds")
        context = try object.optionalStringMap("context")
    }
}

struct AnswerBody: RequestBody {
    var decision: String
    var selectedNumber: Int?
    var reason: String?
    var signedAtUnix: Int
    var signature: String

    init(_ object: JSONObject) throws(Problem) {
        decision = try object.string("decision")
        selectedNumber = try object.optionalInteger("selected_number")
        reason = try object.optionalString("reason")
        signedAtUnix = try object.integer("signed_at_unix")
        signature = try object.string("signature")
    }
}
