// The API's route table: which operation a method and path under /v1 name. 404 and 405 follow from the table.
import Foundation
import HTTP

/// An operation of the API, with the identifiers its path carries (percent-decoded, not yet validated).
enum Route: Equatable, Sendable {
    case getPolicy(tenantID: String)
    case putPolicy(tenantID: String)
    case putDevice(tenantID: String, deviceID: String)
    case deleteDevice(tenantID: String, deviceID: String)
    case listDevices(tenantID: String, userID: String)
    case createChallenge(tenantID: String)
    case getChallenge(tenantID: String, challengeID: String)
    case cancelChallenge(tenantID: String, challengeID: String)
    case deadLetters(tenantID: String)
    /// Sends one dead letter again (`challengeID`), or all of the tenant's (nil).
    case redrive(tenantID: String, challengeID: String?)
    case deviceQueue(deviceID: String)
    case deviceStream(deviceID: String)
    case answer(deviceID: String, challengeID: String)
    case pushToken(deviceID: String)
    case createEnrollment(tenantID: String)
    case getEnrollment(tenantID: String, enrollmentID: String)
    case cancelEnrollment(tenantID: String, enrollmentID: String)
    /// A phone completes an enrollment with its activation code.
    case enroll
    /// A device turns phone sign-in off.
    case removeSelf(deviceID: String)
    /// Keycloak hands a sign-in to its CIBA authentication channel.
    case ciba(tenantID: String)

    /// Whether the operation is the device API's (for counting authentication failures by kind).
    var isDeviceRoute: Bool {
        switch self {
        case .deviceQueue, .deviceStream, .answer, .pushToken, .enroll, .removeSelf: true
        default: false
        }
    }
}

/// Paths as patterns of literal segments and `{…}` parameters, each with the methods it takes.
struct RouteTable: Sendable {
    struct Entry: Sendable {
        let method: String
        /// The path under `/v1/` with its parameters named, as in docs/openapi.yaml: `tenants/{tenant}/policy`.
        let template: String
        /// Segments after `/v1`; nil stands for a parameter.
        let pattern: [String?]
        /// Makes the route from the parameters, in path order.
        let route: @Sendable ([String]) -> Route

        init(_ method: String, _ template: String, route: @escaping @Sendable ([String]) -> Route) {
            self.method = method
            self.template = "/v1/" + template
            pattern = template.split(separator: "/").map { $0.hasPrefix("{") ? nil : String($0) }
            self.route = route
        }
    }

    let entries: [Entry]

    static let api = RouteTable(entries: [
        Entry("GET", "tenants/{tenant}/policy") { .getPolicy(tenantID: $0[0]) },
        Entry("PUT", "tenants/{tenant}/policy") { .putPolicy(tenantID: $0[0]) },
        Entry("PUT", "tenants/{tenant}/devices/{device_id}") { .putDevice(tenantID: $0[0], deviceID: $0[1]) },
        Entry("DELETE", "tenants/{tenant}/devices/{device_id}") { .deleteDevice(tenantID: $0[0], deviceID: $0[1]) },
        Entry("GET", "tenants/{tenant}/users/{user_id}/devices") { .listDevices(tenantID: $0[0], userID: $0[1]) },
        Entry("POST", "tenants/{tenant}/challenges") { .createChallenge(tenantID: $0[0]) },
        Entry("POST", "tenants/{tenant}/ciba") { .ciba(tenantID: $0[0]) },
        Entry("GET", "tenants/{tenant}/challenges/{challenge_id}") {
            .getChallenge(tenantID: $0[0], challengeID: $0[1])
        },
        Entry("DELETE", "tenants/{tenant}/challenges/{challenge_id}") {
            .cancelChallenge(tenantID: $0[0], challengeID: $0[1])
        },
        Entry("GET", "tenants/{tenant}/dead-letters") { .deadLetters(tenantID: $0[0]) },
        Entry("POST", "tenants/{tenant}/dead-letters/retry") { .redrive(tenantID: $0[0], challengeID: nil) },
        Entry("POST", "tenants/{tenant}/dead-letters/{challenge_id}/retry") {
            .redrive(tenantID: $0[0], challengeID: $0[1])
        },
        Entry("GET", "devices/{device_id}/challenges") { .deviceQueue(deviceID: $0[0]) },
        Entry("GET", "devices/{device_id}/stream") { .deviceStream(deviceID: $0[0]) },
        Entry("POST", "devices/{device_id}/challenges/{challenge_id}/response") {
            .answer(deviceID: $0[0], challengeID: $0[1])
        },
        Entry("PUT", "devices/{device_id}/push-token") { .pushToken(deviceID: $0[0]) },
        Entry("DELETE", "devices/{device_id}") { .removeSelf(deviceID: $0[0]) },
        Entry("POST", "tenants/{tenant}/enrollments") { .createEnrollment(tenantID: $0[0]) },
        Entry("GET", "tenants/{tenant}/enrollments/{enrollment_id}") {
            .getEnrollment(tenantID: $0[0], enrollmentID: $0[1])
        },
        Entry("DELETE", "tenants/{tenant}/enrollments/{enrollment_id}") {
            .cancelEnrollment(tenantID: $0[0], enrollmentID: $0[1])
        },
        Entry("POST", "enroll") { _ in .enroll },
    ])

    /// The template of the path (without its query), whatever the method — `/v1/tenants/{tenant}/policy` — and
    /// the tenant it names; nil for a path the table does not know.
    func template(of path: Substring) -> (template: String, tenantID: Substring?)? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        guard segments.count >= 2, segments[0].isEmpty, segments[1] == "v1" else { return nil }
        let parts = segments.dropFirst(2)
        guard let entry = entries.first(where: { $0.matches(parts) }) else { return nil }
        return (entry.template, entry.pattern.first == "tenants" ? parts.dropFirst().first : nil)
    }

    /// The route `method` and `path` (without its query) name; nil when the path is not under `/v1/`. A path the
    /// table knows under other methods is 405 (with those methods in `allow`), any other 404.
    func match(method: String, path: Substring) throws(Problem) -> Route? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        // "" before the leading slash, then "v1": a path that does not start with /v1 is not the API's, whatever
        // follows (`x/v1/…` was routed once; nghttp2 refuses such paths first, but the table must not need it to).
        guard segments.count >= 2, segments[0].isEmpty, segments[1] == "v1" else { return nil }
        // Segments are matched as they are; only the parameters of the route that matches become strings, decoded
        // when they hold an escape (Foundation's decoding, and its `contains`, cost a string bridge each).
        let parts = segments.dropFirst(2)
        var allowed: [String] = []
        for entry in entries where entry.matches(parts) {
            guard entry.method == method else {
                allowed.append(entry.method)
                continue
            }
            return entry.route(
                zip(entry.pattern, parts).compactMap { literal, part in
                    guard literal == nil else { return nil }
                    return part.utf8.contains(UInt8(ascii: "%"))
                        ? part.removingPercentEncoding ?? String(part) : String(part)
                })
        }
        guard allowed.isEmpty else {
            throw Problem.methodNotAllowed("\(method) is not allowed here", allow: allowed)
        }
        throw Problem.notFound("no such route")
    }
}

extension RouteTable.Entry {
    /// Whether the path's segments after `/v1` fit the pattern.
    func matches<Parts: Collection>(_ parts: Parts) -> Bool where Parts.Element: StringProtocol {
        pattern.count == parts.count
            && zip(pattern, parts).allSatisfy { literal, part in literal.map { $0 == part } ?? true }
    }
}

/// The value of `name` in a query string (`a=1&b=2`), the last one where it is given twice; not percent-decoded
/// (the API's query values are numbers).
func queryValue(_ query: Substring, _ name: String) -> Substring? {
    query.split(separator: "&").last { $0.hasPrefix(name + "=") }?.dropFirst(name.count + 1)
}
