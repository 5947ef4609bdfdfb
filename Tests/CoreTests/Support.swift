// Core test support: the rules over a map of user states with a seeded generator, and helpers to read events.
import Core
import TestSupport

typealias TestCore = RulesDriver

let tenant = "contoso"
let alice = "alice@contoso.com"
let key: [UInt8] = [0x30, 0x59, 1, 2, 3]
let second: UnixMillis = 1000
let start: UnixMillis = 1_795_600_000_000

func makeCore(_ configure: (inout TenantPolicy) -> Void = { _ in }, seed: UInt64 = 42) -> TestCore {
    var policy = TenantPolicy()
    configure(&policy)
    return TestCore(random: SeededRandom(seed: seed), basePolicy: policy)
}

@discardableResult
func register(
    _ core: TestCore, _ deviceID: String, user: String = alice, in tenantID: String = tenant
) throws
    -> Device
{
    try core.registerDevice(deviceID, in: tenantID, DeviceRegistration(userID: user, publicKey: key), now: start).0
        .device
}

func request(_ id: String = "signin-1", user: String = alice, number: Int = 42, ttl: Int? = nil) -> ChallengeRequest {
    ChallengeRequest(requestID: id, userID: user, number: number, ttlSeconds: ttl, context: ["app": "Outlook"])
}

/// Creates a challenge that must be created (not a fallback).
func create(_ core: TestCore, _ request: ChallengeRequest = request(), at now: UnixMillis = start) throws -> Challenge {
    let (outcome, _) = try core.createChallenge(request, in: tenant, now: now)
    guard case .created(let challenge) = outcome else { throw TestFailure("expected a challenge, got \(outcome)") }
    return challenge
}

func fallbackReason(_ outcome: CreateOutcome) -> FallbackReason? {
    if case .fallback(let fallback) = outcome { return fallback.reason }
    return nil
}

func approve(_ number: Int, at seconds: Int64 = 1_795_600_000) -> Decision {
    Decision(kind: .approve(selectedNumber: number), signedAtUnix: seconds, signature: "sig")
}

func deny(_ reason: DenyReason) -> Decision {
    Decision(kind: .deny(reason: reason), signedAtUnix: 1_795_600_000, signature: "sig")
}

func unqueued(_ events: [CoreEvent]) -> [String: DeviceOutcome] {
    var outcomes: [String: DeviceOutcome] = [:]
    for case .unqueued(_, let deviceID, let outcome) in events { outcomes[deviceID] = outcome }
    return outcomes
}

func queued(_ events: [CoreEvent]) -> [String] {
    events.compactMap { if case .queued(_, let deviceID) = $0 { deviceID } else { nil } }
}

func endedStatuses(_ events: [CoreEvent]) -> [ChallengeStatus] {
    events.compactMap { if case .ended(let challenge) = $0 { challenge.status } else { nil } }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
