// Who is calling: IdP clients by HMAC (key rotation, tenant scope), devices by P-256 request signatures, both
// schemes as the Protocol module writes them.
import Core
import Crypto
import HTTP
import Protocol

struct Authenticator {
    static let idpClockSkewSeconds: Int64 = 300
    static let deviceClockSkewSeconds: Int64 = 60

    let clients: [String: IdPClient]
    /// Each client's secret, prepared once.
    private let keys: [String: HMACSHA256.Key]

    init(clients: [IdPClient]) {
        self.clients = Dictionary(clients.map { ($0.keyID, $0) }, uniquingKeysWith: { first, _ in first })
        keys = self.clients.mapValues { HMACSHA256.Key($0.secret) }
    }

    /// Checks `Approvald-Signature` and that the client may act on `tenantID`.
    func idp(_ request: HTTPRequest, tenantID: String, nowSeconds: Int64) throws(Problem) -> IdPClient {
        guard let header = request.headers[field: IdPSignature.field] else {
            throw Problem.unauthenticated("Approvald-Signature is missing")
        }
        guard let fields = IdPSignature.parse(header) else {
            throw Problem.unauthenticated("Approvald-Signature is malformed")
        }
        guard let client = clients[String(fields.keyID)], let key = keys[String(fields.keyID)] else {
            throw Problem.unauthenticated("unknown key")
        }
        guard abs(nowSeconds - fields.seconds) <= Self.idpClockSkewSeconds else {
            throw Problem(
                401, "unauthenticated", "t is more than \(Self.idpClockSkewSeconds) s from the broker's clock")
        }
        let message = signedMessage(time: fields.time, method: request.method, path: request.path, body: request.body)
        guard key.isValid(fields.mac, for: message) else {
            throw Problem.unauthenticated("the signature does not match")
        }
        guard client.tenants.contains(tenantID) else {
            throw Problem.forbidden("this key may not act on tenant \(tenantID)")
        }
        return client
    }

    /// The device an `Approvald-Device` header names, to look its key up before `device(_:…)` checks it.
    func claimedDevice(_ request: HTTPRequest) -> String? {
        request.headers[field: "authorization"].flatMap(DeviceSignature.claimedDevice).map(String.init)
    }

    /// Checks `Authorization: Approvald-Device` for the device named in the path.
    func device(
        _ request: HTTPRequest, deviceID: String, nowSeconds: Int64, key: (String) -> P256PublicKey?
    ) throws(Problem) {
        guard let header = request.headers[field: "authorization"] else {
            throw Problem.unauthenticated("Authorization is missing")
        }
        guard header.hasPrefix(DeviceSignature.scheme) else {
            throw Problem.unauthenticated("Authorization is not Approvald-Device")
        }
        guard let fields = DeviceSignature.parse(header) else {
            throw Problem.unauthenticated("Authorization is malformed")
        }
        guard let publicKey = key(String(fields.device)) else { throw Problem.unauthenticated("unknown device") }
        guard abs(nowSeconds - fields.seconds) <= Self.deviceClockSkewSeconds else {
            throw Problem(
                401, "unauthenticated", "t is more than \(Self.deviceClockSkewSeconds) s from the broker's clock")
        }
        let message = signedMessage(time: fields.time, method: request.method, path: request.path, body: request.body)
        guard publicKey.isValidSignature(fields.signature, for: message) else {
            throw Problem.unauthenticated("the signature does not verify")
        }
        guard fields.device == deviceID else { throw Problem.forbidden("a device may only act for itself") }
    }
}

/// The decision string of `decision` on `challenge`.
func decisionString(_ challenge: Challenge, deviceID: String, _ decision: Decision) -> String {
    let (kind, selected, reason): (String, Int?, String?)
    switch decision.kind {
    case .approve(let number): (kind, selected, reason) = ("approve", number, nil)
    case .deny(let why): (kind, selected, reason) = ("deny", nil, why.rawValue)
    }
    return decisionString(
        tenantID: challenge.tenantID, requestID: challenge.request.requestID, challengeID: challenge.id,
        deviceID: deviceID, decision: kind, selectedNumber: selected, reason: reason,
        signedAtUnix: decision.signedAtUnix)
}
