// The parties of a sign-in, played by the tests against the real binary: an IdP that signs its webhook calls
// with HMAC, and devices with P-256 keys that sign their requests and answers. Requests go through curl.
import Crypto
import Foundation
import TestSupport
import Testing

struct Reply {
    let status: Int
    let body: String
    let headers: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    }

    func header(_ name: String) -> String? {
        headers.split(separator: "\r\n").first { $0.lowercased().hasPrefix(name + ":") }
            .map { String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces) }
    }
}

/// Sends one request with curl on the plain listener (`broker.cleartextProtocol`); `headers` are extra header lines.
func send(
    _ broker: ApprovaldProcess, _ method: String, _ path: String, body: String?, headers: [String]
) throws -> Reply {
    let headerFile = broker.directory.appendingPathComponent("headers-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: headerFile) }
    var arguments = [
        "curl", "-sS", broker.cleartextProtocol.curlFlag, "--max-time", "20", "-X", method, "-D", headerFile,
        "-w", "\n%{http_code}",
    ]
    for header in headers { arguments += ["-H", header] }
    if let body { arguments += ["-H", "content-type: application/json", "--data-binary", body] }
    let result = try runCommand(arguments + [broker.h2cURL + path], timeout: 30)
    let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
    return Reply(
        status: Int(lines.last ?? "") ?? 0, body: lines.dropLast().joined(separator: "\n"),
        headers: (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? "")
}

func unixNow() -> Int64 { Int64(Date().timeIntervalSince1970) }

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

struct IdP {
    let broker: ApprovaldProcess
    var keyID = "test-idp"
    var secret = "a test secret that is at least thirty-two bytes"

    /// The `Approvald-Signature` header for a request; `skew` moves `t` away from now.
    func signature(_ method: String, _ path: String, _ body: String, skew: Int64 = 0) -> String {
        let time = String(unixNow() + skew)
        let mac = HMACSHA256.authenticationCode(
            key: Array(secret.utf8), message: "\(time)\n\(method)\n\(path)\n\(body)")
        return "Approvald-Signature: key=\(keyID), t=\(time), v1=\(hex(mac))"
    }

    func call(
        _ method: String, _ path: String, _ body: String? = nil, skew: Int64 = 0, headers: [String] = []
    ) throws -> Reply {
        try send(
            broker, method, path, body: body, headers: [signature(method, path, body ?? "", skew: skew)] + headers)
    }

    /// Registers `phone-<index>` for `user-<index>@contoso.com`, creates a challenge for it and cancels it: a result
    /// for the verifier. Returns the challenge's id.
    func cancelledSignIn(_ index: Int) throws -> String {
        let phone = try SimulatedDevice("phone-\(index)")
        #expect(try register(phone, user: "user-\(index)@contoso.com").status == 201)
        let created = try challenge("signin-\(index)", user: "user-\(index)@contoso.com")
        let challengeID = try #require(created.json["challenge_id"] as? String)
        #expect(try call("DELETE", "/v1/tenants/contoso/challenges/\(challengeID)").status == 200)
        return challengeID
    }

    func register(_ device: SimulatedDevice, user: String, tenant: String = "contoso") throws -> Reply {
        try call(
            "PUT", "/v1/tenants/\(tenant)/devices/\(device.id)",
            "{\"user_id\":\"\(user)\",\"public_key\":\"\(Data(device.key.spkiDER).base64EncodedString())\","
                + "\"push\":{\"provider\":\"none\"},\"display_name\":\"\(device.id)\"}")
    }

    func challenge(
        _ requestID: String, user: String, number: Int = 42, tenant: String = "contoso", headers: [String] = []
    ) throws -> Reply {
        try call(
            "POST", "/v1/tenants/\(tenant)/challenges",
            "{\"request_id\":\"\(requestID)\",\"user_id\":\"\(user)\",\"number\":\(number),"
                + "\"context\":{\"app\":\"Outlook\",\"ip\":\"203.0.113.7\"}}", headers: headers)
    }
}

struct SimulatedDevice {
    let id: String
    let key: P256PrivateKey

    init(_ id: String) throws {
        self.id = id
        key = try P256PrivateKey()
    }

    /// `Authorization: Approvald-Device …` signed as `signer` (by default this device) for `deviceID`.
    func authorization(_ method: String, _ path: String, _ body: String, as name: String? = nil) throws -> String {
        let time = String(unixNow())
        let signature = try key.signature(for: "\(time)\n\(method)\n\(path)\n\(body)")
        return "Authorization: Approvald-Device device=\(name ?? id), t=\(time), sig=\(Base64URL.encode(signature))"
    }

    func call(_ broker: ApprovaldProcess, _ method: String, _ path: String, _ body: String? = nil) throws -> Reply {
        try send(broker, method, path, body: body, headers: [authorization(method, path, body ?? "")])
    }

    /// Signs and sends an answer to a challenge view, as the app would.
    func answer(
        _ broker: ApprovaldProcess, _ view: [String: Any], approve number: Int? = nil, deny reason: String? = nil,
        signedAt: Int64 = unixNow()
    ) throws -> Reply {
        let challengeID = view["challenge_id"] as? String ?? ""
        let decision = number != nil ? "approve" : "deny"
        let lines = [
            "approvald-decision-v1", view["tenant_id"] as? String ?? "", view["request_id"] as? String ?? "",
            challengeID, id, decision, number.map(String.init) ?? "", reason ?? "", String(signedAt),
        ]
        let signature = Base64URL.encode(try key.signature(for: lines.joined(separator: "\n")))
        let body =
            "{\"decision\":\"\(decision)\",\"selected_number\":\(number.map(String.init) ?? "null"),"
            + "\"reason\":\(reason.map { "\"\($0)\"" } ?? "null"),\"signed_at_unix\":\(signedAt),"
            + "\"signature\":\"\(signature)\"}"
        return try send(broker, "POST", "/v1/devices/\(id)/challenges/\(challengeID)/response", body: body, headers: [])
    }
}

/// The configuration most broker-flow tests use; their results go nowhere (nothing listens on port 9).
let brokerConfig = brokerConfiguration(verifierURL: "http://127.0.0.1:9/verify")

/// Two tenants, each with its IdP client; both clients' results go to `verifierURL`.
func brokerConfiguration(verifierURL: String) -> String {
    """
    [[idp_clients]]
    key_id = "test-idp"
    secret = "a test secret that is at least thirty-two bytes"
    tenants = ["contoso"]
    verifier_url = "\(verifierURL)"

    [[idp_clients]]
    key_id = "fabrikam-idp"
    secret = "another secret that is at least thirty-two bytes"
    tenants = ["fabrikam"]
    verifier_url = "\(verifierURL)"
    """
}

/// Runs `curl -N` on a device's event stream in the background, into a file the test reads.
final class StreamReader {
    let process = Process()
    let output: String

    init(_ broker: ApprovaldProcess, _ device: SimulatedDevice) throws {
        output = broker.directory.appendingPathComponent("stream-\(device.id)").path
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let path = "/v1/devices/\(device.id)/stream"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "curl", "-sS", "-N", broker.cleartextProtocol.curlFlag, "--max-time", "60", "-H",
            try device.authorization("GET", path, ""), broker.h2cURL + path,
        ]
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    deinit { if process.isRunning { process.terminate() } }

    var text: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }

    /// Waits (bounded) until the stream has shown `fragment`.
    func shows(_ fragment: String, within seconds: Double = 10) -> Bool {
        eventuallyBlocking(timeout: seconds) { text.contains(fragment) }
    }
}

/// Waits (bounded) until `count` results wait for their verifier and have been retried at least once.
func resultsAreRetried(_ broker: ApprovaldProcess, count: Int) -> Bool {
    eventuallyBlocking {
        let metrics = (try? broker.curl("/metrics").body) ?? ""
        return metrics.contains("approvald_forward_queue_depth \(count)")
            && metrics.contains("approvald_forward_attempts_total{result=\"retry\"}")
    }
}
