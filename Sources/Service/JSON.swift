// JSON in and out: request bodies decoded into typed structs (a syntax error is invalid_json, a wrong type or a
// missing field invalid_field), responses written directly as text, times as RFC 3339 UTC with milliseconds.
import Core
import Foundation
import H2
import JSONText

/// A refusal on its way to becoming a problem document.
struct Problem: Error {
    let status: Int
    let code: String
    let detail: String

    init(_ status: Int, _ code: String, _ detail: String) {
        self.status = status
        self.code = code
        self.detail = detail
    }

    init(_ error: CoreError) {
        let status: Int
        switch error.code {
        case .invalidField: status = 400
        case .notFound: status = 404
        case .mamRestricted, .policyExcluded: status = 403
        case .deviceLimit, .deviceTenantConflict, .idempotencyConflict, .alreadyResolved: status = 409
        case .expired: status = 410
        }
        self.init(status, error.code.rawValue, error.detail)
    }

    var response: HTTPResponse {
        HTTPResponse.problem(status, code: code, title: Self.titles[status] ?? "Error", detail: detail)
    }

    private static let titles = [
        400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
        409: "Conflict", 410: "Gone", 413: "Content Too Large", 503: "Service Unavailable",
    ]
}

/// Decodes a request body into `Body`.
func decodeBody<Body: Decodable>(_ type: Body.Type, from bytes: [UInt8]) throws(Problem) -> Body {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    do {
        return try decoder.decode(type, from: Data(bytes))
    } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
        throw Problem(400, "invalid_json", "the body is not a JSON object")
    } catch DecodingError.typeMismatch(_, let context) where context.codingPath.isEmpty {
        throw Problem(400, "invalid_json", "the body is not a JSON object")
    } catch DecodingError.typeMismatch(let expected, let context) {
        throw Problem(400, "invalid_field", "\(path(context)) must be \(describe(expected))")
    } catch DecodingError.keyNotFound(let key, let context) {
        throw Problem(400, "invalid_field", "\(path(context, key)) is required")
    } catch DecodingError.valueNotFound(_, let context) {
        throw Problem(400, "invalid_field", "\(path(context)) must not be null")
    } catch DecodingError.dataCorrupted(let context) {
        throw Problem(400, "invalid_field", "\(path(context)) is not valid")
    } catch {
        throw Problem(400, "invalid_json", "the body is not valid JSON")
    }
}

private func path(_ context: DecodingError.Context, _ key: CodingKey? = nil) -> String {
    let keys = context.codingPath + (key.map { [$0] } ?? [])
    return keys.map { key in key.intValue.map { "[\($0)]" } ?? snakeCase(key.stringValue) }.joined(separator: ".")
}

private func snakeCase(_ name: String) -> String {
    var out = ""
    for character in name {
        if character.isUppercase {
            out += "_" + character.lowercased()
        } else {
            out.append(character)
        }
    }
    return out
}

private func describe(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Int.Type, is Int64.Type: "a whole number"
    case is Bool.Type: "true or false"
    default: "of another type"
    }
}

/// An integer field. Foundation reports a fractional or out-of-range number in an `Int` field as invalid JSON with
/// no field named; this decodes the number, requires it to be a whole number, and otherwise names the field.
struct JSONInteger: Decodable {
    let value: Int

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let whole = try? container.decode(Int.self) {
            value = whole
        } else if let number = try? container.decode(Double.self), number == number.rounded(), abs(number) < 1e15 {
            value = Int(number)
        } else {
            throw DecodingError.typeMismatch(
                Int.self, .init(codingPath: decoder.codingPath, debugDescription: "not a whole number"))
        }
    }
}

/// Builds one JSON object as text.
struct JSONWriter {
    private(set) var text = "{"
    private var first = true

    private mutating func key(_ name: String) {
        if !first { text += "," }
        first = false
        text += "\"\(name)\":"
    }

    mutating func string(_ name: String, _ value: String?) {
        key(name)
        text += value.map(jsonString) ?? "null"
    }

    mutating func integer(_ name: String, _ value: Int64?) {
        key(name)
        text += value.map(String.init) ?? "null"
    }

    mutating func bool(_ name: String, _ value: Bool) {
        key(name)
        text += value ? "true" : "false"
    }

    mutating func time(_ name: String, _ value: UnixMillis?) {
        key(name)
        text += value.map { "\"\(rfc3339($0))\"" } ?? "null"
    }

    mutating func strings(_ name: String, _ values: [String]) {
        key(name)
        text += "[" + values.map(jsonString).joined(separator: ",") + "]"
    }

    mutating func integers(_ name: String, _ values: [Int]) {
        key(name)
        text += "[" + values.map(String.init).joined(separator: ",") + "]"
    }

    /// Already-encoded JSON.
    mutating func raw(_ name: String, _ json: String) {
        key(name)
        text += json
    }

    var done: String { text + "}" }
}

/// `2026-11-25T10:00:00.123Z` for Unix milliseconds (days-from-civil inverted, proleptic Gregorian, UTC).
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
    let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }
    return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):"
        + "\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2)).\(pad(milliseconds, 3))Z"
}

extension HTTPResponse {
    static func json(_ status: Int, _ text: String, headers: HTTPHeaders = [:]) -> HTTPResponse {
        var fields: HTTPHeaders = ["content-type": "application/json"]
        for field in headers { fields.append(field.name, field.value) }
        return HTTPResponse(status: status, headers: fields, body: Array(text.utf8))
    }
}
