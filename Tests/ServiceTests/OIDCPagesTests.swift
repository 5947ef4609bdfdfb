// The OpenID provider's pages: what they echo is escaped, their one style and script carry the nonce the CSP
// names, a form posts only where the CSP lets it, and every page is kept out of frames, caches and referrers.
import HTTP
import Testing

@testable import Service

@Suite struct OIDCPagesTests {
    let pages = OIDCPages()

    func header(_ response: HTTPResponse, _ name: String) -> String {
        response.headers[field: name] ?? ""
    }

    @Test func anErrorPageEscapesItsMessageAndSendsAStrictPolicy() throws {
        let response = pages.response(.error(message: #"<script>alert("x")</script> & 'y'"#), status: 400)
        let body = String(decoding: response.body, as: UTF8.self)
        #expect(response.status == 400 && header(response, "content-type") == "text/html; charset=utf-8")
        #expect(body.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"))
        #expect(!body.contains("<script>alert"))
        let policy = header(response, "content-security-policy")
        let nonce = try #require(policy.firstMatch(of: /'nonce-([A-Za-z0-9_-]{22})'/)?.output.1)
        #expect(body.contains("<style nonce=\"\(nonce)\">"))
        #expect(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"))
        #expect(policy.contains("form-action 'none'") && policy.contains("base-uri 'none'"))
        #expect(header(response, "x-content-type-options") == "nosniff")
        #expect(header(response, "referrer-policy") == "no-referrer" && header(response, "cache-control") == "no-store")
        // A fresh nonce for each page.
        let again = pages.response(.error(message: "m"), status: 400)
        #expect(header(again, "content-security-policy") != policy)
        #expect(!body.contains("http://") && !body.contains("https://"), "no external asset")
    }

    @Test func aFormPostPageEscapesItsFieldsAndPostsOnlyToItsAction() throws {
        let response = pages.response(
            .formPost(
                action: "https://app.example.com:8443/cb?x=1&y=2",
                fields: [(name: "state", value: #""><script>alert(1)</script>"#), (name: "code", value: "c")]))
        let body = String(decoding: response.body, as: UTF8.self)
        #expect(body.contains(#"action="https://app.example.com:8443/cb?x=1&amp;y=2""#))
        #expect(body.contains(#"name="state" value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;""#))
        #expect(!body.contains("<script>alert"))
        let policy = header(response, "content-security-policy")
        #expect(policy.contains("form-action https://app.example.com:8443;"))
        let nonce = try #require(policy.firstMatch(of: /'nonce-([A-Za-z0-9_-]{22})'/)?.output.1)
        #expect(body.contains("<script nonce=\"\(nonce)\">document.getElementById(\"return\").submit();</script>"))
        #expect(body.contains("<noscript>"), "without script, a button returns to the app")
    }
}
