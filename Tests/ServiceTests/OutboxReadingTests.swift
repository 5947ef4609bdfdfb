// The forwarder's reads of the outbox without a store: one at a time, paged while more is due than the window
// holds, started over after a failure, and a wake-up armed only when it is earlier.
import Core
import Store
import Testing

@testable import Service

@Suite struct OutboxReadingTests {
    private func entry(_ id: String, due: UnixMillis) -> OutboxEntry {
        OutboxEntry(
            challengeID: id, tenantID: "t", partition: Partition(0), body: "{}", endedAt: 0, attempts: 0,
            nextAttemptAt: due)
    }

    @Test func oneReadAtATimeAndNoneWhileTheWindowIsFull() {
        var reading = OutboxReading()
        let whileFull = reading.startRead(windowHasRoom: false)
        let first = reading.startRead(windowHasRoom: true)
        let second = reading.startRead(windowHasRoom: true)
        #expect(!whileFull && first)
        #expect(!second, "a read is under way")
        reading.readSucceeded(full: false, lastConsidered: nil)
        #expect(reading.state == .idle && !reading.behind && reading.cursor == nil)
    }

    @Test func aFullPageIsFollowedFromWhereItEndedUntilTheEndOfWhatIsDue() {
        var reading = OutboxReading()
        _ = reading.startRead(windowHasRoom: true)
        reading.readSucceeded(full: true, lastConsidered: entry("ch_9", due: 500))
        #expect(reading.behind && reading.cursor == OutboxCursor(dueAt: 500, challengeID: "ch_9"))
        let next = reading.startRead(windowHasRoom: true)
        #expect(next && !reading.behind, "a read under way clears it")
        #expect(reading.cursor == OutboxCursor(dueAt: 500, challengeID: "ch_9"), "the read goes on from it")
        reading.readSucceeded(full: false, lastConsidered: entry("ch_12", due: 700))
        #expect(reading.cursor == nil && !reading.behind)
    }

    @Test func failuresStartTheNextPassOver() {
        var reading = OutboxReading()
        _ = reading.startRead(windowHasRoom: true)
        reading.readSucceeded(full: true, lastConsidered: entry("ch_1", due: 1))
        _ = reading.startRead(windowHasRoom: true)
        reading.readFailed()
        #expect(reading.state == .idle && reading.cursor == nil)
        _ = reading.startRead(windowHasRoom: true)
        reading.readSucceeded(full: true, lastConsidered: entry("ch_2", due: 2))
        reading.outcomeNotStored()
        #expect(reading.behind && reading.cursor == nil)
        reading.windowOverflowed()
        #expect(reading.behind)
    }

    @Test func theWakeUpIsArmedOnlyWhenEarlier() {
        var reading = OutboxReading()
        let first = reading.wake(at: 1000)
        let later = reading.wake(at: 2000)
        let same = reading.wake(at: 1000)
        #expect(first && !later && !same)
        let earlier = reading.wake(at: 500)
        #expect(earlier && reading.wakeAt == 500)
        reading.woke()
        let afterFiring = reading.wake(at: 3000)
        #expect(afterFiring && reading.wakeAt == 3000)
    }
}
