// Log lines as a shipper reads them: JSON objects with the time, level, message and fields; times in RFC 3339.
import Foundation
import Locking
import Logging
import Testing

@testable import Service

@Suite struct LogOutputTests {
    /// A JSON handler writing into an array instead of standard error.
    func logger(_ lines: Locked<[String]>) -> Logger {
        var logger = Logger(label: "approvald") { label in
            JSONLogHandler(label: label) { line in lines.withLock { $0.append(line) } }
        }
        logger.logLevel = .debug
        logger[metadataKey: "instance"] = "approvald-\"7\""
        return logger
    }

    @Test func aLineIsOneJSONObjectWithTheLoggersAndTheEventsFieldsInKeyOrder() throws {
        let lines = Locked<[String]>([])
        let logger = logger(lines)
        logger.warning(
            "callback \"dead\"-lettered\n",
            metadata: [
                "tenant": "contoso", "challenge_id": "ch_x", "attempts": .stringConvertible(3),
                "ratio": .stringConvertible(0.5), "msg": "a field named like the message", "list": ["a", "b"],
            ])
        logger.trace("left out below the level")
        let written = lines.withLock { $0 }
        #expect(written.count == 1 && written[0].hasSuffix("}\n") && !written[0].dropLast().contains("\n"))
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(written[0].utf8)) as? [String: Any])
        #expect(object["level"] as? String == "warning" && object["msg"] as? String == "callback \"dead\"-lettered\n")
        #expect(object["logger"] as? String == "approvald" && object["instance"] as? String == "approvald-\"7\"")
        #expect(object["attempts"] as? Int == 3 && object["ratio"] as? Double == 0.5)
        #expect(object["field.msg"] as? String == "a field named like the message")
        #expect(object["list"] as? [String] == ["a", "b"] && object["tenant"] as? String == "contoso")
        let time = try #require(object["ts"] as? String)
        #expect(time.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil)
        // Fields after the four fixed ones, in key order.
        let keys = ["\"attempts\"", "\"challenge_id\"", "\"field.msg\"", "\"instance\"", "\"list\"", "\"ratio\""]
        let positions = keys.compactMap { written[0].range(of: $0)?.lowerBound }
        #expect(positions.count == keys.count && positions == positions.sorted())
        #expect(written[0].hasPrefix("{\"ts\":"))
    }

    @Test func timestampsAreUTCToTheMillisecondAndPadded() throws {
        var timestamps = LogTimestamps()
        let before = Date()
        let text = timestamps.now()
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let parsed = try #require(formatter.date(from: text))
        #expect(abs(parsed.timeIntervalSince(before)) < 2)
        #expect(timestamps.nowToTheSecond().wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000/) != nil)
        #expect(LogTimestamps.padded(7, 3) == "007" && LogTimestamps.padded(1234, 3) == "1234")
    }
}
