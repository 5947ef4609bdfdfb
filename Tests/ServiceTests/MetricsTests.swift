// The Prometheus text writer, the process gauges and problem documents.
import Foundation
import HTTP
import JSONText
import Testing

@testable import Service

@Suite struct MetricsWriterTests {
    @Test func writesFamiliesSamplesAndEscapedLabels() {
        var writer = MetricsWriter()
        writer.family("x_total", .counter, help: "Things.")
        writer.sample("x_total", 3, labels: ["code": "200"])
        writer.sample("x_total", 0.25, labels: ["a": "q\"uo\\te\nline", "b": "2"])
        writer.family("y", .gauge, help: "A gauge.")
        writer.sample("y", Double.infinity)
        writer.sample("y", Double.nan)
        #expect(
            writer.text == """
                # HELP x_total Things.
                # TYPE x_total counter
                x_total{code="200"} 3
                x_total{a="q\\"uo\\\\te\\nline",b="2"} 0.25
                # HELP y A gauge.
                # TYPE y gauge
                y +Inf
                y NaN

                """)
    }

    @Test func labelledCountersWriteSortedLabels() {
        var counter = LabelledCounter<Int>()
        counter.increment(404)
        counter.increment(200, by: 2)
        counter.increment(200)
        var writer = MetricsWriter()
        counter.write("r_total", labelName: "code", to: &writer)
        #expect(writer.text == "r_total{code=\"200\"} 3\nr_total{code=\"404\"} 1\n")
        #expect(counter[200] == 3 && counter[500] == 0)
    }

    @Test func processGaugesAreSane() {
        #expect(ProcessMetrics.residentMemoryBytes() > 1_000_000)
        // Other tests open and close descriptors meanwhile (they start servers and tools): 50 of ours must show,
        // within a margin, in one of five tries.
        let shown = (0..<5).contains { _ in
            let descriptors = ProcessMetrics.openFileDescriptors()
            let handles = (0..<50).compactMap { _ in FileHandle(forReadingAtPath: "/proc/self/stat") }
            let opened = ProcessMetrics.openFileDescriptors() - descriptors
            for handle in handles { try? handle.close() }
            return handles.count == 50 && (40...60).contains(opened)
        }
        #expect(shown)
        let started = ProcessMetrics.startTimeSeconds()
        #expect(started <= Date().timeIntervalSince1970 && started > Date().timeIntervalSince1970 - 3600)
    }
}

@Suite struct ProblemDocumentTests {
    @Test func isRFC9457JSONWithAStableCode() throws {
        let response = Problem(413, "too_large", "a \"quoted\"\nline").response
        #expect(response.headers[field: "content-type"] == "application/problem+json")
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        #expect(object?["status"] as? Int == 413)
        #expect(object?["code"] as? String == "too_large")
        #expect(object?["detail"] as? String == "a \"quoted\"\nline")
        #expect(object?["type"] as? String == "about:blank")
        #expect(object?["title"] as? String == "Content Too Large")
    }

    @Test func earlyRefusalsAreTheAPIsProblems() throws {
        let response = Problem(EarlyRefusal.headerBlockTooLarge(limit: 16384)).response
        #expect(response.status == 431 && response.headers[field: "content-type"] == "application/problem+json")
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        #expect(object?["code"] as? String == "header_too_large")
        #expect(object?["detail"] as? String == "the header block is larger than 16384 bytes")
        #expect(Problem(EarlyRefusal.bodyTooLarge(limit: 10)).response.status == 413)
    }

    @Test func jsonStringEscapesControlCharacters() {
        #expect(jsonString("a\u{1}b\tc") == "\"a\\u0001b\\tc\"")
        #expect(jsonString("ünï") == "\"ünï\"")
    }
}
