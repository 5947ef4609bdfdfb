// The two request-signing schemes of API.md ("Authentication"), both over one message: IdP clients (and approvald
// towards its verifier) sign with HMAC-SHA256 in `Approvald-Signature`, devices with P-256 in
// `Authorization: Approvald-Device`. The broker checks what the phone side and the tools write here.
import Crypto

/// The signed message of both schemes: `t + "\n" + METHOD + "\n" + path-with-query + "\n" + body`.
public func signedMessage(time: some StringProtocol, method: String, path: String, body: [UInt8]) -> [UInt8] {
    Array("\(time)\n\(method)\n\(path)\n".utf8) + body
}

/// `Approvald-Signature: key=…, t=…, v1=…`, the header of an IdP client's request and of approvald's callback.
public enum IdPSignature {
    public static let field = "approvald-signature"

    /// The header's value for a request signed with `key` at `time`.
    public static func header(
        keyID: String, key: HMACSHA256.Key, time: Int64, method: String, path: String, body: [UInt8]
    ) -> String {
        let mac = key.authenticationCode(for: signedMessage(time: String(time), method: method, path: path, body: body))
        return "key=\(keyID), t=\(time), v1=\(lowercaseHex(mac))"
    }

    /// What a header names; nil when a part is missing or malformed.
    public struct Fields {
        public let keyID: Substring
        /// As sent: the signed message repeats it byte for byte.
        public let time: Substring
        public let seconds: Int64
        public let mac: [UInt8]
    }

    public static func parse(_ header: String) -> Fields? {
        let fields = headerParameters(header[...], "key", "t", "v1")
        guard let keyID = fields[0], let time = fields[1], let seconds = Int64(time),
            let mac = fields[2].flatMap(hexBytes)
        else { return nil }
        return Fields(keyID: keyID, time: time, seconds: seconds, mac: mac)
    }
}

/// `Authorization: Approvald-Device device=…, t=…, sig=…`, the header of a device's request.
public enum DeviceSignature {
    public static let scheme = "Approvald-Device "

    /// The header's value for a request (with `body`) the device signs at `time`; `sign` makes an
    /// ECDSA-P256-SHA256 signature (DER) with the device key, wherever that key lives.
    public static func header(
        device: String, time: Int64, method: String, path: String, body: [UInt8] = [],
        sign: ([UInt8]) throws -> [UInt8]
    ) rethrows -> String {
        let signature = try sign(signedMessage(time: String(time), method: method, path: path, body: body))
        return "\(scheme)device=\(device), t=\(time), sig=\(Base64URL.encode(signature))"
    }

    /// What a header names; nil when a part is missing or malformed.
    public struct Fields {
        public let device: Substring
        /// As sent: the signed message repeats it byte for byte.
        public let time: Substring
        public let seconds: Int64
        public let signature: [UInt8]
    }

    /// The device a header claims to be, before its key is looked up; nil for another scheme.
    public static func claimedDevice(_ header: String) -> Substring? {
        guard header.hasPrefix(scheme) else { return nil }
        return headerParameters(header.dropFirst(scheme.count), "device")[0]
    }

    /// The parts of a header of this scheme (the caller has checked the scheme).
    public static func parse(_ header: String) -> Fields? {
        let fields = headerParameters(header.dropFirst(scheme.count), "device", "t", "sig")
        guard let device = fields[0], let time = fields[1], let seconds = Int64(time),
            let signature = fields[2].flatMap({ Base64URL.decode($0) })
        else { return nil }
        return Fields(device: device, time: time, seconds: seconds, signature: signature)
    }
}

/// The values of `names` in `name=value, name=value` (the values of both schemes contain no comma), in the order
/// asked; nil where a name is missing. A name given twice keeps its last value.
public func headerParameters(_ text: Substring, _ names: String...) -> [Substring?] {
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
public func hexBytes(_ text: Substring) -> [UInt8]? {
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
