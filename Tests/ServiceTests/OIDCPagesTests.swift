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

@Suite struct OIDCSignInPagesTests {
    let pages = OIDCPages()

    @Test func theNamePageEscapesWhatItEchoesAndPostsHereOrToTheClient() throws {
        let response = pages.response(
            .name(
                client: "<b>app</b>", flow: #"f"><x"#, returnTo: "https://app.example.com/cb",
                error: "<i>again</i>"))
        let body = String(decoding: response.body, as: UTF8.self)
        #expect(body.contains("to &lt;b&gt;app&lt;/b&gt;") && body.contains("&lt;i&gt;again&lt;/i&gt;"))
        #expect(body.contains(#"name="f" value="f&quot;&gt;&lt;x""#))
        #expect(body.contains(#"<form method="post" action="sign-in">"#))
        #expect(body.contains("autocomplete=\"username\"") && body.contains("<label for=\"username\">"))
        let policy = response.headers[field: "content-security-policy"] ?? ""
        #expect(policy.contains("form-action 'self' https://app.example.com;"))
        #expect(body.contains("<p role=\"alert\">"))
        let plain = String(
            decoding: pages.response(
                .name(client: "app", flow: "f", returnTo: "https://app.example.com/cb", error: nil)
            ).body, as: UTF8.self)
        #expect(!plain.contains("role=\"alert\""))
    }

    @Test func theNumberPageShowsTheNumberFollowsByScriptAndRefreshesWithout() throws {
        let response = pages.response(
            .number(client: "webapp", number: 42, secondsLeft: 118, flow: "abc", returnTo: "http://localhost:3000/cb"))
        let body = String(decoding: response.body, as: UTF8.self)
        #expect(body.contains(#"<p class="number" id="number" aria-label="the number 42">42</p>"#))
        #expect(body.contains(#"<span id="seconds">118</span>"#))
        #expect(body.contains(#"<noscript><meta http-equiv="refresh" content="5"></noscript>"#))
        #expect(body.contains(#"<form method="post" action="sign-in/cancel">"#))
        #expect(body.contains("Use your password instead"))
        let policy = response.headers[field: "content-security-policy"] ?? ""
        let nonce = try #require(policy.firstMatch(of: /'nonce-([A-Za-z0-9_-]{22})'/)?.output.1)
        #expect(body.contains("<script nonce=\"\(nonce)\">") && body.contains("sign-in/status?wait=25&f="))
        #expect(policy.contains("connect-src 'self'") && policy.contains("form-action 'self' http://localhost:3000;"))
        #expect(body.components(separatedBy: "<script").count == 2, "one script, with the nonce")
    }
}

@Suite struct BrowserCookieTests {
    func request(cookies: [String]) -> HTTPRequest {
        HTTPRequest(method: "GET", path: "/", headers: HTTPHeaders(cookies.map { ("cookie", $0) }))
    }

    @Test func onTLSTheCookieIsSecureWithAHostName() {
        let cookie = BrowserCookie(issuer: "https://login.example.com")
        #expect(
            cookie.setting("AAAAAAAAAAAAAAAAAAAAAA")
                == "__Host-approvald-browser=AAAAAAAAAAAAAAAAAAAAAA; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax; Secure"
        )
        let plain = BrowserCookie(issuer: "http://localhost:8080")
        #expect(plain.setting("x").hasPrefix("approvald-browser=x;") && !plain.setting("x").contains("Secure"))
    }

    @Test func theBrowsersIdIsFoundInAnyCookieFieldAndNothingElseIsTaken() {
        let cookie = BrowserCookie(issuer: "http://localhost:8080")
        let id = "bGV0IG1lIGluIHBsZWFzZQ"
        #expect(cookie.browser(of: request(cookies: ["a=1; approvald-browser=\(id); b=2"])) == id)
        #expect(cookie.browser(of: request(cookies: ["a=1", "approvald-browser=\(id)"])) == id)
        #expect(cookie.browser(of: request(cookies: ["xapprovald-browser=\(id)"])) == nil)
        #expect(cookie.browser(of: request(cookies: ["approvald-browser=short"])) == nil)
        #expect(cookie.browser(of: request(cookies: [])) == nil)
        let secure = BrowserCookie(issuer: "https://login.example.com")
        #expect(secure.browser(of: request(cookies: ["approvald-browser=\(id)"])) == nil)
        #expect(secure.browser(of: request(cookies: ["__Host-approvald-browser=\(id)"])) == id)
    }

    @Test(
        arguments: [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36 Edg/131.0",
                "Edge"
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
                "Chrome"
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 Version/18.1 Safari/605.1.15",
                "Safari"
            ),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox"),
            ("curl/7.88.1", nil),
        ] as [(String, String?)])
    func theBrowserIsNamedForThePhone(agent: String, name: String?) {
        #expect(BrowserName.of(userAgent: agent) == name)
    }
}
