// Enrollment's wire formats (API.md, "Enrollment"): the activation URI a QR code carries, and the proof a phone signs
// with its new key to complete the enrollment. The broker writes and verifies them; the phone side reads and signs.
import Foundation

/// `approvald://enroll?v=1&url=<base URL>&tenant=<tenant>&code=<activation code>`.
public struct ActivationURI: Equatable, Sendable, CustomStringConvertible {
    /// Where the phone reaches the broker (the configuration's `public_url`).
    public var baseURL: String
    public var tenantID: String
    public var code: String

    public init(baseURL: String, tenantID: String, code: String) {
        self.baseURL = baseURL
        self.tenantID = tenantID
        self.code = code
    }

    /// Reads a URI this type wrote (or a phone scanned); nil for anything else: another scheme or version, a part
    /// missing, a base URL that is not http or https with a host.
    public init?(_ text: String) {
        guard let components = URLComponents(string: text), components.scheme == "approvald",
            components.host == "enroll", components.path.isEmpty || components.path == "/"
        else { return nil }
        var values: [String: String] = [:]
        for item in components.queryItems ?? [] {
            guard values[item.name] == nil, let value = item.value else { return nil }
            values[item.name] = value
        }
        guard values["v"] == "1", let url = values["url"], let tenant = values["tenant"], let code = values["code"],
            let base = URLComponents(string: url), ["http", "https"].contains(base.scheme), base.host?.isEmpty == false
        else { return nil }
        self.init(baseURL: url, tenantID: tenant, code: code)
    }

    public var description: String {
        "approvald://enroll?v=1&url=\(Self.encode(baseURL))&tenant=\(Self.encode(tenantID))&code=\(Self.encode(code))"
    }

    /// Percent-encodes all but RFC 3986's unreserved characters.
    private static func encode(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics.intersection(
            .init(charactersIn: Unicode.Scalar(0)...Unicode.Scalar(127)))
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }
}

/// What a phone signs with its new key to complete an enrollment: the code and the key, bound together, so that a
/// code seen by someone else cannot be completed with their key.
/// - Parameter publicKey: the key as the request carries it (base64 of the DER SPKI).
public func enrollmentProofMessage(code: String, publicKey: String) -> String {
    "approvald-enroll-v1\n\(code)\n\(publicKey)"
}
