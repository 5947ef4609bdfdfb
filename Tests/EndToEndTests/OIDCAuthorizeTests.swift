// The authorization endpoint against the real binary, with curl: what cannot go back to the client is a page
// (never a redirect), every other refusal goes back to the registered redirect URI with its error and the state as
// sent, by redirect or by form_post, and the pages carry their strict headers.
import Foundation
import TestSupport
import Testing

/// An `[oidc]` section for `issuer` and `clients` (their `[[oidc.clients]]` tables), signing with a new RSA key (in
/// the temporary directory): instances on Redis must name one, and a restart must find the same.
func oidcSection(issuer: String, clients: String) throws -> String {
    let key = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-oidc-\(UUID()).pem").path
    _ = try runCommand(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key], timeout: 30)
    return """

        [oidc]
        issuer = "\(issuer)"
        [[oidc.signing_keys]]
        private_key = "\(key)"

        """ + clients
}

/// A broker of `brokerConfig` that is an OpenID provider of `issuer` for `clients`.
func oidcBroker(issuer: String, clients: String) throws -> ApprovaldProcess {
    try ApprovaldProcess(extraConfig: brokerConfig + oidcSection(issuer: issuer, clients: clients))
}

@Suite struct OIDCAuthorizeTests {
    func broker() throws -> ApprovaldProcess {
        try oidcBroker(
            issuer: "https://login.contoso.test",
            clients: """
                [[oidc.clients]]
                client_id = "webapp"
                client_secret = "a client secret of at least thirty-two bytes"
                redirect_uris = ["https://app.contoso.test/cb?tenant=1"]
                tenant = "contoso"
                """)
    }

    /// The status, the headers (lower-cased names) and the body of a request to the endpoint.
    func call(
        _ broker: ApprovaldProcess, _ query: String, _ extra: [String] = []
    ) throws
        -> (status: Int, headers: [String: String], body: String)
    {
        let result = try broker.curl("/oidc/authorize?" + query, ["-i"] + extra)
        let parts = result.body.components(separatedBy: "\r\n\r\n")
        var headers: [String: String] = [:]
        for line in (parts.first ?? "").split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        return (result.status, headers, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    @Test func whatCannotGoBackIsAPageAndTheRestGoesBackWithItsState() throws {
        let broker = try broker()
        let redirect = "redirect_uri=https%3A%2F%2Fapp.contoso.test%2Fcb%3Ftenant%3D1"
        // An unknown client, or a redirect URI it did not register: a page, whatever else is asked.
        for query in [
            "client_id=%3Cscript%3E&" + redirect + "&response_type=code&scope=openid",
            "client_id=webapp&redirect_uri=https%3A%2F%2Fevil.test%2Fcb&response_type=code&scope=openid",
        ] {
            let page = try call(broker, query)
            #expect(page.status == 400 && page.headers["location"] == nil)
            #expect(page.headers["content-type"] == "text/html; charset=utf-8")
            #expect(page.headers["content-security-policy"]?.contains("frame-ancestors 'none'") == true)
            #expect(page.headers["x-content-type-options"] == "nosniff" && page.headers["cache-control"] == "no-store")
            #expect(!page.body.contains("<script>") && !page.body.contains("evil.test"))
        }
        // A bad scope goes back by redirect, the registered URI's own query kept, the state exactly as sent.
        let badScope = try call(
            broker, "client_id=webapp&" + redirect + "&response_type=code&scope=profile&state=a%20b%26c")
        #expect(badScope.status == 302)
        #expect(
            badScope.headers["location"]
                == "https://app.contoso.test/cb?tenant=1&error=invalid_scope&error_description=scope+must+include+openid&state=a+b%26c"
        )
        // By form_post: a page that posts the error and the state, escaped, to the redirect URI only.
        let posted = try call(
            broker,
            "client_id=webapp&" + redirect
                + "&response_type=id_token&response_mode=form_post&scope=openid&state=%22%3E%3Cscript%3E")
        #expect(posted.status == 200)
        #expect(posted.body.contains(#"name="error" value="invalid_request""#))
        #expect(posted.body.contains(#"name="state" value="&quot;&gt;&lt;script&gt;""#))
        #expect(posted.headers["content-security-policy"]?.contains("form-action https://app.contoso.test;") == true)
        // A request that passes every check asks for the user's name, and gives the browser its id: on TLS (an
        // https issuer) in a Secure cookie of a __Host- name.
        let valid = try call(broker, "client_id=webapp&" + redirect + "&response_type=code&scope=openid&state=s")
        #expect(valid.status == 200 && valid.body.contains("name=\"username\""))
        let cookie = try #require(valid.headers["set-cookie"])
        #expect(cookie.hasPrefix("__Host-approvald-browser=") && cookie.contains("; Path=/;"))
        #expect(cookie.contains("; HttpOnly; SameSite=Lax; Secure"))
        // POST takes a form and nothing else; other methods are refused.
        let form = try call(
            broker, "",
            [
                "-X", "POST", "-H", "content-type: application/x-www-form-urlencoded", "--data",
                "client_id=webapp&" + redirect + "&response_type=code&scope=profile",
            ])
        #expect(form.status == 302 && form.headers["location"]?.contains("error=invalid_scope") == true)
        let json = try call(broker, "", ["-X", "POST", "-H", "content-type: application/json", "--data", "{}"])
        #expect(json.status == 400 && json.headers["content-type"] == "text/html; charset=utf-8")
        #expect(try call(broker, "", ["-X", "PUT"]).status == 405)
        #expect(try call(broker, "client_id=%ZZ").status == 400)
    }
}
