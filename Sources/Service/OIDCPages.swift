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
    /// Asks for the user's name, for the sealed flow `flow` of a client whose redirect URI is `returnTo`.
    /// `error` says what was wrong with the name typed before.
    case name(client: String, flow: String, returnTo: String, error: String?)
    /// Shows the number to tap while the sign-in is pending; follows it by script, or refreshes itself.
    case number(client: String, number: Int, secondsLeft: Int, flow: String, returnTo: String)
}

struct OIDCPages: Sendable {
    private let library: MustacheLibrary

    /// How often a page without script asks again whether its sign-in has ended.
    static let refreshSeconds = 5

    init() {
        var library = MustacheLibrary()
        let templates = [
            ("head", PackageResources.head_mustache), ("error", PackageResources.error_mustache),
            ("formpost", PackageResources.formpost_mustache), ("name", PackageResources.name_mustache),
            ("number", PackageResources.number_mustache),
        ]
        for (name, text) in templates {
            // The templates are this module's own, checked by its tests: one that does not parse is a build defect.
            // swift-format-ignore: NeverUseForceTry
            try! library.register(String(decoding: text, as: UTF8.self), named: name)
        }
        self.library = library
    }

    /// The page as a response of `status`.
    func response(_ page: OIDCPage, status: Int = 200) -> HTTPResponse {
        let nonce = Base64URL.encode(SecureRandom.bytes(16))
        let name: String
        var values: [String: Any] = ["nonce": nonce]
        var formAction = "'self'"
        switch page {
        case .error(let message):
            name = "error"
            values["title"] = "Sign-in cannot continue"
            values["message"] = message
            formAction = "'none'"
        case .formPost(let action, let fields):
            name = "formpost"
            values["title"] = "Returning to the app"
            values["action"] = action
            values["fields"] = fields.map { ["name": $0.name, "value": $0.value] }
            formAction = Self.origin(of: action) ?? "'none'"
        case .name(let client, let flow, let returnTo, let error):
            name = "name"
            values["error"] = error
            formAction = Self.formAction(returningTo: returnTo)
            values["title"] = "Sign in with your phone"
            values["client"] = client
            values["flow"] = flow
        case .number(let client, let number, let secondsLeft, let flow, let returnTo):
            name = "number"
            formAction = Self.formAction(returningTo: returnTo)
            values["title"] = "Tap \(number) on your phone"
            values["client"] = client
            values["number"] = String(number)
            values["secondsLeft"] = String(secondsLeft)
            values["refreshSeconds"] = String(Self.refreshSeconds)
            values["flow"] = flow
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

    /// Where a page's forms may go: this provider, and the client's redirect URI, which a form's answer may redirect
    /// to (browsers hold a redirect after a form to `form-action` too).
    static func formAction(returningTo redirectURI: String) -> String {
        "'self'" + (origin(of: redirectURI).map { " \($0)" } ?? "")
    }

    /// `scheme://host[:port]` of an absolute URL, for `form-action`.
    static func origin(of url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme,
            let host = components.host, !host.isEmpty
        else { return nil }
        return "\(scheme)://\(host.contains(":") ? "[\(host)]" : host)" + (components.port.map { ":\($0)" } ?? "")
    }
}
