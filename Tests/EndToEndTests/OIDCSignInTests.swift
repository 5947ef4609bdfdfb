// A browser's sign-in through the OpenID provider against the real binary: curl with a cookie jar plays the
// browser, a simulated phone answers, and the client redeems its code at the token endpoint. Every end of a
// sign-in returns to the client as the contract says, and a flow cannot be followed from another browser.
import Crypto
import Foundation
import TestSupport
import Testing

/// A browser: curl with its own cookie jar, following no redirect, so that each answer is seen.
struct Browser {
    let broker: ApprovaldProcess
    let jar: String
    var userAgent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

    /// A browser of its own, or the one whose cookie `jar` it shares (on another instance or after a restart:
    /// cookies belong to the host, whatever the port).
    init(_ broker: ApprovaldProcess, jar: String? = nil) {
        self.broker = broker
        self.jar = jar ?? broker.directory.appendingPathComponent("cookies-\(UUID().uuidString)").path
    }

    func get(_ path: String) throws -> Reply { try request("GET", broker.h2cURL + path, form: nil) }

    /// A page of another site (an absolute URL).
    func visit(_ url: String) throws -> Reply { try request("GET", url, form: nil) }

    func post(_ path: String, form: [(String, String)], headers: [String] = []) throws -> Reply {
        try request("POST", broker.h2cURL + path, form: form, headers: headers)
    }

    private func request(
        _ method: String, _ url: String, form: [(String, String)]?, headers: [String] = []
    )
        throws -> Reply
    {
        let headerFile = broker.directory.appendingPathComponent("headers-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: headerFile) }
        var arguments = [
            "curl", "-sS", broker.cleartextProtocol.curlFlag, "--max-time", "40", "-X", method, "-D", headerFile,
            "-b", jar, "-c", jar, "-A", userAgent, "-w", "\n%{http_code}",
        ]
        for header in headers { arguments += ["-H", header] }
        if let form {
            arguments += [
                "-H", "content-type: application/x-www-form-urlencoded", "--data-binary", formEncoded(form),
            ]
        }
        let result = try runCommand(arguments + [url], timeout: 60)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return Reply(
            status: Int(lines.last ?? "") ?? 0, body: lines.dropLast().joined(separator: "\n"),
            headers: (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? "")
    }
}

func formEncoded(_ pairs: [(String, String)]) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return pairs.map {
        "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
    }.joined(separator: "&")
}

/// The value of a page's hidden field or element text, unescaped as a browser would.
func pageValue(_ body: String, after marker: String, until end: String = "\"") -> String? {
    guard let start = body.range(of: marker), let stop = body[start.upperBound...].range(of: end) else { return nil }
    return String(body[start.upperBound..<stop.lowerBound]).replacingOccurrences(of: "&amp;", with: "&")
        .replacingOccurrences(of: "&#x3D;", with: "=").replacingOccurrences(of: "&#x2F;", with: "/")
}

/// A query's parameters, decoded.
func queryParameters(_ url: String) -> [String: String] {
    let items = URLComponents(string: url)?.queryItems ?? []
    return Dictionary(items.map { ($0.name, $0.value ?? "") }) { _, last in last }
}

/// A JWT's payload, not verified.
func jwtClaims(_ token: String) -> [String: Any] {
    let parts = token.split(separator: ".")
    guard parts.count == 3, let payload = Base64URL.decode(String(parts[1])) else { return [:] }
    return (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any] ?? [:]
}

@Suite struct OIDCSignInTests {
    static let redirectURI = "https://app.contoso.test/cb?tenant=1"
    static let secret = "a client secret of at least thirty-two bytes"

    /// The confidential client most tests sign in as.
    static let webappClient = """
        [[oidc.clients]]
        client_id = "webapp"
        client_secret = "\(secret)"
        redirect_uris = ["\(redirectURI)"]
        tenant = "contoso"

        """

    /// A token request for `code` by `webapp`, its secret in the form (client_secret_post), with the verifier.
    static func redemption(_ code: String) -> [(String, String)] {
        [
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI),
            ("code_verifier", verifier), ("client_id", "webapp"), ("client_secret", secret),
        ]
    }

    func broker() throws -> ApprovaldProcess {
        try oidcBroker(
            issuer: "http://login.contoso.test",
            clients: Self.webappClient + """
                [[oidc.clients]]
                client_id = "spa"
                redirect_uris = ["https://spa.contoso.test/cb"]
                tenant = "contoso"
                """)
    }

    /// A verifier and its S256 challenge (RFC 7636).
    static let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    static var challenge: String { Base64URL.encode(SHA256.hash(Array(verifier.utf8))) }

    func authorizeQuery(_ extra: [(String, String)] = []) -> String {
        formEncoded(
            [
                ("client_id", "webapp"), ("redirect_uri", Self.redirectURI), ("response_type", "code"),
                ("scope", "openid profile"), ("state", "st<\"&>"), ("nonce", "n-0S6_WzA2Mj"),
                ("code_challenge", Self.challenge), ("code_challenge_method", "S256"),
            ] + extra)
    }

    /// Signs in to the name page, types `user`, and returns the number page's flow path and the page.
    func startSignIn(_ browser: Browser, user: String) throws -> (path: String, page: Reply) {
        let namePage = try browser.get("/oidc/authorize?" + authorizeQuery())
        #expect(namePage.status == 200, "\(namePage.body)")
        #expect(namePage.body.contains("name=\"username\""))
        let flow = try #require(pageValue(namePage.body, after: "name=\"f\" value=\""))
        let named = try browser.post("/oidc/sign-in", form: [("f", flow), ("username", user)])
        #expect(named.status == 303, "\(named.body)")
        let location = try #require(named.header("location"))
        #expect(location.hasPrefix("sign-in?f="))
        let path = "/oidc/" + location
        return (path, try browser.get(path))
    }

    /// The phone's one queued challenge.
    func queued(_ phone: SimulatedDevice, _ broker: ApprovaldProcess) throws -> [String: Any] {
        let queue = try phone.call(broker, "GET", "/v1/devices/\(phone.id)/challenges")
        return try #require((queue.json["challenges"] as? [[String: Any]])?.first)
    }

    @Test func aBrowserSignsInByTheNumberAndTheClientRedeemsItsCodeOnce() throws {
        let broker = try broker()
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("alice-phone")
        #expect(try idp.register(phone, user: "alice@contoso.com").status == 201)
        let browser = Browser(broker)

        let (path, page) = try startSignIn(browser, user: "alice@contoso.com")
        #expect(page.status == 200)
        #expect(page.header("content-security-policy")?.contains("frame-ancestors 'none'") == true)
        #expect(page.header("content-security-policy")?.contains("form-action 'self' https://app.contoso.test") == true)
        #expect(page.header("cache-control") == "no-store" && page.header("referrer-policy") == "no-referrer")
        #expect(page.body.contains("Use your password instead"))
        #expect(page.body.contains("<meta http-equiv=\"refresh\""))
        let shown = try #require(pageValue(page.body, after: "aria-label=\"the number ").flatMap { Int($0) })

        // Another browser that learns the page's address can neither follow nor finish the flow.
        let stranger = Browser(broker)
        #expect(try stranger.get(path).status == 403)
        #expect(try stranger.get(path.replacingOccurrences(of: "sign-in?", with: "sign-in/status?")).status == 404)

        // The phone sees the client and the browser, and approves with the number shown.
        let view = try queued(phone, broker)
        let context = view["context"] as? [String: String]
        #expect(context?["app"] == "webapp" && context?["browser"] == "Firefox")
        #expect((view["request_id"] as? String)?.hasPrefix("oidc-") == true)
        #expect(try phone.answer(broker, view, approve: shown).status == 200)

        let status = try browser.get(path.replacingOccurrences(of: "sign-in?", with: "sign-in/status?") + "&wait=5")
        #expect(status.status == 200 && status.json["status"] as? String == "ended")
        let back = try browser.get(path)
        #expect(back.status == 302)
        let location = try #require(back.header("location"))
        #expect(location.hasPrefix(Self.redirectURI + "&code="))
        let returned = queryParameters(location)
        #expect(returned["state"] == "st<\"&>" && returned["tenant"] == "1")
        let code = try #require(returned["code"])

        // The token endpoint: the wrong verifier, the wrong secret and another redirect URI are refused without
        // spending the code; the right request redeems it once.
        func redeem(
            verifier: String = Self.verifier, secret: String = Self.secret, redirect: String = Self.redirectURI
        )
            throws -> Reply
        {
            try browser.post(
                "/oidc/token",
                form: [
                    ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect),
                    ("code_verifier", verifier),
                ],
                headers: ["authorization: Basic " + Data("webapp:\(secret)".utf8).base64EncodedString()])
        }
        let wrongVerifier = try redeem(verifier: String(repeating: "a", count: 43))
        #expect(wrongVerifier.status == 400 && wrongVerifier.json["error"] as? String == "invalid_grant")
        let wrongSecret = try redeem(secret: "not the secret of this client at all, no")
        #expect(wrongSecret.status == 401 && wrongSecret.json["error"] as? String == "invalid_client")
        #expect(wrongSecret.header("www-authenticate")?.hasPrefix("Basic") == true)
        #expect(try redeem(redirect: "https://app.contoso.test/cb").json["error"] as? String == "invalid_grant")
        let tokens = try redeem()
        #expect(tokens.status == 200, "\(tokens.body)")
        #expect(tokens.header("cache-control") == "no-store")
        #expect(tokens.json["token_type"] as? String == "Bearer" && tokens.json["expires_in"] as? Int == 600)
        let claims = jwtClaims(try #require(tokens.json["id_token"] as? String))
        #expect(claims["iss"] as? String == "http://login.contoso.test")
        #expect(claims["sub"] as? String == "alice@contoso.com" && claims["aud"] as? String == "webapp")
        #expect(claims["nonce"] as? String == "n-0S6_WzA2Mj" && claims["amr"] as? [String] == ["hwk"])
        #expect(claims["approvald_challenge_id"] as? String == view["challenge_id"] as? String)
        let again = try redeem()
        #expect(again.status == 400 && again.json["error"] as? String == "invalid_grant")

        // userinfo takes the access token, and nothing else.
        let access = try #require(tokens.json["access_token"] as? String)
        let info = try send(broker, "GET", "/oidc/userinfo", body: nil, headers: ["authorization: Bearer \(access)"])
        #expect(info.status == 200 && info.json["sub"] as? String == "alice@contoso.com")
        #expect(info.json["preferred_username"] as? String == "alice@contoso.com")
        let forged = try send(broker, "GET", "/oidc/userinfo", body: nil, headers: ["authorization: Bearer \(code)"])
        #expect(forged.status == 401 && forged.header("www-authenticate")?.contains("invalid_token") == true)

        let metrics = try broker.curl("/metrics").body
        #expect(metrics.contains("approvald_oidc_authorizations_total{result=\"code\"} 1"))
        #expect(metrics.contains("approvald_oidc_authorizations_total{result=\"access_denied\"} 0"))
    }

    @Test func everyOtherEndReturnsAccessDeniedWithItsReason() throws {
        let broker = try broker()
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("bob-phone")
        #expect(try idp.register(phone, user: "bob@contoso.com").status == 201)

        func ended(_ browser: Browser, _ path: String) throws -> [String: String] {
            let back = try browser.get(path)
            #expect(back.status == 302)
            return queryParameters(back.header("location") ?? "")
        }
        // A wrong number.
        let first = Browser(broker)
        let (wrongPath, wrongPage) = try startSignIn(first, user: "bob@contoso.com")
        let shown = pageValue(wrongPage.body, after: "aria-label=\"the number ").flatMap { Int($0) }
        let view = try queued(phone, broker)
        let wrong = try #require((view["choices"] as? [Int])?.first { $0 != shown })
        _ = try phone.answer(broker, view, approve: wrong)
        let denied = try ended(first, wrongPath)
        #expect(denied["error"] == "access_denied" && denied["error_description"] == "denied:wrong_number")
        #expect(denied["state"] == "st<\"&>")

        // "Use your password instead" cancels the challenge, which the phone hears.
        let second = Browser(broker)
        let (cancelPath, cancelPage) = try startSignIn(second, user: "bob@contoso.com")
        let flow = try #require(pageValue(cancelPage.body, after: "name=\"f\" id=\"flow\" value=\""))
        #expect(try second.post("/oidc/sign-in/cancel", form: [("f", flow)], headers: []).status == 302)
        let cancelled = try ended(second, cancelPath)
        #expect(cancelled["error_description"] == "cancelled")
        #expect(try Browser(broker).post("/oidc/sign-in/cancel", form: [("f", flow)]).status == 403)

        // An unknown user and a user without a device are told apart only in error_description, the same for both.
        for user in ["nobody@contoso.com", "carol@contoso.com"] {
            let browser = Browser(broker)
            let namePage = try browser.get("/oidc/authorize?" + authorizeQuery())
            let flow = try #require(pageValue(namePage.body, after: "name=\"f\" value=\""))
            let named = try browser.post("/oidc/sign-in", form: [("f", flow), ("username", user)])
            #expect(named.status == 302)
            let reply = queryParameters(named.header("location") ?? "")
            #expect(reply["error"] == "access_denied" && reply["error_description"] == "password_fallback:no_device")
        }

        // A login_hint skips the name, and a "not me" from the phone ends the sign-in.
        let hinted = Browser(broker)
        let started = try hinted.get(
            "/oidc/authorize?" + authorizeQuery([("login_hint", "bob@contoso.com")]))
        #expect(started.status == 303 && started.header("location")?.hasPrefix("sign-in?f=") == true)
        let pending = try queued(phone, broker)
        _ = try phone.answer(broker, pending, deny: "not_me")
        let notMe = try ended(hinted, "/oidc/" + (started.header("location") ?? ""))
        #expect(notMe["error_description"] == "denied:not_me")

        // A name that is no user id is asked for again.
        let typo = Browser(broker)
        let namePage = try typo.get("/oidc/authorize?" + authorizeQuery())
        let typoFlow = try #require(pageValue(namePage.body, after: "name=\"f\" value=\""))
        let again = try typo.post("/oidc/sign-in", form: [("f", typoFlow), ("username", "   ")])
        #expect(again.status == 400 && again.body.contains("role=\"alert\""))
        // A flow altered by one byte is not a flow.
        let flipped = (typoFlow.first == "A" ? "B" : "A") + typoFlow.dropFirst()
        let altered = try typo.post("/oidc/sign-in", form: [("f", flipped), ("username", "bob")])
        #expect(altered.status == 400)
    }

    /// The README's browser tour: `approvald demo-app` sends the browser to the provider, redeems the code it gets
    /// back with its PKCE verifier, checks the ID token, and shows who signed in.
    @Test func theDemoAppSignsInThroughTheProvider() throws {
        let appPort = try freeLoopbackPort()
        let broker = try oidcBroker(
            issuer: "http://login.contoso.test",
            clients: """
                [[oidc.clients]]
                client_id = "demo-app"
                redirect_uris = ["http://127.0.0.1:\(appPort)/callback"]
                tenant = "contoso"
                """)
        let phone = try SimulatedDevice("dana-phone")
        #expect(try IdP(broker: broker).register(phone, user: "dana@contoso.com").status == 201)
        let output = broker.directory.appendingPathComponent("demo-app.out").path
        FileManager.default.createFile(atPath: output, contents: nil)
        let app = Process()
        app.executableURL = URL(fileURLWithPath: approvaldBinary)
        app.arguments = [
            "demo-app", "--config", broker.directory.appendingPathComponent("approvald.toml").path, "--url",
            broker.h2cURL,
        ]
        app.standardOutput = FileHandle(forWritingAtPath: output)
        try app.run()
        defer {
            kill(app.processIdentifier, SIGKILL)
            app.waitUntilExit()
        }
        func printed(_ text: String) -> Bool {
            eventuallyBlocking(timeout: 10) {
                (try? String(contentsOfFile: output, encoding: .utf8))?.contains(text) == true
            }
        }
        #expect(printed("open http://127.0.0.1:\(appPort)/ in a browser"))

        let browser = Browser(broker)
        let login = try browser.visit("http://127.0.0.1:\(appPort)/login")
        let authorize = try #require(login.header("location"))
        #expect(login.status == 302 && authorize.hasPrefix(broker.h2cURL + "/oidc/authorize?"))
        let namePage = try browser.visit(authorize)
        let flow = try #require(pageValue(namePage.body, after: "name=\"f\" value=\""))
        let named = try browser.post("/oidc/sign-in", form: [("f", flow), ("username", "dana@contoso.com")])
        let path = "/oidc/" + (named.header("location") ?? "")
        let page = try browser.get(path)
        let shown = try #require(pageValue(page.body, after: "aria-label=\"the number ").flatMap { Int($0) })
        #expect(try phone.answer(broker, try queued(phone, broker), approve: shown).status == 200)
        let back = try browser.get(path)
        let callback = try #require(back.header("location"))
        #expect(callback.hasPrefix("http://127.0.0.1:\(appPort)/callback?code="))
        let signedIn = try browser.visit(callback)
        #expect(signedIn.body.contains("Signed in as <strong>dana@contoso.com</strong>"), "\(signedIn.body)")
        #expect(printed("signed in: dana@contoso.com"))
        // A return the app did not start, or the same return again, signs nobody in.
        #expect(try browser.visit(callback).body.contains("Not signed in"))
    }
}
