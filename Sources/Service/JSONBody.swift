// Request bodies: typed access to parsed JSON with API.md's errors. A syntax error is `invalid_json`; a missing
// field, a null where a value is required or a value of the wrong type is `invalid_field`, naming the field.
import JSONText

/// A request body's top-level object, or a nested one, with the field path for errors.
struct JSONObject {
    private let members: [(name: String, value: JSONValue)]
    private let path: String

    init(members: [(name: String, value: JSONValue)], path: String = "") {
        self.members = members
        self.path = path
    }

    private func fieldPath(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }

    /// The member's value; nil when it is absent or null.
    private func present(_ name: String) -> JSONValue? {
        guard let value = members.last(where: { $0.name == name })?.value, value != .null else { return nil }
        return value
    }

    private func required(_ name: String) throws(Problem) -> JSONValue {
        guard let value = members.last(where: { $0.name == name })?.value else {
            throw Problem.invalidField("\(fieldPath(name)) is required")
        }
        guard value != .null else { throw Problem.invalidField("\(fieldPath(name)) must not be null") }
        return value
    }

    private func mismatch(_ name: String, _ expected: String) -> Problem {
        Problem.invalidField("\(fieldPath(name)) must be \(expected)")
    }

    func string(_ name: String) throws(Problem) -> String {
        guard case .string(let text) = try required(name) else { throw mismatch(name, "a string") }
        return text
    }

    func optionalString(_ name: String) throws(Problem) -> String? {
        guard let value = present(name) else { return nil }
        guard case .string(let text) = value else { throw mismatch(name, "a string") }
        return text
    }

    func integer(_ name: String) throws(Problem) -> Int {
        guard let integer = Self.wholeNumber(try required(name)) else { throw mismatch(name, "a whole number") }
        return integer
    }

    func optionalInteger(_ name: String) throws(Problem) -> Int? {
        guard let value = present(name) else { return nil }
        guard let integer = Self.wholeNumber(value) else { throw mismatch(name, "a whole number") }
        return integer
    }

    /// An integer, or a number with no fractional part within ±10^15 (`42.0`, `4.2e1`).
    private static func wholeNumber(_ value: JSONValue) -> Int? {
        switch value {
        case .integer(let integer): integer
        case .double(let number) where number == number.rounded() && abs(number) < 1e15: Int(number)
        default: nil
        }
    }

    func optionalBool(_ name: String) throws(Problem) -> Bool? {
        guard let value = present(name) else { return nil }
        guard case .bool(let flag) = value else { throw mismatch(name, "true or false") }
        return flag
    }

    func optionalObject(_ name: String) throws(Problem) -> JSONObject? {
        guard let value = present(name) else { return nil }
        guard case .object(let members) = value else { throw mismatch(name, "an object") }
        return JSONObject(members: members, path: fieldPath(name))
    }

    func optionalStrings(_ name: String) throws(Problem) -> [String]? {
        guard let value = present(name) else { return nil }
        guard case .array(let elements) = value else { throw mismatch(name, "a list of strings") }
        var strings: [String] = []
        for (index, element) in elements.enumerated() {
            guard case .string(let text) = element else {
                throw Problem.invalidField("\(fieldPath(name))[\(index)] must be a string")
            }
            strings.append(text)
        }
        return strings
    }

    /// An object whose members are all strings.
    func optionalStringMap(_ name: String) throws(Problem) -> [String: String]? {
        guard let object = try optionalObject(name) else { return nil }
        var map: [String: String] = [:]
        for member in object.members { map[member.name] = try object.string(member.name) }
        return map
    }
}

/// A body type read from a request's top-level JSON object.
protocol RequestBody {
    init(_ object: JSONObject) throws(Problem)
}

/// Parses a request body into `Body`.
func decodeBody<Body: RequestBody>(_ type: Body.Type, from bytes: [UInt8]) throws(Problem) -> Body {
    guard let value = JSONValue.parse(bytes) else {
        throw Problem.invalidJSON("the body is not valid JSON")
    }
    guard case .object(let members) = value else {
        throw Problem.invalidJSON("the body is not a JSON object")
    }
    return try Body(JSONObject(members: members))
}
