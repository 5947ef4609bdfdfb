// The commit pipeline: load a user's state, let a rule decide, commit the decision under its version (deciding again
// when it is stale), and only once it is durable have the store deliver what it caused, and answer.
import Core
import Foundation
import Logging
import Store

/// Told of callbacks that joined the outbox in a durable commit (the deliveries go to the store's sink).
protocol ResultsListener: AnyObject {
    func resultsDurable(_ entries: [OutboxEntry])
}

/// `@unchecked Sendable`: confined to the event loop; store completions come back through it.
final class CommitPipeline: @unchecked Sendable {
    /// Decisions tried before a request that keeps meeting newer state gets 503.
    static let maxAttempts = 8

    private let states: any UserStates
    private let membership: any InstanceMembership
    private let clock: () -> UnixMillis
    private let logger: Logger
    weak var results: ResultsListener?
    /// Told after each commit, which may have brought a deadline forward.
    weak var sweep: ExpirySweep?
    /// Challenges whose creation is not durable yet: their `.queued` deliveries are still to come, so a queue read
    /// or a stream opened meanwhile leaves them out (and a stream does not get them twice).
    private var notYetDurable: Set<String> = []

    init(
        states: any UserStates, membership: any InstanceMembership, clock: @escaping () -> UnixMillis, logger: Logger
    ) {
        self.states = states
        self.membership = membership
        self.clock = clock
        self.logger = logger
    }

    func isDurable(_ challengeID: String) -> Bool { !notYetDurable.contains(challengeID) }

    /// Loads what `lookup` names, decides with `rule` and commits; `done` gets the outcome once it is durable (at
    /// once when the rule changed nothing), the rule's refusal, or 503 when the store fails.
    func decide<Outcome>(
        _ lookup: Lookup, _ rule: @escaping (Loaded) throws(Problem) -> Transition<Outcome>,
        then done: @escaping (Result<Outcome, Problem>) -> Void
    ) {
        // Generic only here, where it is specialised at each call site; the loop of attempts below is not.
        attempt(
            lookup,
            { loaded throws(Problem) in
                let transition = try rule(loaded)
                let outcome = transition.outcome
                return Decided(
                    state: transition.state, changes: transition.changes, deliveries: transition.deliveries
                ) { done(.success(outcome)) }
            }, failed: { done(.failure($0)) }, remaining: Self.maxAttempts)
    }

    /// A transition with its outcome bound into `succeed`.
    private struct Decided {
        let state: UserState
        let changes: [Change]
        let deliveries: [Delivery]
        let succeed: () -> Void
    }

    private func attempt(
        _ lookup: Lookup, _ rule: @escaping (Loaded) throws(Problem) -> Decided,
        failed: @escaping (Problem) -> Void, remaining: Int
    ) {
        states.load(lookup) { [self] loaded in
            guard case .success(let found) = loaded else { return failed(.unavailable("the store could not be read")) }
            let decided: Decided
            do throws(Problem) {
                decided = try rule(found)
            } catch {
                return failed(error)
            }
            guard !decided.changes.isEmpty else { return decided.succeed() }
            let succeed = decided.succeed
            commit(decided.state, decided.changes, decided.deliveries) { [self] result in
                switch result {
                case .durable: succeed()
                case .stale where remaining > 1: attempt(lookup, rule, failed: failed, remaining: remaining - 1)
                case .stale: failed(.unavailable("the user's state keeps changing; try again"))
                case .failed: failed(.unavailable("the store could not commit"))
                }
            }
        }
    }

    /// Commits changes decided on `state` (nil: changes to no user's state) and what they cause. Every callback a
    /// change makes due joins the outbox in the same commit.
    func commit(
        _ state: UserState?, _ changes: [Change], _ deliveries: [Delivery] = [],
        then done: @escaping (CommitResult) -> Void
    ) {
        let outbox = OutboxEntry.callbacks(for: changes, now: clock(), holdMillis: membership.committerHoldMillis)
        let queued = deliveries.compactMap { delivery -> String? in
            if case .queued(let challenge, _) = delivery { challenge.id } else { nil }
        }
        notYetDurable.formUnion(queued)
        let commit = Commit(
            state: state, changes: changes, outbox: outbox.map(OutboxChange.enqueue), deliveries: deliveries)
        states.commit(commit) { [self] result in
            notYetDurable.subtract(queued)
            switch result {
            case .durable:
                if !outbox.isEmpty { results?.resultsDurable(outbox) }
            case .stale: break
            case .failed(let error): logger.error("store commit failed: \(error)")
            }
            done(result)
        }
        sweep?.deadlinesMayHaveMoved()
    }
}

extension CommitPipeline: OutboxCommitting {
    func commitOutbox(_ changes: [OutboxChange], then done: @escaping (Result<Void, StoreError>) -> Void) {
        states.commit(Commit(state: nil, changes: [], outbox: changes)) { [logger] result in
            switch result {
            case .durable, .stale: done(.success(()))
            case .failed(let error):
                logger.error("store commit failed: \(error)")
                done(.failure(error))
            }
        }
    }
}
