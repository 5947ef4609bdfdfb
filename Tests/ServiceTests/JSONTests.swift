// Times as API.md writes them: RFC 3339, UTC, milliseconds.
import JSONText
import Testing

@testable import Service

@Suite struct RFC3339Tests {
    @Test(
        arguments: [
            (0, "1970-01-01T00:00:00.000Z"), (1_795_600_000_123, "2026-11-25T09:46:40.123Z"),
            (1_709_164_800_999, "2024-02-29T00:00:00.999Z"), (-1, "1969-12-31T23:59:59.999Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ] as [(Int64, String)])
    func writesUTCWithMilliseconds(millis: Int64, expected: String) {
        #expect(rfc3339(millis) == expected)
    }
}

@Suite struct JSONBodyTests {
    func parse(_ text: String) -> JSONValue? { JSONValue.parse(Array(text.utf8)) }

    @Test func parsesWhatRFC8259Allows() {
        #expect(
            parse(#" {"a": [1, -2.5e3, true, false, null], "b": {"c": "d"}, "e": 0} "#)
                == .object([
                    ("a", .array([.integer(1), .double(-2500), .bool(true), .bool(false), .null])),
                    ("b", .object([("c", .string("d"))])), ("e", .integer(0)),
                ]))
        #expect(parse(#""\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00 ü""#) == .string("\"\\/\u{8}\u{c}\n\r\té😀 ü"))
        #expect(parse("[]") == .array([]) && parse("{}") == .object([]))
        // A repeated name keeps its last value.
        #expect(parse(#"{"a":1,"a":2}"#) == .object([("a", .integer(2))]))
        #expect(parse("12345678901234567890") == .double(12_345_678_901_234_567_168))
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{a:1}", "{'a':1}", "01", "-", "1.", ".5", "1e", "+1", "tru", "nul",
        "\"abc", "\"a\u{1}b\"", "\"\\x\"", "\"\\ud800\"", "\"\\udc00x\"", "\"\\u12\"", "{} {}", "[1] x", "NaN",
        String(repeating: "[", count: 70) + String(repeating: "]", count: 70),
    ])
    func refusesWhatItDoesNot(text: String) {
        #expect(parse(text) == nil, "\(text)")
    }

    @Test func refusesInvalidUTF8InStrings() {
        #expect(JSONValue.parse([0x22, 0xff, 0x22]) == nil)
        #expect(JSONValue.parse([0x22, 0xc3, 0xa9, 0x22]) == .string("é"))
    }

    @Test func namesTheFieldThatIsWrong() throws {
        func problem(_ text: String) -> String? {
            do {
                _ = try decodeBody(ChallengeBody.self, from: Array(text.utf8))
                return nil
            } catch {
                return "\(error.code): \(error.detail)"
            }
        }
        #expect(problem("[1]") == "invalid_json: the body is not a JSON object")
        #expect(problem("{") == "invalid_json: the body is not valid JSON")
        #expect(problem(#"{"user_id":"a","number":1}"#) == "invalid_field: request_id is required")
        #expect(
            problem(#"{"request_id":null,"user_id":"a","number":1}"#) == "invalid_field: request_id must not be null")
        #expect(
            problem(#"{"request_id":"r","user_id":"a","number":1.5}"#) == "invalid_field: number must be a whole number"
        )
        #expect(problem(#"{"request_id":"r","user_id":7,"number":1}"#) == "invalid_field: user_id must be a string")
        #expect(
            problem(#"{"request_id":"r","user_id":"a","number":1,"context":{"app":1}}"#)
                == "invalid_field: context.app must be a string")
        #expect(
            problem(#"{"request_id":"r","user_id":"a","number":1,"context":[]}"#)
                == "invalid_field: context must be an object")
        let body = try decodeBody(
            ChallengeBody.self,
            from: Array(
                #"{"request_id":"r","user_id":"a","number":4.2e1,"ttl_seconds":null,"context":{"ip":"x"}}"#.utf8))
        #expect(body.number == 42 && body.ttlSeconds == nil && body.context == ["ip": "x"])
    }
}
