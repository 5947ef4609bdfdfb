// The transport on Apple platforms: URLSession, which speaks HTTP/2 by ALPN natively. Built only where Darwin is;
// this project's CI, on Linux, does not build it (EventLoopTransport is the Linux one).
#if canImport(Darwin)
    import Foundation

    public final class URLSessionTransport: ApprovalTransport, Sendable {
        private let session: URLSession
        private let origin: URL

        /// A transport to `baseURL`'s origin over `session`.
        public init(baseURL: String, session: URLSession = .shared) throws {
            guard let url = URL(string: baseURL), let scheme = url.scheme, ["http", "https"].contains(scheme),
                var components = URLComponents(url: url, resolvingAgainstBaseURL: false)
            else { throw ApprovalError.invalidActivation("\(baseURL) is not an http:// or https:// URL") }
            components.path = ""
            components.query = nil
            guard let origin = components.url else { throw ApprovalError.invalidActivation(baseURL) }
            self.origin = origin
            self.session = session
        }

        private func urlRequest(_ request: TransportRequest) throws -> URLRequest {
            guard let url = URL(string: request.path, relativeTo: origin) else {
                throw ApprovalError.invalidActivation(request.path)
            }
            var made = URLRequest(url: url)
            made.httpMethod = request.method
            for (name, value) in request.headers { made.setValue(value, forHTTPHeaderField: name) }
            if !request.body.isEmpty { made.httpBody = Data(request.body) }
            return made
        }

        public func send(_ request: TransportRequest) async throws -> TransportResponse {
            do {
                let (data, response) = try await session.data(for: try urlRequest(request))
                return TransportResponse(status: (response as? HTTPURLResponse)?.statusCode ?? 0, body: Array(data))
            } catch let error as ApprovalError {
                throw error
            } catch {
                throw ApprovalError.unreachable("\(error)")
            }
        }

        public func stream(_ request: TransportRequest) -> AsyncThrowingStream<StreamPart, any Error> {
            AsyncThrowingStream { continuation in
                let task = Task {
                    do {
                        var timed = try urlRequest(request)
                        timed.timeoutInterval = 86_400
                        let (bytes, response) = try await session.bytes(for: timed)
                        var chunk: [UInt8] = []
                        for try await byte in bytes {
                            chunk.append(byte)
                            // An event ends with a blank line: hand over what arrived at each line's end.
                            if byte == UInt8(ascii: "\n") {
                                continuation.yield(.bytes(chunk))
                                chunk.removeAll(keepingCapacity: true)
                            }
                        }
                        if !chunk.isEmpty { continuation.yield(.bytes(chunk)) }
                        continuation.yield(.ended(status: (response as? HTTPURLResponse)?.statusCode ?? 0))
                        continuation.finish()
                    } catch {
                        continuation.finish(throwing: ApprovalError.unreachable("\(error)"))
                    }
                }
                continuation.onTermination = { _ in task.cancel() }
            }
        }
    }
#endif
