// One line per response when `[log] access` is on: the method, the route's template (never the raw path, which holds
// user and device ids), the status, the time since the stream opened, and the tenant the path names. Written in the
// process's log format straight to standard error rather than through swift-log: at a line per request, a metadata
// dictionary, its merge and sort cost about as much as handling a create (see the README's figures).
import Core
import EventLoop
import HTTP
import JSONText

/// `@unchecked Sendable`: used on the event loop only (its timestamp cache is not shared).
final class AccessLog: @unchecked Sendable {
    private let format: LogFormat
    /// `,"instance":"…"` (JSON) or ` instance=…` (text) when the instance has a name on a shared store.
    private let instanceField: String
    private var timestamps = LogTimestamps()

    private static let ownPaths: Set<Substring> = ["/healthz", "/readyz", "/metrics"]
    private static let methods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

    init(format: LogFormat, instanceID: String?) {
        self.format = format
        switch (format, instanceID) {
        case (_, nil): instanceField = ""
        case (.json, let name?): instanceField = ",\"instance\":" + jsonString(name)
        case (.text, let name?): instanceField = " instance=\(name)"
        }
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
        // Every value but the instance's is one of a fixed set or digits: nothing to escape.
        let line: String
        switch format {
        case .json:
            line =
                "{\"ts\":\"\(timestamps.now())\",\"level\":\"info\",\"msg\":\"request\",\"logger\":\"approvald\","
                + "\"duration_ms\":\(duration)\(instanceField),\"method\":\"\(method)\",\"route\":\"\(route)\","
                + "\"status\":\(status)" + (tenant.map { ",\"tenant\":\"\($0)\"" } ?? "") + "}\n"
        case .text:
            line =
                "\(timestamps.nowToTheSecond()) info approvald: duration_ms=\(duration)\(instanceField) method=\(method) "
                + "route=\(route) status=\(status)" + (tenant.map { " tenant=\($0)" } ?? "") + " [Service] request\n"
        }
        LogOutput.writeStandardError(line)
    }
}
