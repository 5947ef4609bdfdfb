// Time: expiries and the ends of remembering windows, swept partition by partition when the store's next deadline
// comes, each due user decided and committed like any request (under its version).
import Core
import EventLoop
import HTTP
import Store

/// `@unchecked Sendable`: confined to the event loop.
final class ExpirySweep: @unchecked Sendable {
    private let deadlines: any DeadlineIndex
    private let pipeline: CommitPipeline
    private let clock: () -> UnixMillis
    private let partitions: [Partition]
    private var timer: LoopTimer?
    private var scheduledFor: UnixMillis?

    /// - Parameter partitions: the partitions this process sweeps (all of them for the embedded store).
    init(
        loop: EventLoop, deadlines: any DeadlineIndex, pipeline: CommitPipeline, clock: @escaping () -> UnixMillis,
        partitions: [Partition] = Partition.all
    ) {
        self.deadlines = deadlines
        self.pipeline = pipeline
        self.clock = clock
        self.partitions = partitions
        timer = loop.makeTimer { [unowned self] in
            scheduledFor = nil
            run()
        }
    }

    /// Decides every due user of every partition, then sets the timer for the next deadline.
    func run() {
        deadlines.dueUsers(in: partitions, now: clock()) { [self] result in
            guard case .success(let users) = result else { return }
            for user in users {
                pipeline.decide(.user(user)) { [clock] loaded throws(Problem) in
                    Rules.tick(user: loaded.state ?? UserState(key: user), now: clock())
                } then: { _ in
                }
            }
        }
        schedule()
    }

    /// After a commit: an earlier deadline than the timer's moves the timer.
    func deadlinesMayHaveMoved() {
        guard let deadline = deadlines.nextDeadline, scheduledFor.map({ deadline < $0 }) ?? true else { return }
        schedule()
    }

    private func schedule() {
        guard let deadline = deadlines.nextDeadline else {
            scheduledFor = nil
            timer?.cancel()
            return
        }
        scheduledFor = deadline
        timer?.schedule(after: Double(max(0, deadline - clock())) / 1000 + 0.001)
    }
}
