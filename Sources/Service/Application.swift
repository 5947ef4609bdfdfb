// approvald's request handling: routes requests to their handlers and keeps the operations metrics.
import H2
import Logging

/// `@unchecked Sendable`: owned by the event loop; every method runs on the loop's thread.
public final class Application: @unchecked Sendable {
    let logger: Logger
    /// Whether start-up has finished (later: the store is open and recovered); `/readyz` reports it.
    public var isReady = false
    private var responsesByStatus = StatusCounter()
    /// Open connections, read when `/metrics` is written.
    public var connectionCount: () -> Int = { 0 }
    /// The broker's API; nil until recovery has finished.
    var service: ApprovalService?

    // Fixed answers, made once: probes come often.
    private static let healthy = HTTPResponse.text(200, "ok\n")
    private static let ready = HTTPResponse.text(200, "ready\n")
    private static let starting = HTTPResponse.text(503, "starting\n")

    public init(logger: Logger) {
        self.logger = logger
    }

    /// Counts every response the server sends, by status code.
    public func recordResponse(status: Int) {
        responsesByStatus.increment(status)
    }

    public func handle(_ request: HTTPRequest, _ responder: HTTPResponder) {
        switch request.pathOnly {
        case "/healthz":
            guard allowGet(request, responder) else { return }
            responder.respond(Self.healthy)
        case "/readyz":
            guard allowGet(request, responder) else { return }
            responder.respond(isReady ? Self.ready : Self.starting)
        case "/metrics":
            guard allowGet(request, responder) else { return }
            responder.respond(metricsResponse())
        default:
            if service?.handle(request, responder) == true { return }
            if service == nil && request.pathOnly.hasPrefix("/v1/") {
                responder.respond(Problem(503, "unavailable", "the broker is recovering its state").response)
                return
            }
            responder.respond(Problem(404, "not_found", "no route for \(request.pathOnly)").response)
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
                Problem(405, "method_not_allowed", "\(request.pathOnly) takes GET", allow: ["GET"]).response)
            return false
        }
        return true
    }

    private func writeBrokerMetrics(_ service: ApprovalService, to writer: inout MetricsWriter) {
        writer.family("approvald_queue_depth", .gauge, help: "Pending entries over all device queues.")
        writer.sample("approvald_queue_depth", service.queueDepth)
        writer.family("approvald_tenant_queue_depth", .gauge, help: "Pending entries in device queues, by tenant.")
        for (tenant, depth) in service.queueDepthByTenant.sorted(by: { $0.key < $1.key }) {
            writer.sample("approvald_tenant_queue_depth", depth, labels: ["tenant": tenant])
        }
        writer.family("approvald_pending_challenges", .gauge, help: "Challenges waiting for an answer.")
        writer.sample("approvald_pending_challenges", service.pendingChallenges)
        let metrics = service.metrics
        writer.family("approvald_challenges_created_total", .counter, help: "Challenges created.")
        writer.sample("approvald_challenges_created_total", Double(metrics.created))
        writer.family("approvald_challenges_resolved_total", .counter, help: "Challenges ended, by outcome.")
        metrics.resolved.write("approvald_challenges_resolved_total", labelName: "outcome", to: &writer)
        writer.family("approvald_password_fallback_total", .counter, help: "password_fallback answers, by reason.")
        metrics.fallbacks.write("approvald_password_fallback_total", labelName: "reason", to: &writer)
        writer.family("approvald_duplicate_requests_total", .counter, help: "IdP retries answered from memory.")
        writer.sample("approvald_duplicate_requests_total", Double(metrics.duplicates))
        writer.family("approvald_device_streams", .gauge, help: "Open device event streams.")
        writer.sample("approvald_device_streams", service.streams.count)
        writer.family("approvald_auth_failures_total", .counter, help: "Refused authentications, by kind.")
        metrics.authFailures.write("approvald_auth_failures_total", labelName: "kind", to: &writer)
        let forwarder: Forwarder = service.forwarder
        writer.family(
            "approvald_forward_queue_depth", .gauge, help: "Results not yet acknowledged by a verifier nor dead.")
        writer.sample("approvald_forward_queue_depth", forwarder.queueDepth)
        writer.family(
            "approvald_forward_attempts_total", .counter,
            help: "Callback attempts, by result: delivered, retry, dead_letter.")
        forwarder.attempts.write("approvald_forward_attempts_total", labelName: "result", to: &writer)
        writer.family(
            "approvald_forward_latency_seconds", .histogram, help: "From a challenge's end to its verifier's 2xx.")
        forwarder.latency.write("approvald_forward_latency_seconds", to: &writer)
        writer.family(
            "approvald_push_notifications_total", .counter, help: "Wake-up pushes, by provider and result.")
        for (outcome, value) in service.pushRelay.results.sorted(by: { $0.key < $1.key }) {
            writer.sample(
                "approvald_push_notifications_total", Double(value),
                labels: ["provider": outcome.provider, "result": outcome.result])
        }
    }

    /// The `/metrics` document.
    public func metricsText() -> String {
        var writer = MetricsWriter()
        writer.family("approvald_http_requests_total", .counter, help: "HTTP responses sent, by status code.")
        responsesByStatus.write("approvald_http_requests_total", to: &writer)
        if let service { writeBrokerMetrics(service, to: &writer) }
        writer.family("approvald_http_connections", .gauge, help: "Open HTTP/2 connections.")
        writer.sample("approvald_http_connections", connectionCount())
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
