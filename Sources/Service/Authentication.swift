// Who is calling: IdP clients by HMAC (key rotation, tenant scope), devices by P-256 request signatures.
import Core
import Crypto
import HTTP

/// The signed message of both schemes: `t + "\n" + METHOD + "\n" + path-with-query + "\n" + body`.
func signedMessage(time: String, _ request: HTTPRequest) -> [UInt8] {
    Array("\(time)\n\(request.method)\n\(request.path)\n".utf8) + request.body
}

/// The `Approvald-Signature` header an IdP client sends (and approvald sends its verifier): `key=…, t=…, v1=…`.
public func approvaldSignature(
    keyID: String, key: HMACSHA256.Key, time: Int64, method: String, path: String, body: [UInt8]
) -> String {
    let mac = key.authenticationCode(for: Array("\(time)\n\(method)\n\(path)\n".utf8) + body)
    return "key=\(keyID), t=\(time), v1=\(lowercaseHex(mac))"
}

/// The values of `names` in `name=value, name=value` (the values of both schemes contain no comma), in the order
/// asked; nil where a name is missing. A name given twice keeps its last value.
func parameters(_ text: Substring, _ names: String...) -> [Substring?] {
    var values = [Substring?](repeating: nil, count: names.count)
    for part in text.utf8.split(separator: UInt8(ascii: ",")) {
        let trimmed = part.drop { $0 == UInt8(ascii: " ") }
        guard let equals = trimmed.firstIndex(of: UInt8(ascii: "=")),
            let index = names.firstIndex(where: { $0.utf8.elementsEqual(trimmed[..<equals]) })
        else { continue }
        values[index] = Substring(trimmed[trimmed.index(after: equals)...])
    }
    return values
}

/// Lowercase or uppercase hex to bytes; nil for anything else.
func hexBytes(_ text: Substring) -> [UInt8]? {
    guard text.utf8.count % 2 == 0 else { return nil }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(text.utf8.count / 2)
    var high: UInt8?
    for symbol in text.utf8 {
        let value: UInt8
        switch symbol {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): value = symbol - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): value = symbol - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): value = symbol - UInt8(ascii: "A") + 10
        default: return nil
        }
        if let first = high {
            bytes.append(first << 4 | value)
            high = nil
        } else {
            high = value
        }
    }
    return bytes
}

struct Authenticator {
    static let idpClockSkewSeconds: Int64 = 300
    static let deviceClockSkewSeconds: Int64 = 60

    let clients: [String: Configuration.IdPClient]
    /// Each client's secret, prepared once.
    private let keys: [String: HMACSHA256.Key]

    init(clients: [Configuration.IdPClient]) {
        self.clients = Dictionary(clients.map { ($0.keyID, $0) }, uniquingKeysWith: { first, _ in first })
        keys = self.clients.mapValues { HMACSHA256.Key($0.secret) }
    }

    /// Checks `Approvald-Signature` and that the client may act on `tenantID`.
    func idp(_ request: HTTPRequest, tenantID: String, nowSeconds: Int64) throws(Problem) -> Configuration.IdPClient {
        guard let header = request.headers[field: "approvald-signature"] else {
            throw Problem.unauthenticated("Approvald-Signature is missing")
        }
        let fields = parameters(header[...], "key", "t", "v1")
        guard let keyID = fields[0], let time = fields[1], let mac = fields[2].flatMap(hexBytes),
            let seconds = Int64(time)
        else { throw Problem.unauthenticated("Approvald-Signature is malformed") }
        guard let client = clients[String(keyID)], let key = keys[String(keyID)] else {
            throw Problem.unauthenticated("unknown key")
        }
        guard abs(nowSeconds - seconds) <= Self.idpClockSkewSeconds else {
            throw Problem(
                401, "unauthenticated", "t is more than \(Self.idpClockSkewSeconds) s from the broker's clock")
        }
        guard key.isValid(mac, for: signedMessage(time: String(time), request)) else {
            throw Problem.unauthenticated("the signature does not match")
        }
        guard client.tenants.contains(tenantID) else {
            throw Problem.forbidden("this key may not act on tenant \(tenantID)")
        }
        return client
    }

    /// Checks `Authorization: Approvald-Device` for the device named in the path.
    /// The device an `Approvald-Device` header names, to look its key up before `device(_:…)` checks it.
    func claimedDevice(_ request: HTTPRequest) -> String? {
        let scheme = "Approvald-Device "
        guard let header = request.headers[field: "authorization"], header.hasPrefix(scheme) else { return nil }
        return parameters(header.dropFirst(scheme.count), "device")[0].map(String.init)
    }

    func device(
        _ request: HTTPRequest, deviceID: String, nowSeconds: Int64, key: (String) -> P256PublicKey?
    ) throws(Problem) {
        guard let header = request.headers[field: "authorization"] else {
            throw Problem.unauthenticated("Authorization is missing")
        }
        let scheme = "Approvald-Device "
        guard header.hasPrefix(scheme) else {
            throw Problem.unauthenticated("Authorization is not Approvald-Device")
        }
        let fields = parameters(header.dropFirst(scheme.count), "device", "t", "sig")
        guard let named = fields[0], let time = fields[1], let seconds = Int64(time),
            let signature = fields[2].flatMap({ Base64URL.decode($0) })
        else { throw Problem.unauthenticated("Authorization is malformed") }
        guard let publicKey = key(String(named)) else { throw Problem.unauthenticated("unknown device") }
        guard abs(nowSeconds - seconds) <= Self.deviceClockSkewSeconds else {
            throw Problem(
                401, "unauthenticated", "t is more than \(Self.deviceClockSkewSeconds) s from the broker's clock")
        }
        guard publicKey.isValidSignature(signature, for: signedMessage(time: String(time), request)) else {
            throw Problem.unauthenticated("the signature does not verify")
        }
        guard named == deviceID else { throw Problem.forbidden("a device may only act for itself") }
    }
}

/// The decision string a device signs (API.md), lines joined by `\n`, an empty line where a field does not apply:
/// what the broker verifies and what the tools that play phones sign.
public func decisionString(
    tenantID: String, requestID: String, challengeID: String, deviceID: String, decision: String,
    selectedNumber: Int?, reason: String?, signedAtUnix: Int64
) -> String {
    [
        "approvald-decision-v1", tenantID, requestID, challengeID, deviceID, decision,
        selectedNumber.map(String.init) ?? "", reason ?? "", String(signedAtUnix),
    ].joined(separator: "\n")
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
