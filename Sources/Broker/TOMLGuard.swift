// toml++ (inside TOMLKit 0.6.0) asserts, and so aborts the whole process, on some malformed documents instead of
// reporting an error; each shape below was found by fuzzing the configuration reader. The guard refuses those
// shapes first, with the error the parser should have given, so that a typo in a configuration file stops
// start-up with a message instead of SIGABRT.
struct TOMLGuard {
    /// Throws a ConfigError naming `source` and the line of the first shape the parser would abort on.
    static func check(_ text: String, source: String) throws {
        try refuseBadTableHeaders(text, source: source)
        try refuseBadValuePositions(text, source: source)
    }

    /// A table header whose name starts with anything but a bare-key character, a quote or `]`: `[ü]`, `[*x]`,
    /// `[[[x]]`, `[` alone on its line.
    private static func refuseBadTableHeaders(_ text: String, source: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-\"']".unicodeScalars)
        // Scalars, not Characters: `[` followed by a combining mark is one Character that is not "[".
        for (index, line) in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let header = line.drop { $0 == " " || $0 == "\t" }
            guard header.first == "[" else { continue }
            // `[` or `[[` (adjacent), then spaces, then the name: `[[[x]]` is as fatal as `[*x]`.
            var name = header.dropFirst()
            if name.first == "[" { name = name.dropFirst() }
            name = name.drop { $0 == " " || $0 == "\t" }
            if let first = name.first, allowed.contains(first) { continue }
            throw ConfigError(
                "\(source): line \(index + 1): a table name must start with a letter, digit, _, - or a quote")
        }
    }

    /// Where an array expects a value: a `}` there (`[}]`, `[1, }]`), which no valid document has after `[` or
    /// `,`; and a Unicode line separator (U+0085, U+2028, U+2029), which the parser counts as whitespace that ends
    /// a value but does not skip. The separators are refused anywhere, `}` outside strings and comments.
    private static func refuseBadValuePositions(_ text: String, source: String) throws {
        var line = 1
        var state = LexState.plain
        var lastSignificant: Unicode.Scalar = "\n"
        var scalars = text.unicodeScalars[...]
        func fail(_ problem: String) -> ConfigError { ConfigError("\(source): line \(line): \(problem)") }
        while let scalar = scalars.popFirst() {
            switch scalar {
            case "\n": line += 1
            case "\u{85}", "\u{2028}", "\u{2029}":
                throw fail(
                    "a Unicode line separator (U+\(String(scalar.value, radix: 16, uppercase: true))) "
                        + "is not allowed; end lines with a line feed")
            default: break
            }
            switch state {
            case .comment:
                if scalar == "\n" { state = .plain }
            case .string(let quote, let multiline):
                if scalar == "\\" && quote == "\"" {
                    if scalars.first == "\n" { line += 1 }
                    scalars = scalars.dropFirst()
                } else if scalar == quote && (!multiline || scalars.starts(with: [quote, quote])) {
                    if multiline { scalars = scalars.dropFirst(2) }
                    state = .plain
                }
            case .plain:
                switch scalar {
                case "#": state = .comment
                case "\"", "'":
                    let multiline = scalars.starts(with: [scalar, scalar])
                    if multiline { scalars = scalars.dropFirst(2) }
                    state = .string(quote: scalar, multiline: multiline)
                    lastSignificant = scalar
                case "}" where lastSignificant == "[" || lastSignificant == ",":
                    throw fail("expected a value or ']', saw '}'")
                case " ", "\t", "\r", "\n": break
                default: lastSignificant = scalar
                }
            }
        }
    }

    private enum LexState {
        case plain
        case comment
        case string(quote: Unicode.Scalar, multiline: Bool)
    }
}
