// What the push relay asks of the broker's state: whether a wake-up is still wanted, and clearing a dead token.
import Core
import Store

/// `@unchecked Sendable`: confined to the event loop.
final class WakeUps: WakeUpSource, @unchecked Sendable {
    private let states: any UserStates
    private let streams: DeviceStreams
    private let pipeline: CommitPipeline
    private let clock: () -> UnixMillis

    init(states: any UserStates, streams: DeviceStreams, pipeline: CommitPipeline, clock: @escaping () -> UnixMillis) {
        self.states = states
        self.streams = streams
        self.pipeline = pipeline
        self.clock = clock
    }

    func stillWanted(challengeID: String, deviceID: String, then: @escaping ((Device, Challenge)?) -> Void) {
        guard !streams.isStreaming(deviceID) else { return then(nil) }
        states.load(.device(deviceID)) { [clock] loaded in
            guard case .success(let found) = loaded, let state = found.state,
                let challenge = state.challenge(challengeID, queuedTo: deviceID), challenge.isPending,
                challenge.expiresAt > clock(), let device = state.device(deviceID)
            else { return then(nil) }
            then((device, challenge))
        }
    }

    func clearToken(_ token: String, of deviceID: String) {
        pipeline.decide(.device(deviceID)) { loaded throws(Problem) in
            guard let state = loaded.state, let push = state.device(deviceID)?.push, push.token == token else {
                throw .notFound("the token changed meanwhile")
            }
            let cleared = PushTarget(provider: push.provider, token: "", topic: push.topic)
            return try core(Rules.updatePush(cleared, for: deviceID, user: state))
        } then: { _ in
        }
    }
}
