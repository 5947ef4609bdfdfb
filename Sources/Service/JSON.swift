// JSON out, and the errors of the API: responses written directly as text, times as RFC 3339 UTC with
// milliseconds, refusals as problem documents. Request bodies are read in JSONBody.swift.
import Core
import Foundation
import HTTP
import JSONText

/// A refusal on its way to becoming a problem document.
struct Problem: Error {
    let status: Int
    let code: String
    let detail: String
    /// For 405: the methods the resource takes, sent as `allow`.
    let allow: [String]

    init(_ status: Int, _ code: String, _ detail: String, allow: [String] = []) {
        self.status = status
        self.code = code
        self.detail = detail
        self.allow = allow
    }

    init(_ error: CoreError) {
        let status: Int
        switch error.code {
        case .invalidField: status = 400
        case .notFound: status = 404
        case .mamRestricted, .policyExcluded: status = 403
        case .deviceLimit, .deviceTenantConflict, .idempotencyConflict, .alreadyResolved: status = 409
        case .expired: status = 410
        case .rateLimited: status = 429
        }
        self.init(status, error.code.rawValue, error.detail)
    }

    /// An RFC 9457 problem document with the stable machine `code`.
    var response: HTTPResponse {
        let body = JSONWriter.object { problem in
            problem.string("type", "about:blank")
            problem.string("title", HTTPStatus.reasonPhrase(status))
            problem.integer("status", Int64(status))
            problem.string("detail", detail)
            problem.string("code", code)
        }
        var headers: HTTPHeaders = ["content-type": "application/problem+json"]
        if !allow.isEmpty { headers.append("allow", allow.joined(separator: ", ")) }
        return HTTPResponse(status: status, headers: headers, body: Array(body.utf8))
    }

    /// The problem for a request the server refused before it reached a handler.
    init(_ refusal: EarlyRefusal) {
        let code =
            switch refusal {
            case .bodyTooLarge: "too_large"
            case .headerBlockTooLarge: "header_too_large"
            case .malformed: "malformed_request"
            case .requestTimeout: "request_timeout"
            case .versionNotSupported: "http_version_not_supported"
            case .expectationFailed: "expectation_failed"
            }
        self.init(refusal.status, code, refusal.detail)
    }

    // The catalogue: every code the API answers with, one constructor each.
    static func invalidField(_ detail: String) -> Problem { Problem(400, "invalid_field", detail) }
    static func invalidJSON(_ detail: String) -> Problem { Problem(400, "invalid_json", detail) }
    static func badSignature(_ detail: String) -> Problem { Problem(400, "bad_signature", detail) }
    static func unauthenticated(_ detail: String) -> Problem { Problem(401, "unauthenticated", detail) }
    static func forbidden(_ detail: String) -> Problem { Problem(403, "forbidden", detail) }
    static func notFound(_ detail: String) -> Problem { Problem(404, "not_found", detail) }
    static func methodNotAllowed(_ detail: String, allow: [String]) -> Problem {
        Problem(405, "method_not_allowed", detail, allow: allow)
    }
    static func unavailable(_ detail: String) -> Problem { Problem(503, "unavailable", detail) }
}

extension JSONWriter {
    /// A time as RFC 3339 text.
    mutating func time(_ name: String, _ value: UnixMillis?) {
        raw(name, value.map { "\"\(rfc3339($0))\"" } ?? "null")
    }
}

/// `2026-11-25T10:00:00.123Z` for Unix milliseconds (days-from-civil inverted, proleptic Gregorian, UTC), years
/// 0000–9999. Written byte by byte: every view carries two or three of them.
func rfc3339(_ millis: UnixMillis) -> String {
    let milliseconds = Int(((millis % 1000) + 1000) % 1000)
    let seconds = (millis - Int64(milliseconds)) / 1000
    var days = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
    let secondOfDay = Int(seconds - Int64(days) * 86_400)
    days += 719_468
    let era = (days >= 0 ? days : days - 146_096) / 146_097
    let dayOfEra = days - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let monthIndex = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
    let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
    let year = min(max(yearOfEra + era * 400 + (month <= 2 ? 1 : 0), 0), 9999)
    return String(unsafeUninitializedCapacity: 24) { out in
        var position = 0
        func put(_ value: Int, _ width: Int) {
            var rest = value
            for offset in (0..<width).reversed() {
                out[position + offset] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
            position += width
        }
        func put(_ symbol: Unicode.Scalar) {
            out[position] = UInt8(ascii: symbol)
            position += 1
        }
        put(year, 4)
        put("-")
        put(month, 2)
        put("-")
        put(day, 2)
        put("T")
        put(secondOfDay / 3600, 2)
        put(":")
        put(secondOfDay / 60 % 60, 2)
        put(":")
        put(secondOfDay % 60, 2)
        put(".")
        put(milliseconds, 3)
        put("Z")
        return position
    }
}

extension HTTPResponse {
    static func json(_ status: Int, _ text: String, headers: HTTPHeaders = [:]) -> HTTPResponse {
        var fields: HTTPHeaders = ["content-type": "application/json"]
        for field in headers { fields.append(field.name, field.value) }
        return HTTPResponse(status: status, headers: fields, body: Array(text.utf8))
    }
}
