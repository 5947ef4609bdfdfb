// How the SDK reaches the broker: one request at a time, or a response body streamed as it arrives (the event
// stream). On Linux the project's own HTTP client (HTTP/2 with prior knowledge or by ALPN, or HTTP/1.1) on an event
// loop of the transport's own; on Apple platforms URLSession (URLSessionTransport).

/// A request to the broker, its path relative to the base URL's origin.
public struct TransportRequest: Sendable, Equatable {
    public var method: String
    public var path: String
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(method: String, path: String, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
    }

    public static func == (lhs: TransportRequest, rhs: TransportRequest) -> Bool {
        lhs.method == rhs.method && lhs.path == rhs.path && lhs.body == rhs.body
            && lhs.headers.map { "\($0.0): \($0.1)" } == rhs.headers.map { "\($0.0): \($0.1)" }
    }
}

public struct TransportResponse: Sendable {
    public var status: Int
    public var body: [UInt8]

    public init(status: Int, body: [UInt8]) {
        self.status = status
        self.body = body
    }
}

/// Carries requests to one broker. Implementations are thread-safe.
public protocol ApprovalTransport: Sendable {
    /// The response, whatever its status; throws when no response came (connection, timeout).
    func send(_ request: TransportRequest) async throws -> TransportResponse
    /// The response body's chunks as they arrive, then its status once the broker ends it (cancelling the task
    /// that iterates ends the request).
    func stream(_ request: TransportRequest) -> AsyncThrowingStream<StreamPart, any Error>
}

/// A part of a streamed response.
public enum StreamPart: Sendable, Equatable {
    case bytes([UInt8])
    /// The response ended with this status.
    case ended(status: Int)
}
