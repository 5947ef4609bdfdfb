// approvald's request handling: routes requests to their handlers and keeps the operations metrics and the access
// log.
import EventLoop
import HTTP
import Logging

/// `@unchecked Sendable`: owned by the event loop; every method runs on the loop's thread.
public final class Application: @unchecked Sendable {
    let logger: Logger
    /// Whether the service is up and not draining; `/readyz` reports it.
    private var isReady = false
    private var responsesByStatus = StatusCounter()
    /// Open connections by protocol, read when `/metrics` is written.
    private var connectionCount: (HTTPProtocol) -> Int = { _ in 0 }
    /// The broker's API; nil until recovery has finished.
    private(set) var service: ApprovalService?
    /// The OpenID provider, when `[oidc]` is configured; set before the server starts.
    public var oidc: OIDCProvider?

    // Fixed answers, made once: probes come often.
    private static let healthy = HTTPResponse.text(200, "ok\n")
    private static let ready = HTTPResponse.text(200, "ready\n")
    private static let starting = HTTPResponse.text(503, "starting\n")

    public init(logger: Logger) {
        self.logger = logger
    }

    /// Writes a line for every response when `[log] access` is on.
    private var accessLog: AccessLog?

    /// Makes this the handler of `server`'s requests, of its responses' counts and of its early refusals.
    public func attach(to server: HTTPServer) {
        server.onResponse = { [unowned self] in recordResponse(status: $0, stream: $1) }
        server.earlyRefusal = { Problem($0).response }
        connectionCount = { [unowned server] in server.connectionCount(speaking: $0) }
    }

    /// Logs a line for every response, in `format`, naming `instanceID` when there are many instances.
    public func enableAccessLog(format: LogFormat, instanceID: String?) {
        accessLog = AccessLog(format: format, instanceID: instanceID)
    }

    /// Serves the API through `service` and reports ready.
    public func serve(_ service: ApprovalService) {
        self.service = service
        isReady = true
    }

    /// Reports not ready, for load balancers, while the broker drains.
    public func drain() {
        isReady = false
    }

    /// Counts every response the server sends, by status code, and logs it when the access log is on.
    func recordResponse(status: Int, stream: HTTPResponder?) {
        responsesByStatus.increment(status)
        if let accessLog, let stream { accessLog.record(status: status, stream: stream) }
    }

    public func handle(_ request: HTTPRequest, _ responder: HTTPResponder) {
        switch request.pathOnly {
        case "/healthz":
            guard allowGet(request, responder) else { return }
            responder.respond(Self.healthy)
        case "/readyz":
            guard allowGet(request, responder) else { return }
            responder.respond(isReady && service?.isStoreReachable == true ? Self.ready : Self.starting)
        case "/metrics":
            guard allowGet(request, responder) else { return }
            responder.respond(metricsResponse())
        default:
            if oidc?.handle(request, responder, service: service) == true { return }
            if service?.handle(request, responder) == true { return }
            if service == nil && request.pathOnly.hasPrefix("/v1/") {
                responder.respond(Problem.unavailable("the broker is recovering its state").response)
                return
            }
            responder.respond(Problem.notFound("no route for \(request.pathOnly)").response)
        }
    }

    /// The exposition, written at most once per `metricsReuseSeconds`: a flood of scrapes (the text costs about
    /// 100 µs) then costs the broker almost nothing, and a scraper sees figures at most that old.
    private func metricsResponse() -> HTTPResponse {
        let now = monotonicSeconds()
        if let (writtenAt, response) = lastMetrics, now - writtenAt < Self.metricsReuseSeconds { return response }
        let response = HTTPResponse(
            status: 200, headers: [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
            body: Array(metricsText().utf8))
        lastMetrics = (now, response)
        return response
    }

    static let metricsReuseSeconds = 0.01
    private var lastMetrics: (writtenAt: Double, response: HTTPResponse)?

    private func allowGet(_ request: HTTPRequest, _ responder: HTTPResponder) -> Bool {
        guard request.method == "GET" else {
            responder.respond(
                Problem.methodNotAllowed("\(request.pathOnly) takes GET", allow: ["GET"]).response)
            return false
        }
        return true
    }

    /// The `/metrics` document.
    public func metricsText() -> String {
        var writer = MetricsWriter()
        writer.family("approvald_build_info", .gauge, help: "The version and commit this binary was built from.")
        writer.sample("approvald_build_info", 1, labels: ["version": BuildInfo.version, "commit": BuildInfo.commit])
        writer.family("approvald_http_requests_total", .counter, help: "HTTP responses sent, by status code.")
        responsesByStatus.write("approvald_http_requests_total", to: &writer)
        for source in service?.metricsSources ?? [] { source.writeMetrics(to: &writer) }
        oidc?.writeMetrics(to: &writer)
        writer.family("approvald_http_connections", .gauge, help: "Open HTTP connections, by protocol.")
        for httpProtocol in HTTPProtocol.allCases {
            writer.sample(
                "approvald_http_connections", connectionCount(httpProtocol), labels: ["protocol": httpProtocol.rawValue]
            )
        }
        writer.family("process_resident_memory_bytes", .gauge, help: "Resident memory size in bytes.")
        writer.sample("process_resident_memory_bytes", ProcessMetrics.residentMemoryBytes())
        writer.family("process_open_fds", .gauge, help: "Number of open file descriptors.")
        writer.sample("process_open_fds", ProcessMetrics.openFileDescriptors())
        writer.family(
            "process_start_time_seconds", .gauge, help: "Start time of the process since the Unix epoch in seconds.")
        writer.sample("process_start_time_seconds", ProcessMetrics.startTime)
        return writer.text
    }
}
