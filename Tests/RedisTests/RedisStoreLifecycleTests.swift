// The Redis store's lifecycle and its deadline watch without a socket: what each event leads to, in every order.
import Core
import Testing

@testable import RedisStore

@Suite struct RedisStoreLifecycleTests {
    @Test func theFirstConnectionPreparesAndLaterOnesCatchUp() {
        var lifecycle = RedisStoreLifecycle()
        #expect(lifecycle.connectionReady() == .prepare)
        #expect(lifecycle.connectionReady() == .none, "a reconnect while preparing waits for the preparation")
        #expect(lifecycle.prepared() == .startServing)
        #expect(lifecycle.isOpen)
        #expect(lifecycle.connectionReady() == .catchUp)
        #expect(lifecycle.prepared() == .none)
    }

    @Test func aConnectionLostWhilePreparingPreparesAgain() {
        var lifecycle = RedisStoreLifecycle()
        _ = lifecycle.connectionReady()
        #expect(lifecycle.preparingInterrupted(connected: true) == .prepare, "already back: at once")
        #expect(lifecycle.state == .preparing)
        #expect(lifecycle.preparingInterrupted(connected: false) == .none)
        #expect(lifecycle.state == .connecting)
        #expect(lifecycle.connectionReady() == .prepare)
    }

    @Test func aRefusalFailsTheOpeningOnceAndOnlyWhilePreparing() {
        var lifecycle = RedisStoreLifecycle()
        #expect(lifecycle.refused() == .none, "nothing to refuse before preparing")
        _ = lifecycle.connectionReady()
        #expect(lifecycle.refused() == .failOpening)
        #expect(lifecycle.state == .failed && !lifecycle.isOpen)
        #expect(lifecycle.refused() == .none && lifecycle.connectionReady() == .none && lifecycle.prepared() == .none)
    }

    @Test func aStopFlushesOnceAndASecondIsToldAtOnce() {
        var lifecycle = RedisStoreLifecycle()
        _ = lifecycle.connectionReady()
        _ = lifecycle.prepared()
        #expect(lifecycle.closeRequested() == .flush)
        #expect(!lifecycle.isOpen, "nothing new is taken while the batch is stored")
        #expect(lifecycle.closeRequested() == .alreadyClosed)
        #expect(lifecycle.connectionReady() == .none)
        lifecycle.flushed()
        #expect(lifecycle.state == .closed)
        #expect(lifecycle.closeRequested() == .alreadyClosed)
    }

    @Test func aStoreThatNeverOpenedStillCloses() {
        var lifecycle = RedisStoreLifecycle()
        #expect(lifecycle.closeRequested() == .flush)
        lifecycle.flushed()
        #expect(lifecycle.state == .closed)
    }

    @Test func theWatchLooksAtLocalExpiriesAndEveryRefreshForTheRest() {
        var watch = DeadlineWatch(refreshSeconds: 1, now: 10_000)
        #expect(watch.next == 10_000)
        watch.looked(at: 10_000)
        #expect(watch.next == 11_000)
        watch.committed(deadline: 10_400, now: 10_000)
        watch.committed(deadline: nil, now: 10_000)
        // An end of remembering beyond the longest challenge waits for a look.
        watch.committed(deadline: 10_000 + DeadlineWatch.horizon + 1, now: 10_000)
        #expect(watch.next == 10_400)
        watch.looked(at: 10_400)
        #expect(watch.next == 11_400)
    }
}
