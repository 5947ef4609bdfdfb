// The event-stream reader the tools use: events split anywhere across chunks, what it ignores, and its bound.
import JSONText
import Protocol
import Testing

/// Feeds `text` to a parser in chunks of `size` bytes and returns the events, as `event:id-or-outcome`.
private func events(_ text: String, chunk size: Int) -> [String] {
    var seen: [String] = []
    let parser = EventStreamParser { event in
        switch event {
        case .challenge(let view): seen.append("challenge:\(view["challenge_id"]?.string ?? "?")")
        case .resolved(let id, let outcome): seen.append("resolved:\(id):\(outcome)")
        }
    }
    let bytes = Array(text.utf8)
    for start in stride(from: 0, to: bytes.count, by: size) {
        bytes[start..<min(start + size, bytes.count)].withUnsafeBufferPointer { parser.feed($0) }
    }
    return seen
}

@Suite struct EventStreamParserTests {
    static let stream =
        ": keepalive\n\n"
        + "event: challenge\nid: ch_1\ndata: {\"challenge_id\":\"ch_1\",\"choices\":[1,2,3]}\n\n"
        + "event: something-new\ndata: {}\n\n"
        + "event: challenge\ndata: not json\n\n"
        + "event: resolved\nid: ch_1\ndata: {\"challenge_id\":\"ch_1\",\"outcome\":\"approved\"}\n\n"

    @Test(arguments: [1, 2, 7, 64, 4096])
    func eventsSplitAnywhereAreWholeAndUnknownOnesIgnored(chunk: Int) {
        #expect(events(Self.stream, chunk: chunk) == ["challenge:ch_1", "resolved:ch_1:approved"])
    }

    @Test func anEventThatNeverEndsIsDroppedAndReadingGoesOn() {
        let endless = "event: challenge\ndata: " + String(repeating: "x", count: EventStreamParser.maxEventBytes + 10)
        #expect(events(endless + "\n\n" + Self.stream, chunk: 65536) == ["challenge:ch_1", "resolved:ch_1:approved"])
    }
}

@Suite struct EventStreamFrameTests {
    @Test func aFrameIsReadBackAsTheEventItCarriesAndAKeepaliveIsIgnored() {
        let frame = eventStreamFrame(
            event: "resolved", id: "ch_9", data: #"{"challenge_id":"ch_9","outcome":"denied"}"#)
        #expect(
            String(decoding: frame, as: UTF8.self)
                == "event: resolved\nid: ch_9\ndata: {\"challenge_id\":\"ch_9\",\"outcome\":\"denied\"}\n\n")
        let text = String(decoding: eventStreamKeepalive + frame + eventStreamKeepalive, as: UTF8.self)
        #expect(events(text, chunk: 3) == ["resolved:ch_9:denied"])
    }
}
