// Acknowledged must mean durable: before serving, the broker checks that its Redis writes every command to the
// append-only file and fsyncs it before answering (`appendonly yes`, `appendfsync always`).

public enum RedisPersistence {
    /// A setting that lets Redis acknowledge a write it could still lose in a crash, or that could not be read.
    public struct Unsafe: Error, Equatable, Sendable, CustomStringConvertible {
        public let setting: String
        /// What the server has, or why it could not be read.
        public let found: String
        public let needed: String

        public var description: String {
            "Redis has \(setting) \(found); approvald needs \(setting) \(needed) so that an acknowledged request "
                + "survives a crash of Redis (or allow_unsafe_persistence = true, which gives that up)"
        }
    }

    /// The settings and the values they need.
    static let required = [("appendonly", "yes"), ("appendfsync", "always")]

    /// Reads the settings with `CONFIG GET`; `completion` gets nil when both are safe, else the first that is not
    /// (a server that refuses `CONFIG`, as some managed services do, cannot be checked and counts as unsafe).
    public static func check(_ client: RedisClient, completion: @escaping (Result<Unsafe?, RedisError>) -> Void) {
        check(client, Self.required[...], completion: completion)
    }

    private static func check(
        _ client: RedisClient, _ remaining: ArraySlice<(String, String)>,
        completion: @escaping (Result<Unsafe?, RedisError>) -> Void
    ) {
        guard let (setting, needed) = remaining.first else { return completion(.success(nil)) }
        client.send(["CONFIG", "GET", setting]) { result in
            switch result {
            case .failure(let error): completion(.failure(error))
            case .success(.array(let pair)) where pair.count == 2 && pair[1].string == needed:
                check(client, remaining.dropFirst(), completion: completion)
            case .success(.array(let pair)) where pair.count == 2:
                completion(.success(Unsafe(setting: setting, found: pair[1].string ?? "?", needed: needed)))
            case .success(.error(let message)):
                completion(.success(Unsafe(setting: setting, found: "unreadable (\(message))", needed: needed)))
            case .success(let other):
                completion(.success(Unsafe(setting: setting, found: "unreadable (\(other))", needed: needed)))
            }
        }
    }
}
