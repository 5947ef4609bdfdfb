// application/x-www-form-urlencoded (the WHATWG URL standard's, as RFC 6749 uses it): authorization requests in a
// query or a form, token requests, and the parameters an authorization response carries back.
import Foundation

public enum FormEncoding {
    /// The name/value pairs of `text` (`a=1&b=x+y%21`), in order; nil when a percent-escape is malformed or does
    /// not decode to UTF-8.
    public static func decode(_ text: String) -> [(name: String, value: String)]? {
        var pairs: [(name: String, value: String)] = []
        for part in text.split(separator: "&", omittingEmptySubsequences: true) {
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decoded(pieces[0]), let value = decoded(pieces.count == 2 ? pieces[1] : "") else {
                return nil
            }
            pairs.append((name, value))
        }
        return pairs
    }

    /// One name or value: `+` a space, percent-escapes decoded; nil when an escape is malformed or not UTF-8.
    static func decoded(_ part: Substring) -> String? {
        let spaced = part.replacingOccurrences(of: "+", with: " ")
        return spaced.contains("%") ? spaced.removingPercentEncoding : spaced
    }

    /// The pairs encoded: everything but unreserved characters percent-escaped, spaces as `+`.
    public static func encode(_ pairs: [(name: String, value: String)]) -> String {
        pairs.map { "\(encoded($0.name))=\(encoded($0.value))" }.joined(separator: "&")
    }

    private static let unreserved = CharacterSet(
        charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~ ")

    private static func encoded(_ text: String) -> String {
        (text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? "").replacingOccurrences(of: " ", with: "+")
    }

    /// `uri` with `pairs` added to its query (a registered redirect URI may have one of its own, which is kept).
    public static func appending(_ pairs: [(name: String, value: String)], to uri: String) -> String {
        uri + (uri.contains("?") ? "&" : "?") + encode(pairs)
    }
}
