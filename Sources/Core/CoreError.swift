// The domain's refusals, each with the stable machine code of API.md, and the input rules every id obeys.

/// Milliseconds since the Unix epoch. Core has no clock: every operation is told the time.
public typealias UnixMillis = Int64

public struct CoreError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalidField = "invalid_field"
        case notFound = "not_found"
        case deviceLimit = "device_limit"
        case deviceTenantConflict = "device_tenant_conflict"
        case mamRestricted = "mam_restricted"
        case policyExcluded = "policy_excluded"
        case idempotencyConflict = "idempotency_conflict"
        case alreadyResolved = "already_resolved"
        case expired
        case rateLimited = "rate_limited"
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}

/// The input rules of API.md.
public enum Validate {
    /// `[a-z0-9-]{1,64}`
    public static func tenantID(_ value: String) throws(CoreError) {
        let bytes = value.utf8
        guard (1...64).contains(bytes.count),
            bytes.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d })
        else { throw CoreError(.invalidField, "tenant_id must be 1-64 of a-z, 0-9 and -") }
    }

    /// `[A-Za-z0-9._:-]{1,128}`, for `device_id` and `request_id`.
    public static func identifier(_ value: String, field: String) throws(CoreError) {
        let bytes = value.utf8
        guard (1...128).contains(bytes.count), bytes.allSatisfy(isIdentifierByte) else {
            throw CoreError(.invalidField, "\(field) must be 1-128 of A-Z, a-z, 0-9 and . _ : -")
        }
    }

    private static func isIdentifierByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x41...0x5a, 0x61...0x7a, 0x30...0x39, 0x2e, 0x5f, 0x3a, 0x2d: true
        default: false
        }
    }

    /// At most 256 bytes.
    public static func displayName(_ value: String) throws(CoreError) {
        guard value.utf8.count <= 256 else {
            throw CoreError(.invalidField, "display_name is longer than 256 bytes")
        }
    }

    /// 1–256 bytes of printable UTF-8: no control characters (C0, DEL, C1).
    public static func userID(_ value: String) throws(CoreError) {
        guard (1...256).contains(value.utf8.count), value.unicodeScalars.allSatisfy(isPrintable) else {
            throw CoreError(.invalidField, "user_id must be 1-256 bytes of printable UTF-8")
        }
    }

    static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
        !(scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value))
    }
}
