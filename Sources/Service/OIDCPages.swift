// The OpenID provider's pages: Mustache templates, which HTML-escape every value they echo (none uses the
// unescaped triple mustache), embedded in the binary; each page is sent with its own CSP nonce for its one style
// and script, no external asset, and headers that keep it out of frames, caches and referrers.
import Crypto
import Foundation
import HTTP
import Mustache

/// A page and what it shows.
enum OIDCPage {
    /// The request cannot go back to its client (an unknown client or redirect URI): said to the browser.
    case error(message: String)
    /// An authorization response by `form_post`: a form of `fields` that submits itself to `action`.
    case formPost(action: String, fields: [(name: String, value: String)])
}

struct OIDCPages: Sendable {
    private let library: MustacheLibrary

    init() {
        var library = MustacheLibrary()
        // The templates are this module's own, checked by its tests: one that does not parse is a build defect.
        // swift-format-ignore: NeverUseForceTry
        try! library.register(String(decoding: PackageResources.error_mustache, as: UTF8.self), named: "error")
        // swift-format-ignore: NeverUseForceTry
        try! library.register(String(decoding: PackageResources.formpost_mustache, as: UTF8.self), named: "formpost")
        self.library = library
    }

    /// The page as a response of `status`.
    func response(_ page: OIDCPage, status: Int = 200) -> HTTPResponse {
        let nonce = Base64URL.encode(SecureRandom.bytes(16))
        let name: String
        var values: [String: Any] = ["nonce": nonce]
        var formAction = "'none'"
        switch page {
        case .error(let message):
            name = "error"
            values["message"] = message
        case .formPost(let action, let fields):
            name = "formpost"
            values["action"] = action
            values["fields"] = fields.map { ["name": $0.name, "value": $0.value] }
            formAction = Self.origin(of: action) ?? "'none'"
        }
        let body = library.render(values, withTemplate: name) ?? ""
        return HTTPResponse(
            status: status, headers: Self.headers(nonce: nonce, formAction: formAction), body: Array(body.utf8))
    }

    /// What every page is sent with: its nonce the only way a style or script runs, forms only to where the page
    /// sends them, never in a frame, never cached, never named in a Referer.
    static func headers(nonce: String, formAction: String) -> HTTPHeaders {
        [
            ("content-type", "text/html; charset=utf-8"),
            (
                "content-security-policy",
                "default-src 'none'; script-src 'nonce-\(nonce)'; style-src 'nonce-\(nonce)'; img-src 'self' data:; "
                    + "connect-src 'self'; form-action \(formAction); frame-ancestors 'none'; base-uri 'none'"
            ),
            ("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"), ("cache-control", "no-store"),
            ("x-frame-options", "DENY"),
        ]
    }

    /// `scheme://host[:port]` of an absolute URL, for `form-action`.
    static func origin(of url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme,
            let host = components.host, !host.isEmpty
        else { return nil }
        return "\(scheme)://\(host.contains(":") ? "[\(host)]" : host)" + (components.port.map { ":\($0)" } ?? "")
    }
}
