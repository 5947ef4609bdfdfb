// One line per response when `[log] access` is on: the method, the route's template (never the raw path, which holds
// user and device ids), the status, the time since the stream opened, and the tenant the path names. Written in the
// process's log format straight to standard error rather than through swift-log: at a line per request, a metadata
// dictionary, its merge and sort cost about as much as handling a create (measured with bench/broker/cpu).
import Core
import EventLoop
import HTTP
import JSONText
import OIDC

/// `@unchecked Sendable`: used on the event loop only (its timestamp cache is not shared).
final class AccessLog: @unchecked Sendable {
    private let format: LogFormat
    /// The instance's name on a shared store.
    private let instanceID: String?
    /// ` instance=…` when the instance has a name, for text lines.
    private let instanceField: String
    private var timestamps = LogTimestamps()

    private static let ownPaths: Set<Substring> = [
        "/healthz", "/readyz", "/metrics", Substring(Discovery.configurationPath), Substring(Discovery.jwksPath),
        Substring(Discovery.authorizationPath), Substring(Discovery.tokenPath), Substring(Discovery.userinfoPath),
        Substring(OIDCSignIns.pagePath), Substring(OIDCSignIns.statusPath), Substring(OIDCSignIns.cancelPath),
    ]
    private static let methods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

    init(format: LogFormat, instanceID: String?) {
        self.format = format
        self.instanceID = instanceID
        instanceField = instanceID.map { " instance=\($0)" } ?? ""
    }

    func record(status: Int, stream: HTTPResponder) {
        let path = stream.requestPath.prefix { $0 != "?" }
        let known = RouteTable.api.template(of: path)
        let route = known?.template ?? (Self.ownPaths.contains(path) ? String(path) : "unmatched")
        let method = Self.methods.contains(stream.requestMethod) ? stream.requestMethod : "OTHER"
        // Tenant ids are a-z, 0-9 and -: anything else in that segment is not written.
        var tenant = known?.tenantID.map(String.init)
        if let named = tenant, (try? Validate.tenantID(named)) == nil { tenant = nil }
        let micros = Int(((preciseMonotonicSeconds() - stream.openedAt) * 1_000_000).rounded())
        let duration = "\(micros / 1000)." + LogTimestamps.padded(micros % 1000, 3)
        let line: String
        switch format {
        case .json:
            var json = JSONWriter()
            json.string("ts", timestamps.now())
            json.string("level", "info")
            json.string("msg", "request")
            json.string("logger", "approvald")
            json.raw("duration_ms", duration)
            if let instanceID { json.string("instance", instanceID) }
            json.string("method", method)
            json.string("route", route)
            json.integer("status", Int64(status))
            if let tenant { json.string("tenant", tenant) }
            line = json.finished() + "\n"
        case .text:
            line =
                "\(timestamps.nowToTheSecond()) info approvald: duration_ms=\(duration)\(instanceField) method=\(method) "
                + "route=\(route) status=\(status)" + (tenant.map { " tenant=\($0)" } ?? "") + " [Service] request\n"
        }
        LogOutput.writeStandardError(line)
    }
}
