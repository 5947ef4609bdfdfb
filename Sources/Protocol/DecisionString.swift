// The decision a device signs (API.md, "Answering"): what the broker verifies and what the phone side signs.

/// The decision string, lines joined by `\n`, an empty line where a field does not apply.
public func decisionString(
    tenantID: String, requestID: String, challengeID: String, deviceID: String, decision: String,
    selectedNumber: Int?, reason: String?, signedAtUnix: Int64
) -> String {
    [
        "approvald-decision-v1", tenantID, requestID, challengeID, deviceID, decision,
        selectedNumber.map(String.init) ?? "", reason ?? "", String(signedAtUnix),
    ].joined(separator: "\n")
}
