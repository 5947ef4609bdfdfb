// The verifier side of the callbacks, as an IdP runs it: an h2c server that checks each result's
// Approvald-Signature with the IdP client's secret, acknowledges it (204) or refuses a bad signature (401, which
// the broker keeps as a dead letter), and hands it on. `approvald verifier` prints what it receives;
// `approvald simulate` matches it with the sign-ins it runs.
import Crypto
import EventLoop
import Foundation
import HTTP
import Logging
import Protocol

/// One result as the verifier received it.
struct ReceivedResult: Sendable {
    let challengeID: String
    let tenantID: String
    let requestID: String
    let outcome: String
    let reason: String?
    let deviceID: String?
    let selectedNumber: Int?
    let signatureValid: Bool

    /// One line: `result <challenge> tenant= request= outcome= device= selected= signature=valid|INVALID`.
    var line: String {
        "result \(challengeID) tenant=\(tenantID) request=\(requestID) outcome=\(outcome) device=\(deviceID ?? "-") "
            + "selected=\(selectedNumber.map(String.init) ?? "-") signature=\(signatureValid ? "valid" : "INVALID")"
    }
}

/// An h2c server on `loop` that verifies and acknowledges results; `onResult` runs on the loop for each POST.
func makeVerifierServer(
    loop: EventLoop, keyID: String, secret: String, onResult: @escaping (ReceivedResult) -> Void
) -> HTTPServer {
    var logger = Logger(label: "approvald-verifier")
    logger.logLevel = .error
    let key = HMACSHA256.Key(Array(secret.utf8))
    return HTTPServer(loop: loop, logger: logger) { request, responder in
        guard request.method == "POST" else {
            responder.respond(HTTPResponse(status: 405, headers: [:], body: []))
            return
        }
        let header = request.headers[field: IdPSignature.field] ?? ""
        let expected = IdPSignature.parse(header).map {
            IdPSignature.header(
                keyID: keyID, key: key, time: $0.seconds, method: "POST", path: request.path, body: request.body)
        }
        let valid = expected.map { constantTimeEquals(Array($0.utf8), Array(header.utf8)) } ?? false
        // Acknowledged first: whoever `onResult` tells may end the process at once.
        responder.respond(HTTPResponse(status: valid ? 204 : 401, headers: [:], body: []))
        let body = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] ?? [:]
        let decision = body["decision"] as? [String: Any]
        onResult(
            ReceivedResult(
                challengeID: body["challenge_id"] as? String ?? "?", tenantID: body["tenant_id"] as? String ?? "?",
                requestID: body["request_id"] as? String ?? "?", outcome: body["outcome"] as? String ?? "?",
                reason: body["reason"] as? String, deviceID: body["device_id"] as? String,
                selectedNumber: decision?["selected_number"] as? Int, signatureValid: valid))
    }
}
