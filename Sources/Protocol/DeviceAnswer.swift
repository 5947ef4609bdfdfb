// A device's answer to a challenge (API.md, "Answering"): the body the phone side sends, signed with its key.
import Crypto
import JSONText

/// The body of a device's answer to the challenge `view` shows, its decision signed at `signedAtUnix` by `sign`
/// (an ECDSA-P256-SHA256 signature, DER, with the device key).
public func answerBody(
    to view: JSONValue, device: String, decision: String, selectedNumber: Int?, reason: String?,
    signedAtUnix: Int64, sign: ([UInt8]) throws -> [UInt8]
) rethrows -> String {
    let signed = decisionString(
        tenantID: view["tenant_id"]?.string ?? "", requestID: view["request_id"]?.string ?? "",
        challengeID: view["challenge_id"]?.string ?? "", deviceID: device, decision: decision,
        selectedNumber: selectedNumber, reason: reason, signedAtUnix: signedAtUnix)
    var body = JSONWriter()
    body.string("decision", decision)
    body.integer("selected_number", selectedNumber.map(Int64.init))
    body.string("reason", reason)
    body.integer("signed_at_unix", signedAtUnix)
    body.string("signature", Base64URL.encode(try sign(Array(signed.utf8))))
    return body.finished()
}
