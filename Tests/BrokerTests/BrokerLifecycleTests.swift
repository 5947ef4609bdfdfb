// The broker's lifecycle without a socket: what start-up, failures and stop requests lead to, in every order.
import Testing

@testable import Broker

@Suite struct BrokerLifecycleTests {
    @Test func aBrokerServesOnceItsStoreIsOpenAndStopsCleanlyWhenAsked() {
        var lifecycle = BrokerLifecycle()
        lifecycle.listenersOpened()
        #expect(lifecycle.state == .recovering)
        #expect(lifecycle.storeOpened() == .startService)
        lifecycle.serviceStarted()
        #expect(lifecycle.state == .serving)
        #expect(lifecycle.stopRequested() == .drain)
        #expect(lifecycle.stopRequested() == .none, "a second signal does not drain twice")
        lifecycle.drained()
        #expect(lifecycle.state == .stopped && !lifecycle.hasFailed)
    }

    @Test func aStoreThatCannotOpenEndsTheProcessInFailure() {
        var lifecycle = BrokerLifecycle()
        lifecycle.listenersOpened()
        #expect(lifecycle.partFailed() == .drain)
        #expect(lifecycle.hasFailed)
        lifecycle.drained()
        #expect(lifecycle.state == .failed && lifecycle.hasFailed)
    }

    @Test func aStopDuringRecoveryServesNothingAfterwards() {
        var lifecycle = BrokerLifecycle()
        lifecycle.listenersOpened()
        #expect(lifecycle.stopRequested() == .drain)
        #expect(lifecycle.storeOpened() == .none, "the store opened late: the service is not started")
        lifecycle.serviceStarted()
        #expect(lifecycle.state == .draining(failing: false))
        lifecycle.drained()
        #expect(lifecycle.state == .stopped)
    }

    @Test func aFailureWhileDrainingStillEndsInFailure() {
        var lifecycle = BrokerLifecycle()
        lifecycle.listenersOpened()
        #expect(lifecycle.stopRequested() == .drain)
        #expect(lifecycle.partFailed() == .none, "already draining")
        lifecycle.drained()
        #expect(lifecycle.state == .failed)
    }

    @Test func aServiceThatCannotStartFailsTheBroker() {
        var lifecycle = BrokerLifecycle()
        lifecycle.listenersOpened()
        #expect(lifecycle.storeOpened() == .startService)
        #expect(lifecycle.partFailed() == .drain)
        #expect(lifecycle.stopRequested() == .none)
        lifecycle.drained()
        #expect(lifecycle.state == .failed)
    }

    @Test func eventsAfterTheEndChangeNothing() {
        var lifecycle = BrokerLifecycle()
        lifecycle.listenersOpened()
        _ = lifecycle.stopRequested()
        lifecycle.drained()
        #expect(lifecycle.stopRequested() == .none && lifecycle.partFailed() == .none)
        lifecycle.drained()
        #expect(lifecycle.state == .stopped)
    }
}
