// The connection's life without a socket: connect, log in, serve, back off and reconnect, close.
import Testing

@testable import Redis

@Suite struct RedisConnectionStateMachineTests {
    @Test func connectsLogsInAndServes() {
        var machine = RedisConnectionStateMachine(needsLogIn: true)
        #expect(machine.start() == .connect && machine.state == .connecting(attempt: 0))
        #expect(machine.start() == .none)
        #expect(machine.connected() == .logIn && !machine.isReady)
        #expect(machine.loggedIn() == .announceReady && machine.isReady)
        var plain = RedisConnectionStateMachine(needsLogIn: false)
        _ = plain.start()
        #expect(plain.connected() == .announceReady && plain.isReady)
    }

    @Test func failuresBackOffDoublingWithJitterUntilTheCap() {
        let backoff = RedisConnectionStateMachine.Backoff(firstSeconds: 0.05, maxSeconds: 2)
        var machine = RedisConnectionStateMachine(needsLogIn: false, backoff: backoff)
        _ = machine.start()
        var ceilings: [Double] = []
        for attempt in 1...9 {
            guard case .reconnect(let delay, _, let wasReady) = machine.failed(.unavailable("refused"), unit: 1) else {
                Issue.record("no reconnect after failure \(attempt)")
                return
            }
            #expect(!wasReady)
            ceilings.append(delay)
            #expect(machine.state == .waitingToReconnect(attempt: attempt))
            #expect(machine.reconnectDue() == .connect && machine.state == .connecting(attempt: attempt))
        }
        #expect(ceilings == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2, 2, 2])
        // The jitter draws from the upper half of each step.
        #expect(backoff.delay(attempt: 3, unit: 0) == 0.1 && abs(backoff.delay(attempt: 3, unit: 0.5) - 0.15) < 1e-12)
    }

    @Test func losingAReadyConnectionStartsTheBackoffAgainAndSaysItWasReady() {
        var machine = RedisConnectionStateMachine(needsLogIn: true)
        _ = machine.start()
        _ = machine.failed(.unavailable("refused"), unit: 1)
        _ = machine.reconnectDue()
        _ = machine.connected()
        // A refused login counts as a failed attempt.
        guard case .reconnect(_, _, false) = machine.failed(.unavailable("AUTH refused"), unit: 1) else {
            Issue.record("a refused login does not reconnect")
            return
        }
        #expect(machine.state == .waitingToReconnect(attempt: 2))
        _ = machine.reconnectDue()
        _ = machine.connected()
        _ = machine.loggedIn()
        #expect(
            machine.failed(.timedOut(seconds: 1), unit: 0)
                == .reconnect(
                    after: 0.025, because: .timedOut(seconds: 1), wasReady: true))
        #expect(machine.state == .waitingToReconnect(attempt: 1))
        // Late events of a connection already given up change nothing.
        #expect(machine.connected() == .none && machine.loggedIn() == .none)
        #expect(machine.failed(.closed, unit: 0) == .none)
    }

    @Test func closeEndsEveryStateOnce() {
        for steps in 0...3 {
            var machine = RedisConnectionStateMachine(needsLogIn: true)
            if steps > 0 { _ = machine.start() }
            if steps > 1 { _ = machine.connected() }
            if steps > 2 { _ = machine.loggedIn() }
            #expect(machine.close() == .shutDown && machine.state == .closed)
            #expect(machine.close() == .none && machine.start() == .none && machine.reconnectDue() == .none)
        }
    }
}
