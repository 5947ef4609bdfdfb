// The verifier outbox in Redis: each partition's callbacks in due order (a hash of callbacks and a sorted set of
// their next attempts), written in the same call as the challenge's ending; each outcome of a delivery is one call;
// dead letters by tenant, newest first, and their redrive. See FunctionLibrary for the keys.
import Core
import Redis
import Store

/// `@unchecked Sendable`: confined to the event loop of its client.
public final class RedisOutbox: @unchecked Sendable {
    private let client: RedisClient

    public init(client: RedisClient) { self.client = client }

    /// Up to `limit` callbacks of these partitions due at `now`, in (due time, challenge id) order after `cursor`.
    public func dueCallbacks(
        in partitions: [Partition], now: UnixMillis, after cursor: OutboxCursor?, limit: Int,
        completion: @escaping (Result<DueCallbacks, StoreError>) -> Void
    ) {
        let arguments =
            [
                "FCALL", "approvald_due_callbacks", "0", String(now), String(limit),
                cursor.map { String($0.dueAt) } ?? "", cursor?.challengeID ?? "",
            ] + partitions.map(RedisStates.tag)
        client.send(arguments) { result in
            completion(
                RedisStates.read(result) { value throws(StoreError) in
                    guard case .array(let items) = value, let next = items.first?.string,
                        items.count % 3 == 1
                    else { throw StoreError("due callbacks: \(value)") }
                    var entries: [OutboxEntry] = []
                    entries.reserveCapacity(items.count / 3)
                    for index in stride(from: 1, to: items.count, by: 3) {
                        guard let tag = items[index].string, let partition = Int(tag).flatMap(Self.partition),
                            let challengeID = items[index + 1].string, let text = items[index + 2].string
                        else { throw StoreError("a due callback: \(items[index + 1])") }
                        entries.append(try Self.entry(text, challengeID: challengeID, partition: partition))
                    }
                    return DueCallbacks(entries: entries, nextDueAt: UnixMillis(next))
                })
        }
    }

    /// Stores outcomes of deliveries (delivered, retry, dead letter) in one call. A callback another instance
    /// finished meanwhile is left as it is.
    public func commit(_ changes: [OutboxChange], completion: @escaping (Result<Void, StoreError>) -> Void) {
        var arguments = ["FCALL", "approvald_outbox", "0"]
        for change in changes {
            let challengeID: String
            var tenantID = ""
            let op: String
            var value = ""
            switch change {
            case .enqueue(let entry):
                // Only with the ending that caused it (RedisStates.commit); redrive requeues dead letters.
                return completion(.failure(StoreError("callback \(entry.challengeID) enqueued without its challenge")))
            case .delivered(let id):
                (challengeID, op) = (id, "d")
            case .retry(let id, let attempts, let nextAttemptAt):
                (challengeID, op, value) = (id, "r", "\(attempts)|\(nextAttemptAt)")
            case .deadLetter(let letter):
                (challengeID, op, value) = (letter.entry.challengeID, "x", Self.value(of: letter))
                tenantID = letter.entry.tenantID
            }
            guard let partition = Partition(challengeID: challengeID) else {
                return completion(.failure(StoreError("challenge id \(challengeID) names no partition")))
            }
            arguments += [op, challengeID, value, RedisStates.tag(partition), tenantID]
        }
        client.send(arguments) { result in
            completion(
                RedisStates.read(result) { value throws(StoreError) in
                    guard case .integer = value else { throw StoreError("outbox changes: \(value)") }
                })
        }
    }

    /// A tenant's dead letters, newest first, at most `limit`.
    public func deadLetters(
        tenantID: String, limit: Int, completion: @escaping (Result<[DeadLetter], StoreError>) -> Void
    ) {
        client.send([
            "FCALL", "approvald_dead_letters", "2", Self.deadLettersKey(tenantID), Self.deadOrderKey(tenantID),
            String(limit),
        ]) { result in
            completion(
                RedisStates.read(result) { value throws(StoreError) in
                    guard case .array(let items) = value, items.count % 2 == 0 else {
                        throw StoreError("dead letters: \(value)")
                    }
                    return try stride(from: 0, to: items.count, by: 2).map { index throws(StoreError) in
                        guard let challengeID = items[index].string, let text = items[index + 1].string else {
                            throw StoreError("a dead letter of \(tenantID): \(items[index])")
                        }
                        return try Self.deadLetter(text, challengeID: challengeID, tenantID: tenantID)
                    }
                })
        }
    }

    /// Puts the tenant's dead letter of that id (every one of the tenant's when nil) back in its partition's outbox.
    public func redrive(
        tenantID: String, challengeID: String?, now: UnixMillis, completion: @escaping (Result<Int, StoreError>) -> Void
    ) {
        client.send([
            "FCALL", "approvald_redrive", "2", Self.deadLettersKey(tenantID), Self.deadOrderKey(tenantID),
            String(now), challengeID ?? "",
        ]) { result in
            completion(
                RedisStates.read(result) { value throws(StoreError) in
                    guard case .integer(let requeued) = value else { throw StoreError("a redrive: \(value)") }
                    return Int(requeued)
                })
        }
    }

    // MARK: Values and keys

    static func partition(_ index: Int) -> Partition? {
        (0..<Partition.count).contains(index) ? Partition(index) : nil
    }

    static func outboxKey(_ partition: Partition) -> String { "ap:{\(RedisStates.tag(partition))}:out" }
    static func dueKey(_ partition: Partition) -> String { "ap:{\(RedisStates.tag(partition))}:outdue" }
    static func deadLettersKey(_ tenantID: String) -> String { "ap:dl:\(tenantID)" }
    static func deadOrderKey(_ tenantID: String) -> String { "ap:dlt:\(tenantID)" }

    /// "<attempts>|<next attempt>|<ended>|<tenant>|<tail>" (tenant ids hold no '|'). A callback stored by the
    /// release before has no traceparent field: its body follows the tenant.
    static func value(of entry: OutboxEntry) -> String {
        "\(entry.attempts)|\(entry.nextAttemptAt)|\(entry.endedAt)|\(entry.tenantID)|\(tail(of: entry))"
    }

    /// "<traceparent>|<body>", or for a CIBA callback "<traceparent>|<bearer token>|<body>" (traceparents and
    /// JWTs hold no '|', and a body is JSON, `{…}`): the part of a callback that a dead letter keeps, and a redrive
    /// (approvald_redrive) puts back as it is.
    private static func tail(of entry: OutboxEntry) -> String {
        "\(entry.traceparent ?? "")|" + (entry.target.bearerToken.map { "\($0)|" } ?? "") + entry.body
    }

    /// The traceparent, target and body of a tail; a body alone has no traceparent.
    private static func parseTail(_ tail: Substring) -> (traceparent: String?, target: CallbackTarget, body: String) {
        guard !tail.hasPrefix("{"), let bar = tail.firstIndex(of: "|") else { return (nil, .verifier, String(tail)) }
        let traceparent = bar == tail.startIndex ? nil : String(tail[..<bar])
        let rest = tail[tail.index(after: bar)...]
        guard !rest.hasPrefix("{"), let tokenEnd = rest.firstIndex(of: "|") else {
            return (traceparent, .verifier, String(rest))
        }
        return (
            traceparent, .ciba(bearerToken: String(rest[..<tokenEnd])), String(rest[rest.index(after: tokenEnd)...])
        )
    }

    static func entry(_ text: String, challengeID: String, partition: Partition) throws(StoreError) -> OutboxEntry {
        let fields = text.split(separator: "|", maxSplits: 4, omittingEmptySubsequences: false)
        guard fields.count == 5, let attempts = Int(fields[0]), let next = UnixMillis(fields[1]),
            let ended = UnixMillis(fields[2])
        else { throw StoreError("the callback of \(challengeID) in Redis is damaged") }
        let (traceparent, target, body) = parseTail(fields[4])
        return OutboxEntry(
            challengeID: challengeID, tenantID: String(fields[3]), partition: partition, body: body, endedAt: ended,
            attempts: attempts, nextAttemptAt: next, traceparent: traceparent, target: target)
    }

    /// "<status>|<dead at>|<attempts>|<ended>|<partition>|<detail bytes>|<detail><traceparent>|<body>" (the
    /// release before wrote the body alone after the detail).
    static func value(of letter: DeadLetter) -> String {
        let entry = letter.entry
        return "\(letter.status)|\(letter.deadAt)|\(entry.attempts)|\(entry.endedAt)|"
            + "\(RedisStates.tag(entry.partition))|\(letter.detail.utf8.count)|\(letter.detail)\(tail(of: entry))"
    }

    static func deadLetter(_ text: String, challengeID: String, tenantID: String) throws(StoreError) -> DeadLetter {
        let fields = text.split(separator: "|", maxSplits: 6, omittingEmptySubsequences: false)
        guard fields.count == 7, let status = Int(fields[0]), let deadAt = UnixMillis(fields[1]),
            let attempts = Int(fields[2]), let ended = UnixMillis(fields[3]),
            let partition = Int(fields[4]).flatMap(Self.partition),
            let detailBytes = Int(fields[5]), detailBytes <= fields[6].utf8.count
        else { throw StoreError("the dead letter of \(challengeID) in Redis is damaged") }
        let rest = fields[6].utf8
        let split = rest.index(rest.startIndex, offsetBy: detailBytes)
        let (traceparent, target, body) = parseTail(Substring(rest[split...]))
        return DeadLetter(
            entry: OutboxEntry(
                challengeID: challengeID, tenantID: tenantID, partition: partition, body: body, endedAt: ended,
                attempts: attempts, traceparent: traceparent, target: target),
            status: status, detail: String(decoding: rest[..<split], as: UTF8.self), deadAt: deadAt)
    }
}
