// Keycloak's CIBA HTTP authentication channel against the real binary, with a stand-in for Keycloak written from its
// sources (Tests/Tools/keycloak-stand-in, HTTP/1.1; not Keycloak itself, which cannot run here). The test plays
// Keycloak's issuing side: a realm key and JWK Set, a bearer token per request shaped as
// HttpAuthenticationChannelProvider makes it (iss and aud the realm, jti, azp, sub, exp), and the authentication
// request's body, sent over HTTP/1.1 as Keycloak's client sends it. The stand-in's callback endpoint answers as
// BackchannelAuthenticationCallbackEndpoint does, 403 for a token used twice.
import Crypto
import Foundation
import TestSupport
import Testing

/// Keycloak's side: the realm's keys and tokens, and what its callback endpoint took.
final class KeycloakStandIn: @unchecked Sendable {
    static let realm = "acme"
    let directory: URL
    private(set) var port = 0
    private let process = Process()
    private let keySetPath: String
    private let recordPath: String
    private(set) var keys: [(kid: String, key: RSAPrivateKey)] = []

    var issuer: String { "http://127.0.0.1:\(port)/realms/\(Self.realm)" }
    var callbackURL: String { "\(issuer)/protocol/openid-connect/ext/ciba/auth/callback" }
    var keySetURL: String { "\(issuer)/protocol/openid-connect/certs" }

    /// `[tenants.contoso.ciba]` for this realm, its keys fetched from the stand-in.
    var tenantConfig: String {
        """
        [tenants.contoso.ciba]
        callback_url = "\(callbackURL)"
        issuer = "\(issuer)"
        jwks_url = "\(keySetURL)"
        """
    }

    init(port: Int = 0) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-keycloak-\(UUID())")
        keySetPath = directory.appendingPathComponent("certs.json").path
        recordPath = directory.appendingPathComponent("callbacks.jsonl").path
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: recordPath, contents: nil)
        try addKey()
        let portFile = directory.appendingPathComponent("port").path
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", packageRoot.appendingPathComponent("Tests/Tools/keycloak-stand-in").path, "--realm",
            Self.realm, "--jwks", keySetPath, "--record", recordPath, "--port-file", portFile, "--port", "\(port)",
        ]
        process.standardError = FileHandle.nullDevice
        self.port = try startServer(process, portFile: portFile, name: "the Keycloak stand-in")
    }

    deinit {
        // SIGKILL: a signal the test runner's children may have blocked cannot leave the server running.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }

    /// A new realm key, published in the JWK Set beside the others (a key rotation).
    func addKey() throws {
        keys.append(("realm-key-\(keys.count)", try RSAPrivateKey(generatingBits: 2048)))
        let entries = keys.map { entry in
            let (n, e) = entry.key.publicNumbers
            return
                #"{"kid":"\#(entry.kid)","kty":"RSA","alg":"RS256","use":"sig","n":"\#(Base64URL.encode(n))","e":"\#(Base64URL.encode(e))"}"#
        }
        try #"{"keys":[\#(entries.joined(separator: ","))]}"#.write(
            toFile: keySetPath, atomically: true, encoding: .utf8)
    }

    /// A bearer token as Keycloak issues one for an authentication request, registered as pending unless
    /// `pending` is false; by default signed with the newest realm key.
    func token(
        jti: String = UUID().uuidString, expiresIn: Int64 = 120, issuer: String? = nil, signedBy: RSAPrivateKey? = nil,
        kid: String? = nil, pending: Bool = true
    ) throws -> String {
        let key = keys[keys.count - 1]
        let claims =
            #"{"exp":\#(unixNow() + expiresIn),"jti":"\#(jti)","iss":"\#(issuer ?? self.issuer)","aud":"\#(self.issuer)","sub":"8c1e3f52-user","typ":"Bearer","azp":"shop-frontend"}"#
        let token = try JWT.signRS256(
            headerJSON: #"{"alg":"RS256","typ":"JWT","kid":"\#(kid ?? key.kid)"}"#, claimsJSON: claims,
            key: signedBy ?? key.key)
        if pending { try post("/test/pending", token) }
        return token
    }

    /// The next `count` callbacks are answered 503.
    func outage(_ count: Int) throws { try post("/test/outage", #"{"count":\#(count)}"#) }

    private func post(_ path: String, _ body: String) throws {
        let result = try runCommand(
            [
                "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", body,
                "http://127.0.0.1:\(port)\(path)",
            ], timeout: 20)
        guard result.stdout == "204" else { throw ApprovaldError(description: "stand-in \(path): \(result.stdout)") }
    }

    /// Every callback the endpoint answered: `jti`, `status`, `answer` (its HTTP status), `version`.
    var callbacks: [[String: Any]] {
        ((try? String(contentsOfFile: recordPath, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// The statuses Keycloak took (answered 200) for the request `jti`.
    func taken(_ jti: String) -> [String] {
        callbacks.filter { $0["jti"] as? String == jti && $0["answer"] as? Int == 200 }.compactMap {
            $0["status"] as? String
        }
    }

    /// Waits (bounded) for Keycloak to take a callback for `jti`, and returns its status.
    func awaitResult(_ jti: String, timeout: Double = 20) -> String? {
        _ = eventuallyBlocking(timeout: timeout) { !taken(jti).isEmpty }
        return taken(jti).first
    }
}

/// The authentication request's body as Keycloak's AuthenticationChannelRequest is written.
func cibaBody(user: String, bindingMessage: String?) -> String {
    let message = bindingMessage.map { "\"\($0)\"" } ?? "null"
    return
        #"{"scope":"openid profile","binding_message":\#(message),"login_hint":"\#(user)","is_consent_required":false,"acr_values":null}"#
}

/// Keycloak's request to the channel, over HTTP/1.1 as its HTTP client sends it.
func cibaRequest(
    _ broker: ApprovaldProcess, token: String?, user: String, bindingMessage: String? = "42", tenant: String = "contoso"
) throws -> Reply {
    let saved = broker.cleartextProtocol
    broker.cleartextProtocol = .http1
    defer { broker.cleartextProtocol = saved }
    return try send(
        broker, "POST", "/v1/tenants/\(tenant)/ciba", body: cibaBody(user: user, bindingMessage: bindingMessage),
        headers: token.map { ["Authorization: Bearer \($0)"] } ?? [])
}

/// The jti of a token the stand-in made.
func jti(of token: String) throws -> String {
    let claims = try #require(JWT.Unverified(token)).claimsJSON
    let json = try JSONSerialization.jsonObject(with: Data(claims.utf8)) as? [String: Any]
    return try #require(json?["jti"] as? String)
}

/// Whether `/metrics` shows every one of `samples` within 5 s: a callback is counted once the broker has read
/// Keycloak's answer, a moment after Keycloak recorded it.
func metricsShow(_ broker: ApprovaldProcess, _ samples: [String]) -> Bool {
    eventuallyBlocking(timeout: 5) {
        let metrics = (try? broker.curl("/metrics").body) ?? ""
        return samples.allSatisfy(metrics.contains)
    }
}

@Suite struct KeycloakCIBATests {
    /// A broker that is the stand-in's channel for tenant contoso, with a phone for `user`.
    func broker(
        _ keycloak: KeycloakStandIn, phoneOf user: String? = "mia@contoso.com", extraConfig: String = "",
        dataDirectory: String? = nil, redis: RedisServer? = nil
    ) throws -> (ApprovaldProcess, SimulatedDevice) {
        let broker = try ApprovaldProcess(
            extraConfig: brokerConfig + "\n" + keycloak.tenantConfig + "\n" + extraConfig,
            dataDirectory: dataDirectory, redis: redis)
        let phone = try SimulatedDevice("phone-\(UUID().uuidString.prefix(8))")
        if let user { #expect(try IdP(broker: broker).register(phone, user: user).status == 201) }
        return (broker, phone)
    }

    /// The phone's first queued sign-in, waited for (bounded).
    func prompt(_ broker: ApprovaldProcess, _ phone: SimulatedDevice) throws -> [String: Any] {
        var view: [String: Any]?
        _ = eventuallyBlocking(timeout: 10) {
            view = (try? phone.call(broker, "GET", "/v1/devices/\(phone.id)/challenges"))?.json["challenges"]
                .flatMap { ($0 as? [[String: Any]])?.first }
            return view != nil
        }
        return try #require(view, "no sign-in reached the phone")
    }

    @Test func anApprovalIsCalledBackSucceedWithTheSameTokenOverHTTP1() throws {
        let keycloak = try KeycloakStandIn()
        let (broker, phone) = try broker(keycloak)
        let token = try keycloak.token()
        let created = try cibaRequest(broker, token: token, user: "mia@contoso.com", bindingMessage: "42")
        #expect(created.status == 201, "\(created.body)")
        // Keycloak's retry of the same request (same token, so same jti): the same challenge.
        let again = try cibaRequest(broker, token: token, user: "mia@contoso.com", bindingMessage: "42")
        #expect(again.status == 201 && again.json["challenge_id"] as? String == created.json["challenge_id"] as? String)

        let view = try prompt(broker, phone)
        #expect(view["request_id"] as? String == "ciba-\(try jti(of: token))")
        let context = try #require(view["context"] as? [String: String])
        #expect(context == ["client": "shop-frontend", "scope": "openid profile"])
        #expect((view["choices"] as? [Int])?.contains(42) == true)
        #expect(try phone.answer(broker, view, approve: 42).status == 200)

        #expect(keycloak.awaitResult(try jti(of: token)) == "SUCCEED")
        let callback = try #require(keycloak.callbacks.first { $0["answer"] as? Int == 200 })
        #expect(callback["version"] as? String == "HTTP/1.1")
        #expect(
            metricsShow(
                broker,
                [
                    #"approvald_ciba_requests_total{result="created"} 1"#,
                    #"approvald_ciba_requests_total{result="replayed"} 1"#,
                    #"approvald_ciba_callbacks_total{status="SUCCEED"} 1"#,
                ]))
        #expect(!broker.log(tail: 400).contains(token), "the bearer token is never logged")
    }

    @Test func everyOtherEndIsCalledBackUnauthorizedOrCancelled() throws {
        let keycloak = try KeycloakStandIn()
        let (broker, phone) = try broker(keycloak)
        let idp = IdP(broker: broker)

        // A wrong number.
        let wrong = try keycloak.token()
        #expect(try cibaRequest(broker, token: wrong, user: "mia@contoso.com", bindingMessage: "42").status == 201)
        let wrongView = try prompt(broker, phone)
        let decoy = try #require((wrongView["choices"] as? [Int])?.first { $0 != 42 })
        #expect(try phone.answer(broker, wrongView, approve: decoy).status == 200)
        #expect(keycloak.awaitResult(try jti(of: wrong)) == "UNAUTHORIZED")

        // Cancelled by the IdP ("use your password instead").
        let cancelled = try keycloak.token()
        let created = try cibaRequest(broker, token: cancelled, user: "mia@contoso.com", bindingMessage: "7")
        #expect(created.status == 201)
        let challengeID = try #require(created.json["challenge_id"] as? String)
        #expect(try idp.call("DELETE", "/v1/tenants/contoso/challenges/\(challengeID)").status == 200)
        #expect(keycloak.awaitResult(try jti(of: cancelled)) == "CANCELLED")

        // A user without a phone falls back to the password: still 201, then UNAUTHORIZED at once.
        let fallback = try keycloak.token()
        let fellBack = try cibaRequest(broker, token: fallback, user: "nobody@contoso.com", bindingMessage: "12")
        #expect(fellBack.status == 201 && fellBack.json["status"] as? String == "password_fallback", "\(fellBack.body)")
        #expect(keycloak.awaitResult(try jti(of: fallback)) == "UNAUTHORIZED")
        #expect(
            try cibaRequest(broker, token: fallback, user: "nobody@contoso.com", bindingMessage: "12").status == 201)

        // "Not me": unauthorized (and the user is locked out of phone sign-in for a while, as for any sign-in).
        let notMe = try keycloak.token()
        #expect(try cibaRequest(broker, token: notMe, user: "mia@contoso.com", bindingMessage: "3").status == 201)
        #expect(try phone.answer(broker, try prompt(broker, phone), deny: "not_me").status == 200)
        #expect(keycloak.awaitResult(try jti(of: notMe)) == "UNAUTHORIZED")

        // Each request was called back once: no second attempt met Keycloak's 403.
        #expect(keycloak.callbacks.allSatisfy { $0["answer"] as? Int == 200 }, "\(keycloak.callbacks)")
        #expect(keycloak.callbacks.count == 4)
        #expect(
            metricsShow(
                broker,
                [
                    #"approvald_ciba_requests_total{result="fallback"} 1"#,
                    #"approvald_ciba_callbacks_total{status="UNAUTHORIZED"} 3"#,
                    #"approvald_ciba_callbacks_total{status="CANCELLED"} 1"#,
                ]))
    }

    @Test func aChallengeEndsBeforeItsTokenSoThatItsExpiryIsCalledBack() throws {
        let keycloak = try KeycloakStandIn()
        let (broker, phone) = try broker(keycloak)
        // The token lives 20 s, the policy's TTL is 120 s: the challenge ends 5 s before the token, at 15 s (less
        // the time the request took to arrive, and the part of a second the token's exp drops).
        let token = try keycloak.token(expiresIn: 20)
        let created = try cibaRequest(broker, token: token, user: "mia@contoso.com")
        #expect(created.status == 201)
        let expiresAt = try #require(created.json["expires_at"] as? String)
        let createdAt = try #require(created.json["created_at"] as? String)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let lifetime = try #require(formatter.date(from: expiresAt)).timeIntervalSince(
            try #require(formatter.date(from: createdAt)))
        #expect((10...15).contains(lifetime), "the challenge lives \(lifetime) s")
        _ = try prompt(broker, phone)
        #expect(keycloak.awaitResult(try jti(of: token), timeout: 25) == "UNAUTHORIZED")

        // A token that ends before a sign-in could: refused.
        let short = try cibaRequest(broker, token: try keycloak.token(expiresIn: 12), user: "mia@contoso.com")
        #expect(short.status == 401, "\(short.body)")
    }

    @Test func badTokensAndBadRequestsCreateNothing() throws {
        let keycloak = try KeycloakStandIn()
        let (broker, phone) = try broker(keycloak)
        let stranger = try RSAPrivateKey(generatingBits: 2048)
        let refusals: [(String, String?)] = [
            ("no token", nil),
            ("signed by another key", try keycloak.token(signedBy: stranger)),
            ("a key the realm does not publish", try keycloak.token(signedBy: stranger, kid: "unknown-kid")),
            ("another issuer", try keycloak.token(issuer: "http://127.0.0.1:1/realms/other")),
            ("expired", try keycloak.token(expiresIn: -5)),
            ("not a JWT", "not.a.jwt"),
        ]
        for (what, token) in refusals {
            let reply = try cibaRequest(broker, token: token, user: "mia@contoso.com")
            #expect(reply.status == 401 && reply.json["code"] as? String == "unauthenticated", "\(what): \(reply.body)")
        }
        for message in ["4a", "123", "", "forty-two", " 4"] {
            let reply = try cibaRequest(
                broker, token: try keycloak.token(), user: "mia@contoso.com", bindingMessage: message)
            #expect(
                reply.status == 400 && reply.json["code"] as? String == "invalid_field", "\(message): \(reply.body)")
        }
        let missing = try cibaRequest(broker, token: try keycloak.token(), user: "mia@contoso.com", bindingMessage: nil)
        #expect(missing.status == 400 && missing.json["code"] as? String == "invalid_field")
        let otherTenant = try cibaRequest(
            broker, token: try keycloak.token(), user: "mia@contoso.com", tenant: "fabrikam")
        #expect(otherTenant.status == 404)

        let queue = try phone.call(broker, "GET", "/v1/devices/\(phone.id)/challenges").json["challenges"] as? [Any]
        #expect(queue?.isEmpty == true, "nothing reached the phone")
        #expect(keycloak.callbacks.isEmpty)
        #expect(
            try broker.curl("/metrics").body.contains(#"approvald_ciba_requests_total{result="unauthenticated"} 6"#))
    }

    @Test func aRealmWhoseKeysCannotBeFetchedHasItsRequestsRefused() throws {
        let keycloak = try KeycloakStandIn()
        // The realm's keys at a port nothing listens on.
        let unreachable = keycloak.tenantConfig.replacingOccurrences(
            of: "jwks_url = \"\(keycloak.keySetURL)\"", with: "jwks_url = \"http://127.0.0.1:9/certs\"")
        let broker = try ApprovaldProcess(extraConfig: brokerConfig + "\n" + unreachable)
        let phone = try SimulatedDevice("nora-phone")
        #expect(try IdP(broker: broker).register(phone, user: "nora@contoso.com").status == 201)
        let reply = try cibaRequest(broker, token: try keycloak.token(), user: "nora@contoso.com")
        #expect(reply.status == 401 && reply.json["detail"] as? String == "the realm's keys are unavailable")
        let queue = try phone.call(broker, "GET", "/v1/devices/\(phone.id)/challenges").json["challenges"] as? [Any]
        #expect(queue?.isEmpty == true)
        #expect(keycloak.callbacks.isEmpty)
    }

    @Test func aRotatedRealmKeyIsFetchedAndARequestKeycloakNoLongerHoldsIsADeadLetter() throws {
        let keycloak = try KeycloakStandIn()
        let (broker, phone) = try broker(keycloak)
        let idp = IdP(broker: broker)
        // Taken before the rotation, so the key set is cached; then approved.
        let before = try keycloak.token()
        let fetched = Date()
        #expect(try cibaRequest(broker, token: before, user: "mia@contoso.com", bindingMessage: "18").status == 201)
        #expect(try phone.answer(broker, try prompt(broker, phone), approve: 18).status == 200)
        #expect(keycloak.awaitResult(try jti(of: before)) == "SUCCEED")
        // Signed by a key the cached set lacks: the set is fetched again and the token taken (an unknown kid
        // fetches it at most once in 10 s, so this comes after that).
        Thread.sleep(forTimeInterval: max(0, 10.5 - Date().timeIntervalSince(fetched)))
        try keycloak.addKey()
        let rotated = try keycloak.token()
        #expect(try cibaRequest(broker, token: rotated, user: "mia@contoso.com", bindingMessage: "55").status == 201)
        #expect(try phone.answer(broker, try prompt(broker, phone), approve: 55).status == 200)
        #expect(keycloak.awaitResult(try jti(of: rotated)) == "SUCCEED")

        // A request Keycloak no longer holds pending (its callback endpoint answers 403): kept as a dead letter at
        // once, not retried.
        let leo = try SimulatedDevice("leo-phone")
        #expect(try idp.register(leo, user: "leo@contoso.com").status == 201)
        let forgotten = try keycloak.token(pending: false)
        #expect(try cibaRequest(broker, token: forgotten, user: "leo@contoso.com", bindingMessage: "9").status == 201)
        #expect(try leo.answer(broker, try prompt(broker, leo), approve: 9).status == 200)
        var letters: [[String: Any]] = []
        _ = eventuallyBlocking(timeout: 15) {
            letters =
                (try? idp.call("GET", "/v1/tenants/contoso/dead-letters"))?.json["dead_letters"]
                as? [[String: Any]] ?? []
            return !letters.isEmpty
        }
        let letter = try #require(letters.first, "no dead letter")
        #expect(letter["status"] as? Int == 403 && letter["attempts"] as? Int == 1, "\(letter)")
        #expect((letter["callback"] as? [String: String]) == ["status": "SUCCEED"])
        #expect(!"\(letter)".contains(forgotten), "a dead letter does not show the bearer token")
        #expect(keycloak.callbacks.filter { $0["jti"] as? String == (try? jti(of: forgotten)) }.count == 1)
    }

    @Test func aCallbackOutlivesAKeycloakOutageAndAKillOfTheBroker() throws {
        let keycloak = try KeycloakStandIn()
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-ciba-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let (first, phone) = try broker(keycloak, dataDirectory: data)
        try keycloak.outage(1000)
        let token = try keycloak.token()
        #expect(try cibaRequest(first, token: token, user: "mia@contoso.com", bindingMessage: "61").status == 201)
        #expect(try phone.answer(first, try prompt(first, phone), approve: 61).status == 200)
        #expect(eventuallyBlocking(timeout: 15) { keycloak.callbacks.count >= 2 }, "the callback is retried")
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()

        try keycloak.outage(0)
        let second = try ApprovaldProcess(
            extraConfig: brokerConfig + "\n" + keycloak.tenantConfig, dataDirectory: data, redis: first.redis)
        #expect(keycloak.awaitResult(try jti(of: token), timeout: 60) == "SUCCEED")
        #expect(keycloak.taken(try jti(of: token)) == ["SUCCEED"])
        _ = second
    }
}
