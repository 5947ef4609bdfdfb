// Microsoft Entra ID's external authentication method against the real binary, with a stand-in for Entra built from
// Microsoft's published reference (not Entra itself, which cannot run here): its tenant's RSA key and JWK Set,
// served over HTTP from a directory; an id_token_hint shaped as Entra issues it (already expired, iat recent, aud
// the app's client id, sub and preferred_username); the authorization request posted as a form with
// response_type=id_token, response_mode=form_post and Entra's claims request; and the checks Entra makes of the
// ID token that comes back.
import Crypto
import Foundation
import TestSupport
import Testing

/// A directory served over HTTP/1.1 on a free loopback port by Python's http.server, for as long as it lives.
final class StaticFileServer {
    let directory: String
    let port: Int
    private let process = Process()

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-files-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let portFile = directory + "/.port"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c",
            """
            import functools, http.server, sys
            handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            open(sys.argv[2] + ".tmp", "w").write(str(server.server_port))
            __import__("os").rename(sys.argv[2] + ".tmp", sys.argv[2])
            server.serve_forever()
            """,
            directory, portFile,
        ]
        process.standardError = FileHandle.nullDevice
        port = try startServer(process, portFile: portFile, name: "the file server")
    }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
    }

    deinit {
        // SIGKILL: a signal the test runner's children may have blocked cannot leave the server running.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Entra ID's side: a tenant's signing keys, its JWK Set, and the hints and requests it sends.
struct EntraStandIn {
    static let tenantID = "9188040d-6c67-4c5b-b112-36a304b66dad"
    static let issuer = "https://login.microsoftonline.com/\(tenantID)/v2.0"
    static let redirectURI = "https://login.microsoftonline.com/common/federation/externalauthprovider"
    static let clientID = "3f0cc8d5-3e1d-4b3a-9b0e-8f5d2b7e0c11"
    /// The claims request Entra sends (the reference's example).
    static let claims =
        #"{"id_token":{"acr":{"essential":true,"values":["possessionorinherence"]},"amr":{"essential":true,"values":["face","fido","fpt","hwk","iris","otp","pop","retina","sc","sms","swk","tel","vbm"]}}}"#

    let keys: [(kid: String, key: RSAPrivateKey)]

    init(keyCount: Int = 1) throws {
        keys = try (0..<keyCount).map { ("entra-key-\($0)", try RSAPrivateKey(generatingBits: 2048)) }
    }

    /// The JWK Set of the first `count` keys.
    func keySet(_ count: Int? = nil) -> String {
        let entries = keys.prefix(count ?? keys.count).map { entry in
            let (n, e) = entry.key.publicNumbers
            return
                #"{"kty":"RSA","use":"sig","kid":"\#(entry.kid)","n":"\#(Base64URL.encode(n))","e":"\#(Base64URL.encode(e))"}"#
        }
        return #"{"keys":[\#(entries.joined(separator: ","))]}"#
    }

    /// A hint for `user`, signed by key `index`, issued `age` seconds ago and expired since.
    func hint(user: String, sub: String, index: Int = 0, age: Int64 = 5, audience: String = clientID) throws -> String {
        let issuedAt = unixNow() - age
        return try JWT.signRS256(
            headerJSON: #"{"typ":"JWT","alg":"RS256","kid":"\#(keys[index].kid)"}"#,
            claimsJSON:
                #"{"aud":"\#(audience)","iss":"\#(Self.issuer)","iat":\#(issuedAt),"nbf":\#(issuedAt),"exp":\#(issuedAt),"name":"Kai","oid":"\#(sub)-oid","preferred_username":"\#(user)","sub":"\#(sub)","tid":"\#(Self.tenantID)","ver":"2.0"}"#,
            key: keys[index].key)
    }

    /// The authorization request as Entra posts it.
    func request(hint: String, nonce: String, state: String) -> [(String, String)] {
        [
            ("scope", "openid"), ("response_type", "id_token"), ("response_mode", "form_post"),
            ("client_id", Self.clientID), ("redirect_uri", Self.redirectURI), ("claims", Self.claims),
            ("nonce", nonce), ("state", state), ("id_token_hint", hint),
        ]
    }
}

@Suite struct EntraStandInTests {
    func broker(jwksURL: String) throws -> ApprovaldProcess {
        try oidcBroker(
            issuer: "https://approvald.contoso.test",
            clients: """
                [[oidc.clients]]
                client_id = "\(EntraStandIn.clientID)"
                redirect_uris = ["\(EntraStandIn.redirectURI)"]
                tenant = "contoso"
                hint_issuer = "\(EntraStandIn.issuer)"
                hint_jwks_url = "\(jwksURL)"
                user_claim = "preferred_username"
                """)
    }

    /// The fields of a form_post page.
    func postedFields(_ page: Reply) -> [String: String] {
        var fields: [String: String] = [:]
        for match in page.body.matches(of: /name="([a-z_]+)" value="([^"]*)"/) {
            fields[String(match.output.1)] = String(match.output.2).replacingOccurrences(of: "&quot;", with: "\"")
                .replacingOccurrences(of: "&#39;", with: "'").replacingOccurrences(of: "&amp;", with: "&")
        }
        return fields
    }

    @Test func entraGetsAnIDTokenForTheHintsSubjectOnceThePhoneApproves() throws {
        let files = try StaticFileServer()
        let entra = try EntraStandIn()
        try files.write("keys.json", entra.keySet())
        let broker = try broker(jwksURL: "http://127.0.0.1:\(files.port)/keys.json")
        let phone = try SimulatedDevice("kai-phone")
        #expect(try IdP(broker: broker).register(phone, user: "kai@contoso.com").status == 201)
        let browser = Browser(broker)

        let sub = "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ"
        let hint = try entra.hint(user: "kai@contoso.com", sub: sub)
        let started = try browser.post(
            "/oidc/authorize", form: entra.request(hint: hint, nonce: "n-\(UUID())", state: "entra-state"))
        #expect(started.status == 303, "\(started.body)")
        let path = "/oidc/" + (started.header("location") ?? "")
        let page = try browser.get(path)
        let shown = try #require(pageValue(page.body, after: "aria-label=\"the number ").flatMap { Int($0) })
        let view = try #require(
            (try phone.call(broker, "GET", "/v1/devices/kai-phone/challenges").json["challenges"] as? [[String: Any]])?
                .first)
        #expect(try phone.answer(broker, view, approve: shown).status == 200)

        // The return: a page that posts the ID token and the state to Entra's redirect URI, and nothing else.
        let back = try browser.get(path)
        #expect(back.status == 200 && back.body.contains(#"action="\#(EntraStandIn.redirectURI)""#))
        let fields = postedFields(back)
        #expect(Set(fields.keys) == ["id_token", "state"] && fields["state"] == "entra-state")
        let token = try #require(fields["id_token"])
        // What Entra checks: the provider's signature by the key its JWKS names, the issuer, the audience, the
        // subject of its own hint, the nonce, and acr and amr from its claims request.
        let jwks = try #require(
            (try JSONSerialization.jsonObject(with: Data(try broker.curl("/oidc/jwks").body.utf8)) as? [String: Any])?[
                "keys"] as? [[String: Any]])
        let header = try #require(
            try JSONSerialization.jsonObject(
                with: Data(Base64URL.decode(String(token.split(separator: ".")[0])) ?? [])) as? [String: Any])
        let jwk = try #require(jwks.first { $0["kid"] as? String == header["kid"] as? String })
        #expect((jwk["x5c"] as? [String])?.isEmpty == false && header["alg"] as? String == "RS256")
        let key = try RSAPublicKey(
            modulus: Base64URL.decode(jwk["n"] as? String ?? "") ?? [],
            exponent: Base64URL.decode(jwk["e"] as? String ?? "") ?? [])
        #expect(try #require(JWT.Unverified(token)).isSignedRS256(by: key))
        let claims = jwtClaims(token)
        #expect(claims["iss"] as? String == "https://approvald.contoso.test")
        #expect(claims["aud"] as? String == EntraStandIn.clientID && claims["sub"] as? String == sub)
        #expect(claims["acr"] as? String == "possessionorinherence" && claims["amr"] as? [String] == ["hwk"])
        #expect(claims["preferred_username"] as? String == "kai@contoso.com")
        let nonce = try #require(claims["nonce"] as? String)
        #expect(nonce.hasPrefix("n-"))
    }

    /// An issuer whose key set cannot be fetched: every hint goes back refused, saying so, and nothing is pushed.
    @Test func aKeySetThatCannotBeFetchedRefusesTheHint() throws {
        let entra = try EntraStandIn()
        let broker = try broker(jwksURL: "http://127.0.0.1:\(try freeLoopbackPort())/keys.json")
        let phone = try SimulatedDevice("kai-phone")
        #expect(try IdP(broker: broker).register(phone, user: "kai@contoso.com").status == 201)
        let answer = try Browser(broker).post(
            "/oidc/authorize",
            form: entra.request(
                hint: try entra.hint(user: "kai@contoso.com", sub: "c3ViamVjdA"), nonce: "n", state: "s"))
        #expect(answer.status == 200 && postedFields(answer)["error"] == "invalid_request")
        #expect(postedFields(answer)["error_description"] == "the id_token_hint issuer's keys are unavailable")
        let queue = try phone.call(broker, "GET", "/v1/devices/kai-phone/challenges")
        #expect((queue.json["challenges"] as? [Any])?.isEmpty == true)
    }

    @Test func aHintThatDoesNotVerifyGoesBackAsInvalidRequestAndPushesNothing() throws {
        let files = try StaticFileServer()
        let entra = try EntraStandIn(keyCount: 2)
        try files.write("keys.json", entra.keySet(1))
        let broker = try broker(jwksURL: "http://127.0.0.1:\(files.port)/keys.json")
        let phone = try SimulatedDevice("kai-phone")
        #expect(try IdP(broker: broker).register(phone, user: "kai@contoso.com").status == 201)

        func refusal(_ hint: String) throws -> String? {
            let answer = try Browser(broker).post(
                "/oidc/authorize", form: entra.request(hint: hint, nonce: "n", state: "s"))
            #expect(answer.status == 200 && postedFields(answer)["state"] == "s")
            return postedFields(answer)["error"].map { $0 + ": " + (postedFields(answer)["error_description"] ?? "") }
        }
        let sub = "c3ViamVjdA"
        #expect(try refusal(entra.hint(user: "kai@contoso.com", sub: sub, age: 700))?.contains("10 minutes") == true)
        #expect(
            try refusal(entra.hint(user: "kai@contoso.com", sub: sub, audience: "another-app"))?.contains("audience")
                == true)
        let unknown = try refusal(entra.hint(user: "kai@contoso.com", sub: sub, index: 1))
        #expect(unknown == "invalid_request: id_token_hint is signed by a key its issuer does not publish")
        var forged = Array(try entra.hint(user: "kai@contoso.com", sub: sub))
        forged[forged.count - 5] = forged[forged.count - 5] == "A" ? "B" : "A"
        #expect(try refusal(String(forged))?.hasPrefix("invalid_request") == true)
        let queue = try phone.call(broker, "GET", "/v1/devices/kai-phone/challenges")
        #expect((queue.json["challenges"] as? [Any])?.isEmpty == true, "no push for a hint that does not verify")

        // Entra rotates its keys: a hint by the new key is taken once the key set is fetched again, which a kid the
        // broker has not seen causes (at most once in ten seconds).
        try files.write("keys.json", entra.keySet())
        var taken = false
        let deadline = Date().addingTimeInterval(25)
        while !taken && Date() < deadline {
            let answer = try Browser(broker).post(
                "/oidc/authorize",
                form: entra.request(
                    hint: try entra.hint(user: "kai@contoso.com", sub: sub, index: 1), nonce: "n", state: "s"))
            taken = answer.status == 303
            if !taken { sleep(2) }
        }
        #expect(taken, "the new key was not fetched")
    }
}
