// Reads typed values out of a parsed TOML document by key path, with APPROVALD_… environment overrides and
// errors that name the key and the problem.
import Foundation
import TOMLKit

public struct ConfigError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A view of one TOML table at `path` (such as `http2`), remembering which keys were read so that a misspelt
/// key is reported instead of silently ignored.
final class ConfigReader {
    private let table: TOMLTable
    let path: String
    private let environment: [String: String]
    private var known: Set<String> = []

    init(table: TOMLTable, path: String, environment: [String: String]) {
        self.table = table
        self.path = path
        self.environment = environment
    }

    /// `section.key` for messages.
    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// APPROVALD_SECTION_KEY: the key path upper-cased, dots and brackets as underscores
    /// (`listeners[0].port` is APPROVALD_LISTENERS_0_PORT).
    func environmentName(_ key: String) -> String {
        let name = keyPath(key).uppercased().map { character -> Character in
            character == "." || character == "[" ? "_" : character
        }
        return "APPROVALD_" + String(name.filter { $0 != "]" })
    }

    private func value<T>(
        _ key: String, _ expected: String, from toml: (TOMLValueConvertible) -> T?, parse: (String) -> T?
    )
        throws -> T?
    {
        known.insert(key)
        if let text = environment[environmentName(key)] {
            guard let parsed = parse(text) else {
                throw ConfigError(
                    "\(environmentName(key)) (for \(keyPath(key))): expected \(expected), got \"\(text)\"")
            }
            return parsed
        }
        guard let raw = table[key] else { return nil }
        guard let typed = toml(raw) else {
            throw ConfigError("\(keyPath(key)): expected \(expected), got a \(raw.type)")
        }
        return typed
    }

    func string(_ key: String) throws -> String? {
        try value(key, "a string", from: { $0.string }, parse: { $0 })
    }

    func bool(_ key: String) throws -> Bool? {
        try value(key, "true or false", from: { $0.bool }, parse: { ["true": true, "false": false][$0] })
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let number = try value(key, "an integer", from: { $0.int }, parse: { Int($0) }) else { return nil }
        guard range.contains(number) else {
            throw ConfigError("\(keyPath(key)): \(number) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    func seconds(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        let number = try value(
            key, "a number of seconds", from: { $0.double ?? $0.int.map(Double.init) }, parse: { Double($0) })
        guard let number else { return nil }
        guard range.contains(number) else {
            throw ConfigError("\(keyPath(key)): \(number) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    /// A list of strings (`["a", "b"]`); from the environment, comma-separated.
    func strings(_ key: String) throws -> [String]? {
        try value(
            key, "a list of strings",
            from: { raw in
                guard let array = raw.array else { return nil }
                let strings = array.compactMap(\.string)
                return strings.count == array.count ? strings : nil
            }, parse: { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } })
    }

    /// The keys of this table, sorted.
    var keys: [String] { table.keys.sorted() }

    /// The nested table `key`; an absent one reads as empty, so its environment overrides still apply.
    func table(_ key: String) throws -> ConfigReader {
        known.insert(key)
        guard let raw = table[key] else {
            return ConfigReader(table: TOMLTable(), path: keyPath(key), environment: environment)
        }
        guard let nested = raw.table else { throw ConfigError("\(keyPath(key)): expected a table, got a \(raw.type)") }
        return ConfigReader(table: nested, path: keyPath(key), environment: environment)
    }

    func tables(_ key: String) throws -> [ConfigReader]? {
        known.insert(key)
        guard let raw = table[key] else { return nil }
        guard let array = raw.array else {
            throw ConfigError("\(keyPath(key)): expected an array of tables ([[\(keyPath(key))]]), got a \(raw.type)")
        }
        return try array.enumerated().map { index, element in
            guard let nested = element.table else {
                throw ConfigError("\(keyPath(key))[\(index)]: expected a table, got a \(element.type)")
            }
            return ConfigReader(table: nested, path: "\(keyPath(key))[\(index)]", environment: environment)
        }
    }

    /// Fails on the first key that no reader asked for.
    func rejectUnknownKeys() throws {
        if let unknown = table.keys.sorted().first(where: { !known.contains($0) }) {
            throw ConfigError("\(keyPath(unknown)): unknown key")
        }
    }
}
