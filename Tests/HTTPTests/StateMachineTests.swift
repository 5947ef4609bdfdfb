// The connection's and the stream's lifecycles and the reset budget, without a socket: each input in each state,
// and the action it yields.
import Testing

@testable import HTTP

private let timeouts = ConnectionStateMachine.Timeouts(preface: 10, idle: 300, request: 10)

private func machine(resetBurst: UInt64 = 1000, resetRate: UInt64 = 33) -> ConnectionStateMachine {
    ConnectionStateMachine(timeouts: timeouts, resetBurst: resetBurst, resetRatePerSecond: resetRate, now: 0)
}

/// `#expect` cannot take a mutating call: the input runs here, outside it.
private func check<Value: Equatable>(
    _ actual: Value, _ expected: Value, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual == expected, sourceLocation: sourceLocation)
}

/// A machine past its preface.
private func idleMachine() -> ConnectionStateMachine {
    var made = machine()
    _ = made.prefaceReceived()
    return made
}

@Suite struct ConnectionStateMachineTests {
    @Test func thePrefaceTimerRunsUntilThePrefaceThenTheIdleTimer() {
        var connection = machine()
        check(connection.start(), .armTimer(seconds: 10))
        #expect(connection.state == .waitingForPreface && !connection.speaksHTTP2)
        check(connection.prefaceReceived(), .armIdleTimer(seconds: 300))
        #expect(connection.state == .idle && connection.speaksHTTP2)
        // A second preface is nothing.
        check(connection.prefaceReceived(), .none)
    }

    @Test func noPrefaceInTimeCloses() {
        var connection = machine()
        check(connection.timerFired(), .close)
        #expect(connection.state == .closed)
    }

    @Test func aClientThatChoseH2ButSendsNoPrefaceIsClosed() {
        var connection = machine()
        check(connection.badPreface(), .close)
        #expect(connection.state == .closed)
        // Once past the preface, nothing.
        var speaking = idleMachine()
        check(speaking.badPreface(), .none)
        #expect(speaking.state == .idle)
    }

    @Test func onlyStreamsWithACompleteRequestAreActivity() {
        var connection = idleMachine()
        connection.streamOpened()
        // Still arriving: the idle timer goes on counting.
        #expect(connection.state == .idle && connection.arrivingStreams == 1)
        check(connection.requestSettled(), .cancelTimer)
        #expect(connection.state == .open)
        connection.streamOpened()
        check(connection.requestSettled(), .none)
        check(connection.streamClosed(wasActive: true), .none)
        check(connection.streamClosed(wasActive: true), .armIdleTimer(seconds: 300))
        #expect(connection.state == .idle)
        // A stream that closes while arriving changes nothing.
        connection.streamOpened()
        check(connection.streamClosed(wasActive: false), .none)
        #expect(connection.state == .idle)
    }

    @Test func theIdleTimeEndsTheSessionButNotWhileActive() {
        var connection = idleMachine()
        connection.streamOpened()
        _ = connection.requestSettled()
        check(connection.timerFired(), .none)
        #expect(connection.state == .open)
        _ = connection.streamClosed(wasActive: true)
        check(connection.timerFired(), .endSession(.noError))
        #expect(connection.state == .closing)
        check(connection.timerFired(), .none)
    }

    @Test func theRequestTimerIsArmedOncePerWaitAndFollowsTheOldestRequest() {
        var connection = idleMachine()
        check(connection.readEnded(), .none)
        connection.streamOpened()
        check(connection.readEnded(), .armRequestTimer(seconds: 10))
        connection.streamOpened()
        check(connection.readEnded(), .none)
        check(connection.requestTimerFired(now: 25), 15)
        check(connection.requestsStillArriving(oldest: 18, now: 25), .armRequestTimer(seconds: 3))
        check(connection.requestsStillArriving(oldest: 18, now: 25), .none)
        _ = connection.requestTimerFired(now: 28)
        check(connection.requestsStillArriving(oldest: nil, now: 28), .none)
        check(connection.readEnded(), .armRequestTimer(seconds: 10))
    }

    @Test func pastTheResetBudgetTheSessionEndsWithEnhanceYourCalm() {
        var connection = machine(resetBurst: 3, resetRate: 1)
        _ = connection.prefaceReceived()
        for _ in 0..<3 { check(connection.resetSent(now: 0), .none) }
        check(connection.resetSent(now: 0), .endSession(.enhanceYourCalm))
        #expect(connection.state == .closing)
        // Ended once; further resets change nothing.
        check(connection.resetSent(now: 0), .none)

        // The bucket refills: one reset a second goes on for ever.
        var steady = machine(resetBurst: 3, resetRate: 1)
        _ = steady.prefaceReceived()
        for second in 0..<100 { check(steady.resetSent(now: Double(second)), .none) }
    }

    @Test func shutdownDrainsOpenStreamsAndEndsWithTheLast() {
        var connection = idleMachine()
        connection.streamOpened()
        _ = connection.requestSettled()
        connection.streamOpened()  // still arriving: it too finishes or times out before the end
        check(connection.shutdownRequested(), .goAway(endSession: false))
        #expect(connection.state == .draining)
        check(connection.shutdownRequested(), .none)
        check(connection.streamClosed(wasActive: true), .none)
        check(connection.streamClosed(wasActive: false), .endSession(.noError))
        #expect(connection.state == .closing)
        check(connection.shutdownGraceEnded(), .close)
    }

    @Test func shutdownOfAnIdleConnectionEndsItAtOnceAndOneNotYetHTTP2Closes() {
        var idle = idleMachine()
        check(idle.shutdownRequested(), .goAway(endSession: true))
        #expect(idle.state == .closing)
        var early = machine()
        check(early.shutdownRequested(), .close)
        check(early.shutdownGraceEnded(), .none)
    }
}

@Suite struct StreamStateMachineTests {
    @Test func aCompleteRequestGoesToItsHandlerOnceAndIsAnsweredOnce() {
        var stream = StreamStateMachine(now: 5)
        #expect(stream.isArriving && stream.arrivingSince == 5 && stream.canAnswer)
        check(stream.requestEnded(), .dispatch)
        #expect(stream.state == .handling && !stream.isArriving)
        check(stream.requestEnded(), .none)
        check(stream.respond(), .submit)
        #expect(stream.state == .responding(requestEnded: true) && stream.isEnding)
        check(stream.respond(), .none)
        check(stream.startStream(), .none)
        #expect(!stream.lastDataSentNeedsReset())
    }

    @Test func anEarlyAnswerIsFollowedByAResetUnlessTheRequestEnds() {
        var stream = StreamStateMachine(now: 0)
        check(stream.respond(), .submit)
        #expect(stream.state == .responding(requestEnded: false) && !stream.isArriving)
        #expect(stream.lastDataSentNeedsReset())
        // The rest of the request arrives: never dispatched.
        check(stream.requestEnded(), .none)
        #expect(!stream.lastDataSentNeedsReset())
    }

    @Test func aStreamedResponseTakesBytesUntilEndedOrOverflowing() {
        var stream = StreamStateMachine(now: 0)
        _ = stream.requestEnded()
        check(stream.startStream(), .submit)
        #expect(stream.isStreamOpen && !stream.isEnding)
        check(stream.wrote(overflowing: false), .none)
        check(stream.wrote(overflowing: true), .reset(.cancel))
        #expect(stream.state == .resetting && !stream.isStreamOpen)

        var ending = StreamStateMachine(now: 0)
        _ = ending.requestEnded()
        _ = ending.startStream()
        ending.endStream()
        #expect(ending.state == .streaming(ending: true) && ending.isEnding && !ending.isStreamOpen)
        check(ending.wrote(overflowing: true), .none)
    }

    @Test func aRequestThatArrivesTooSlowlyIsResetOnceAndNeverDispatched() {
        var stream = StreamStateMachine(now: 100)
        check(stream.requestTimerFired(expiredBefore: 99), .none)
        check(stream.requestTimerFired(expiredBefore: 100), .reset(.cancel))
        #expect(stream.state == .timedOut && stream.isArriving && stream.arrivingSince == nil)
        check(stream.requestTimerFired(expiredBefore: 200), .none)
        check(stream.requestEnded(), .none)
        check(stream.respond(), .none)
        // A dispatched request is the handler's, whatever the time.
        var handled = StreamStateMachine(now: 0)
        _ = handled.requestEnded()
        check(handled.requestTimerFired(expiredBefore: 1000), .none)
    }

    @Test func everythingAfterCloseIsAbandoned() {
        var stream = StreamStateMachine(now: 0)
        _ = stream.requestEnded()
        stream.closed()
        check(stream.respond(), .none)
        check(stream.startStream(), .none)
        #expect(!stream.canAnswer)
        check(stream.requestEnded(), .none)
    }
}

@Suite struct TokenBucketTests {
    @Test func aBurstThenTheRate() {
        var bucket = TokenBucket(burst: 10, ratePerSecond: 2, now: 0)
        for _ in 0..<10 { check(bucket.take(now: 0), true) }
        check(bucket.take(now: 0), false)
        check(bucket.take(now: 0.4), false)
        check(bucket.take(now: 0.5), true)
        check(bucket.take(now: 0.5), false)
        // Refilled to the burst at most, however long the pause.
        for _ in 0..<10 { check(bucket.take(now: 1000), true) }
        check(bucket.take(now: 1000), false)
        // Time going backwards gives nothing.
        check(bucket.take(now: 10), false)
    }
}

@Suite struct ClientConnectionStateMachineTests {
    @Test func aConnectionTakesRequestsOnceConnectedAndDrainsOnce() {
        var machine = ClientConnectionStateMachine()
        #expect(!machine.isConnected)
        let connected = machine.connected()
        #expect(connected && machine.isConnected && !machine.isDraining)
        let firstDrain = machine.drain()
        let secondDrain = machine.drain()
        #expect(firstDrain && !secondDrain, "the client is told once")
        #expect(machine.isConnected && machine.isDraining)
        let hadConnected = machine.closed()
        #expect(hadConnected && machine.state == .closed(connected: true) && !machine.isConnected)
    }

    @Test func aConnectionClosedWhileConnectingNeverConnected() {
        var machine = ClientConnectionStateMachine()
        let drained = machine.drain()
        #expect(!drained, "nothing to drain before connecting")
        let hadConnected = machine.closed()
        #expect(!hadConnected && machine.state == .closed(connected: false))
        let late = machine.connected()
        #expect(!late && !machine.isConnected)
        let again = machine.closed()
        #expect(!again)
    }
}
