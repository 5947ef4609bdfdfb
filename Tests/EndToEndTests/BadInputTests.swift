// Bad input on every route of the API: each gets its documented status and code, and nothing changes.
import Foundation
import TestSupport
import Testing

/// A public key on P-384, not P-256 (made with openssl).
let p384Key =
    "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEbaAZGDIvBk4HlYcgI0HD51/WkAXQCJWFzsATIXfy8pfZhMWflF7Q0kNqhKpXqkoNolgyw7rpqtJGFPYlxVw14UK9zPO0QgyFsnke6KGxk2o7btEm1cZyD+CA/erhNw7E"

@Suite struct BadInputTests {
    struct Case: CustomStringConvertible {
        let method: String
        let path: String
        let body: String?
        let status: Int
        let code: String
        var description: String { "\(method) \(path) \(body?.prefix(60) ?? "")" }
    }

    static let base = "/v1/tenants/contoso"
    static let goodKey = "\"public_key\":\"KEY\""

    /// IdP requests, signed correctly: the refusal is about the input alone.
    static let idpCases: [Case] = [
        Case(method: "PUT", path: "\(base)/policy", body: "{\"choices\":1}", status: 400, code: "invalid_field"),
        Case(method: "PUT", path: "\(base)/policy", body: "{\"target\":\"some\"}", status: 400, code: "invalid_field"),
        Case(
            method: "PUT", path: "\(base)/policy", body: "{\"passwordless\":\"yes\"}", status: 400,
            code: "invalid_field"),
        Case(method: "PUT", path: "\(base)/policy", body: "[1,2]", status: 400, code: "invalid_json"),
        Case(
            method: "GET", path: "\(base)/users/\(String(repeating: "u", count: 257))/devices", body: nil, status: 400,
            code: "invalid_field"),
        Case(
            method: "PUT", path: "\(base)/devices/d1", body: "{\"user_id\":\"u\",\"public_key\":\"%%%\"}", status: 400,
            code: "invalid_field"),
        Case(
            method: "PUT", path: "\(base)/devices/d1", body: "{\"user_id\":\"u\",\"public_key\":\"\(p384Key)\"}",
            status: 400, code: "invalid_field"),
        Case(
            method: "PUT", path: "\(base)/devices/d1", body: "{\"user_id\":\"u\"}", status: 400, code: "invalid_field"),
        Case(
            method: "PUT", path: "\(base)/devices/\(String(repeating: "d", count: 129))",
            body: "{\"user_id\":\"u\",\(goodKey)}", status: 400, code: "invalid_field"),
        Case(
            method: "PUT", path: "\(base)/devices/d%20x", body: "{\"user_id\":\"u\",\(goodKey)}", status: 400,
            code: "invalid_field"),
        Case(
            method: "PUT", path: "\(base)/devices/d1",
            body: "{\"user_id\":\"u\",\(goodKey),\"push\":{\"provider\":\"pager\"}}", status: 400, code: "invalid_field"
        ),
        Case(
            method: "PUT", path: "\(base)/devices/d1",
            body: "{\"user_id\":\"u\",\(goodKey),\"push\":{\"provider\":\"apns\"}}", status: 400, code: "invalid_field"),
        Case(method: "POST", path: "\(base)/challenges", body: "{", status: 400, code: "invalid_json"),
        Case(
            method: "POST", path: "\(base)/challenges", body: "{\"request_id\":\"r\",\"user_id\":\"u\"}", status: 400,
            code: "invalid_field"),
        Case(
            method: "POST", path: "\(base)/challenges", body: "{\"request_id\":\"r\",\"user_id\":\"u\",\"number\":100}",
            status: 400, code: "invalid_field"),
        Case(
            method: "POST", path: "\(base)/challenges", body: "{\"request_id\":\"r\",\"user_id\":\"u\",\"number\":4.5}",
            status: 400, code: "invalid_field"),
        Case(
            method: "POST", path: "\(base)/challenges",
            body: "{\"request_id\":\"r\",\"user_id\":\"u\",\"number\":4,\"ttl_seconds\":5}", status: 400,
            code: "invalid_field"),
        Case(
            method: "POST", path: "\(base)/challenges", body: "{\"request_id\":\"r r\",\"user_id\":\"u\",\"number\":4}",
            status: 400, code: "invalid_field"),
        Case(
            method: "POST", path: "\(base)/challenges",
            body: "{\"request_id\":\"r\",\"user_id\":\"\(String(repeating: "u", count: 257))\",\"number\":4}",
            status: 400, code: "invalid_field"),
        Case(
            method: "POST", path: "\(base)/challenges",
            body: "{\"request_id\":\"r\",\"user_id\":\"u\",\"number\":4,\"context\":{\"a\":1}}", status: 400,
            code: "invalid_field"),
        Case(
            method: "POST", path: "\(base)/challenges",
            body:
                "{\"request_id\":\"r\",\"user_id\":\"u\",\"number\":4,\"context\":{\(((0..<17).map { "\"k\($0)\":\"v\"" }).joined(separator: ","))}}",
            status: 400, code: "invalid_field"),
        Case(
            method: "POST", path: "\(base)/challenges",
            body:
                "{\"request_id\":\"r\",\"user_id\":\"u\",\"number\":4,\"context\":{\"a\":\"\(String(repeating: "x", count: 257))\"}}",
            status: 400, code: "invalid_field"),
        Case(
            method: "POST", path: "\(base)/challenges", body: "{\"pad\":\"\(String(repeating: "x", count: 17_000))\"}",
            status: 413, code: "too_large"),
        Case(method: "GET", path: "\(base)/challenges/ch_nope", body: nil, status: 404, code: "not_found"),
        Case(method: "GET", path: "\(base)/challenges/ch_nope?wait=31", body: nil, status: 400, code: "invalid_field"),
        Case(method: "DELETE", path: "\(base)/challenges/ch_nope", body: nil, status: 404, code: "not_found"),
        Case(method: "DELETE", path: "\(base)/devices/nope", body: nil, status: 404, code: "not_found"),
        Case(method: "PATCH", path: "\(base)/policy", body: nil, status: 405, code: "method_not_allowed"),
        Case(method: "GET", path: "\(base)/nothing", body: nil, status: 404, code: "not_found"),
    ]

    @Test func idpInputIsRefusedAndChangesNothing() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("phone-1")
        #expect(try idp.register(phone, user: "alice@contoso.com").status == 201)
        let key = Data(phone.key.spkiDER).base64EncodedString()
        let policyBefore = try idp.call("GET", "\(Self.base)/policy").body
        let metricsBefore = try stateMetrics(broker)
        for item in Self.idpCases {
            let reply = try idp.call(item.method, item.path, item.body?.replacingOccurrences(of: "KEY", with: key))
            #expect(reply.status == item.status, "\(item)")
            #expect(reply.json["code"] as? String == item.code, "\(item): \(reply.body.prefix(200))")
            #expect(reply.header("content-type") == "application/problem+json", "\(item)")
        }
        #expect(try idp.call("GET", "\(Self.base)/policy").body == policyBefore)
        #expect(try stateMetrics(broker) == metricsBefore)
        #expect(try idp.call("GET", "\(Self.base)/users/alice%40contoso.com/devices").body.contains("phone-1"))
    }

    @Test func deviceInputIsRefusedAndChangesNothing() throws {
        let broker = try ApprovaldProcess(extraConfig: brokerConfig)
        let idp = IdP(broker: broker)
        let phone = try SimulatedDevice("phone-1")
        let other = try SimulatedDevice("phone-2")
        #expect(try idp.register(phone, user: "alice@contoso.com").status == 201)
        #expect(try idp.register(other, user: "bob@contoso.com").status == 201)
        let created = try idp.challenge("signin", user: "alice@contoso.com")
        let id = try #require(created.json["challenge_id"] as? String)
        let view = try #require(
            (try phone.call(broker, "GET", "/v1/devices/phone-1/challenges").json["challenges"] as? [[String: Any]])?
                .first)
        let response = "/v1/devices/phone-1/challenges/\(id)/response"

        // Another device's key over the decision, a stale signed_at, a tampered number, malformed fields.
        var forged = view
        forged["request_id"] = "another"
        let cases: [(Reply, Int, String)] = [
            (try other.answer(broker, view, approve: 42), 404, "not_found"),
            (try phone.answer(broker, forged, approve: 42), 400, "bad_signature"),
            (try phone.answer(broker, view, approve: 42, signedAt: unixNow() - 120), 400, "bad_signature"),
            (
                try send(
                    broker, "POST", response,
                    body: "{\"decision\":\"approve\",\"selected_number\":42,\"signed_at_unix\":1,\"signature\":\"!!\"}",
                    headers: []), 400, "bad_signature"
            ),
            (
                try send(
                    broker, "POST", response,
                    body: "{\"decision\":\"maybe\",\"signed_at_unix\":1,\"signature\":\"AA\"}", headers: []), 400,
                "invalid_field"
            ),
            (
                try send(
                    broker, "POST", response,
                    body: "{\"decision\":\"deny\",\"reason\":\"bored\",\"signed_at_unix\":1,\"signature\":\"AA\"}",
                    headers: []), 400, "invalid_field"
            ),
            (try send(broker, "POST", response, body: "{\"decision\":\"approve\"}", headers: []), 400, "invalid_field"),
            (
                try send(
                    broker, "POST", "/v1/devices/phone-1/challenges/ch_nope/response",
                    body: "{\"decision\":\"approve\",\"selected_number\":1,\"signed_at_unix\":1,\"signature\":\"AA\"}",
                    headers: []), 404, "not_found"
            ),
            (try send(broker, "GET", "/v1/devices/phone-1/challenges", body: nil, headers: []), 401, "unauthenticated"),
            (
                try send(
                    broker, "GET", "/v1/devices/phone-1/challenges", body: nil,
                    headers: ["Authorization: Approvald-Device device=phone-1, t=1, sig=AA"]), 401, "unauthenticated"
            ),
            (
                try phone.call(broker, "PUT", "/v1/devices/phone-1/push-token", "{\"provider\":\"pager\"}"), 400,
                "invalid_field"
            ),
            (
                try phone.call(
                    broker, "PUT", "/v1/devices/phone-2/push-token", "{\"provider\":\"fcm\",\"token\":\"t\"}"), 403,
                "forbidden"
            ),
        ]
        for (index, (reply, status, code)) in cases.enumerated() {
            #expect(reply.status == status, "case \(index): \(reply.body.prefix(200))")
            #expect(reply.json["code"] as? String == code, "case \(index): \(reply.body.prefix(200))")
        }
        // Still pending, still queued; the right answer still works.
        #expect(try idp.call("GET", "\(Self.base)/challenges/\(id)").json["status"] as? String == "pending")
        #expect(try phone.answer(broker, view, approve: 42).json["status"] as? String == "approved")
    }

    /// The gauges and counters that would move if state changed.
    func stateMetrics(_ broker: ApprovaldProcess) throws -> [String] {
        try broker.curl("/metrics").body.split(separator: "\n").filter {
            $0.hasPrefix("approvald_queue_depth") || $0.hasPrefix("approvald_pending")
                || $0.hasPrefix("approvald_challenges")
                || $0.hasPrefix("approvald_password_fallback")
        }.map(String.init)
    }
}
