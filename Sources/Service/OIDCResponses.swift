// What the OpenID provider's endpoints share: the authorization response in the client's response mode, the
// browser's cookie, and the browser's name for the phone's prompt.
import Foundation
import HTTP
import OIDC

enum OIDCResponse {
    /// An authorization response to the client's redirect URI: a redirect with `fields` in its query, or a page
    /// that posts them there (form_post).
    static func authorization(
        to redirectURI: String, _ mode: AuthorizationRequest.ResponseMode, _ fields: [(name: String, value: String)],
        pages: OIDCPages
    ) -> HTTPResponse {
        switch mode {
        case .query:
            HTTPResponse(
                status: 302,
                headers: [
                    ("location", FormEncoding.appending(fields, to: redirectURI)), ("cache-control", "no-store"),
                    ("referrer-policy", "no-referrer"),
                ])
        case .formPost: pages.response(.formPost(action: redirectURI, fields: fields))
        }
    }
}

/// The cookie that binds a flow to the browser that started it: a random id, HttpOnly and SameSite=Lax, and on TLS
/// `Secure` with a `__Host-` name (which a browser keeps only from its own host, for every path).
struct BrowserCookie {
    let name: String
    private let attributes: String

    /// How long a browser keeps its id.
    static let maxAgeSeconds = 86_400

    init(issuer: String) {
        let secure = issuer.lowercased().hasPrefix("https://")
        name = secure ? "__Host-approvald-browser" : "approvald-browser"
        attributes = "; Path=/; Max-Age=\(Self.maxAgeSeconds); HttpOnly; SameSite=Lax" + (secure ? "; Secure" : "")
    }

    /// The browser's id, from any of its `cookie` fields (HTTP/2 may split them).
    func browser(of request: HTTPRequest) -> String? {
        for field in request.headers where field.name == "cookie" {
            for pair in field.value.split(separator: ";") {
                let trimmed = pair.trimmingCharacters(in: .whitespaces)
                guard let equals = trimmed.firstIndex(of: "="), trimmed[..<equals] == name else { continue }
                let value = trimmed[trimmed.index(after: equals)...]
                if value.utf8.count == 22 { return String(value) }
            }
        }
        return nil
    }

    /// The `set-cookie` value that gives the browser `id`.
    func setting(_ id: String) -> String { "\(name)=\(id)\(attributes)" }
}

/// The browser a `User-Agent` names, for the phone's prompt ("Firefox", "Edge", …); nil when none is known.
enum BrowserName {
    /// Most specific first: Edge's and Opera's agents also name Chrome, and Chrome's names Safari.
    private static let known = [
        ("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Safari/", "Safari"),
    ]

    static func of(userAgent: String?) -> String? {
        guard let userAgent else { return nil }
        return known.first { userAgent.contains($0.0) }?.1
    }
}
