// Rows to domain values and back, in the column order of the schema. Lists that hold free text (users, context)
// are JSON; lists of ids and numbers, whose alphabets have no comma, are comma-separated.
import Core
import Foundation

enum Codec {
    // MARK: Policies

    static func values(_ policy: TenantPolicy, _ tenantID: String) -> [Statement.Value] {
        [
            .text(tenantID), .integer(policy.passwordless ? 1 : 0), .text(policy.target.rawValue),
            .text(json(policy.users.sorted())), .integer(Int64(policy.maxDevicesPerUser)),
            .integer(Int64(policy.challengeTTLSeconds)), .integer(Int64(policy.choices)),
            .integer(Int64(policy.maxPendingPerUser)), .integer(Int64(policy.maxChallengesPerWindow)),
            .integer(Int64(policy.windowSeconds)), .integer(Int64(policy.lockoutSeconds)),
        ]
    }

    static func policy(_ row: Row) throws(StoreError) -> TenantPolicy {
        var policy = TenantPolicy()
        policy.passwordless = row.integer(1) != 0
        policy.target = try parse(TenantPolicy.Target(rawValue: row.text(2)), "policies.target", row.text(2))
        policy.users = Set(try decodeJSON([String].self, row.text(3), "policies.users"))
        policy.maxDevicesPerUser = Int(row.integer(4))
        policy.challengeTTLSeconds = Int(row.integer(5))
        policy.choices = Int(row.integer(6))
        policy.maxPendingPerUser = Int(row.integer(7))
        policy.maxChallengesPerWindow = Int(row.integer(8))
        policy.windowSeconds = Int(row.integer(9))
        policy.lockoutSeconds = Int(row.integer(10))
        return policy
    }

    // MARK: Devices

    static func values(_ device: Device) -> [Statement.Value] {
        [
            .text(device.id), .text(device.tenantID), .text(device.userID), .blob(device.publicKey),
            .text(device.push.provider.rawValue), .text(device.push.token), .text(device.push.topic),
            .text(device.displayName), .integer(device.createdAt), device.lastSeenAt.map { .integer($0) } ?? .null,
        ]
    }

    static func device(_ row: Row) throws(StoreError) -> Device {
        let provider = try parse(PushTarget.Provider(rawValue: row.text(4)), "devices.push_provider", row.text(4))
        return Device(
            id: row.text(0), tenantID: row.text(1), userID: row.text(2), publicKey: row.blob(3),
            push: PushTarget(provider: provider, token: row.text(5), topic: row.text(6)), displayName: row.text(7),
            createdAt: row.integer(8), lastSeenAt: row.optionalInteger(9))
    }

    // MARK: Challenges

    static func values(_ challenge: Challenge) -> [Statement.Value] {
        let request = challenge.request
        let resolution = challenge.resolution
        var decision: [Statement.Value] = [.null, .null, .null, .null, .null]
        if let made = resolution?.decision {
            switch made.kind {
            case .approve(let selected): decision[0...2] = [.text("approve"), .integer(Int64(selected)), .null]
            case .deny(let reason): decision[0...2] = [.text("deny"), .null, .text(reason.rawValue)]
            }
            decision[3] = .integer(made.signedAtUnix)
            decision[4] = .text(made.signature)
        }
        return [
            .text(challenge.id), .text(challenge.tenantID), .text(request.requestID), .text(request.userID),
            .integer(Int64(request.number)), request.ttlSeconds.map { .integer(Int64($0)) } ?? .null,
            .text(request.context.json), .text(challenge.choices.map(String.init).joined(separator: ",")),
            .text(challenge.devices.joined(separator: ",")), .integer(challenge.createdAt),
            .integer(challenge.expiresAt), .text(challenge.status.rawValue),
            resolution?.reason.map { .text($0.rawValue) } ?? .null, resolution?.device.map { .text($0) } ?? .null,
        ] + decision + [
            resolution.map { .integer($0.at) } ?? .null, challenge.traceparent.map { .text($0) } ?? .null,
            .integer(Int64(challenge.channel.storedCode)), challenge.channel.bearerToken.map { .text($0) } ?? .null,
        ]
    }

    static func challenge(_ row: Row) throws(StoreError) -> Challenge {
        let request = ChallengeRequest(
            requestID: row.text(2), userID: row.text(3), number: Int(row.integer(4)),
            ttlSeconds: row.optionalInteger(5).map(Int.init),
            context: try context(row.text(6), "challenges.context"))
        let choices = try integers(row.text(7), "challenges.choices")
        let status = try parse(ChallengeStatus(rawValue: row.text(11)), "challenges.status", row.text(11))
        var resolution: Resolution?
        if status != .pending {
            let reason = try row.optionalText(12).map { text throws(StoreError) in
                try parse(ResolutionReason(rawValue: text), "challenges.reason", text)
            }
            var decision: Decision?
            if let kind = row.optionalText(14) {
                let made: Decision.Kind
                if kind == "approve" {
                    made = .approve(selectedNumber: Int(row.integer(15)))
                } else {
                    let why = row.optionalText(16) ?? ""
                    made = .deny(reason: try parse(DenyReason(rawValue: why), "challenges.deny_reason", why))
                }
                decision = Decision(kind: made, signedAtUnix: row.integer(17), signature: row.text(18))
            }
            let at = try parse(row.optionalInteger(19), "challenges.resolved_at", "null")
            resolution = Resolution(
                status: status, reason: reason, device: row.optionalText(13), decision: decision, at: at)
        }
        return Challenge(
            id: row.text(0), tenantID: row.text(1), request: request, choices: choices,
            devices: identifiers(row.text(8)), createdAt: row.integer(9),
            expiresAt: row.integer(10), resolution: resolution, traceparent: row.optionalText(20),
            channel: try parse(
                ResultChannel(storedCode: Int(row.integer(21)), bearerToken: row.optionalText(22)),
                "challenges.channel",
                "\(row.integer(21))"))
    }

    // MARK: Fallbacks

    static func values(_ fallback: Fallback) -> [Statement.Value] {
        let request = fallback.request
        return [
            .text(fallback.tenantID), .text(request.requestID), .text(request.userID), .integer(Int64(request.number)),
            request.ttlSeconds.map { .integer(Int64($0)) } ?? .null, .text(request.context.json),
            .text(fallback.reason.rawValue), .integer(fallback.decidedAt),
        ]
    }

    static func fallback(_ row: Row) throws(StoreError) -> Fallback {
        let request = ChallengeRequest(
            requestID: row.text(1), userID: row.text(2), number: Int(row.integer(3)),
            ttlSeconds: row.optionalInteger(4).map(Int.init),
            context: try context(row.text(5), "fallbacks.context"))
        let reason = try parse(FallbackReason(rawValue: row.text(6)), "fallbacks.reason", row.text(6))
        return Fallback(tenantID: row.text(0), request: request, reason: reason, decidedAt: row.integer(7))
    }

    // MARK: Outbox

    static func values(_ enrollment: Enrollment) -> [Statement.Value] {
        let request = enrollment.request
        return [
            .text(enrollment.id), .text(enrollment.tenantID), .text(request.userID), .text(request.displayName),
            .integer(request.mamRestricted ? 1 : 0), .integer(Int64(request.ttlSeconds)), .blob(enrollment.codeHash),
            .integer(enrollment.createdAt), .integer(enrollment.expiresAt), .text(enrollment.status.rawValue),
            enrollment.deviceID.map { .text($0) } ?? .null, enrollment.end.map { .integer($0.at) } ?? .null,
        ]
    }

    static func enrollment(_ row: Row) throws(StoreError) -> Enrollment {
        let status = try parse(EnrollmentStatus(rawValue: row.text(9)), "enrollments.status", row.text(9))
        let end: EnrollmentEnd?
        switch (status, row.optionalText(10), row.optionalInteger(11)) {
        case (.pending, _, _): end = nil
        case (.completed, let deviceID?, let at?): end = EnrollmentEnd(.completed(deviceID: deviceID), at: at)
        case (.expired, _, let at?): end = EnrollmentEnd(.expired, at: at)
        case (.cancelled, _, let at?): end = EnrollmentEnd(.cancelled, at: at)
        default: throw StoreError("enrollments: \(row.text(0)) is \(status.rawValue) without its device or time")
        }
        return Enrollment(
            id: row.text(0), tenantID: row.text(1),
            request: EnrollmentRequest(
                userID: row.text(2), displayName: row.text(3), mamRestricted: row.integer(4) != 0,
                ttlSeconds: Int(row.integer(5))),
            codeHash: row.blob(6), createdAt: row.integer(7), expiresAt: row.integer(8), end: end)
    }

    static func values(_ entry: OutboxEntry) -> [Statement.Value] {
        [
            .text(entry.challengeID), .text(entry.tenantID), .text(entry.body), .integer(entry.endedAt),
            .integer(Int64(entry.attempts)), .integer(entry.nextAttemptAt), .integer(Int64(entry.partition.index)),
            entry.traceparent.map { .text($0) } ?? .null, entry.target.bearerToken.map { .text($0) } ?? .null,
        ]
    }

    static func outboxEntry(_ row: Row) throws(StoreError) -> OutboxEntry {
        OutboxEntry(
            challengeID: row.text(0), tenantID: row.text(1), partition: try partition(row.integer(6), "outbox"),
            body: row.text(2), endedAt: row.integer(3), attempts: Int(row.integer(4)), nextAttemptAt: row.integer(5),
            traceparent: row.optionalText(7), target: CallbackTarget(bearerToken: row.optionalText(8)))
    }

    /// The partition of the user a callback body names (`tenant_id`, `user_id`).
    static func partition(ofCallback body: String, in column: String) throws(StoreError) -> Partition {
        let fields = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        guard let tenantID = fields?["tenant_id"] as? String, let userID = fields?["user_id"] as? String else {
            throw StoreError("\(column) holds \(body.prefix(40)), which names no tenant and user")
        }
        return Partition(of: UserKey(tenantID: tenantID, userID: userID))
    }

    private static func partition(_ stored: Int64, _ table: String) throws(StoreError) -> Partition {
        guard (0..<Int64(Partition.count)).contains(stored) else {
            throw StoreError("\(table).user_partition holds \(stored), which is not a partition")
        }
        return Partition(Int(stored))
    }

    static func values(_ letter: DeadLetter) -> [Statement.Value] {
        let entry = letter.entry
        return [
            .text(entry.challengeID), .text(entry.tenantID), .text(entry.body), .integer(entry.endedAt),
            .integer(Int64(entry.attempts)), .integer(Int64(letter.status)), .text(letter.detail),
            .integer(letter.deadAt), .integer(Int64(entry.partition.index)),
            entry.traceparent.map { .text($0) } ?? .null, entry.target.bearerToken.map { .text($0) } ?? .null,
        ]
    }

    static func deadLetter(_ row: Row) throws(StoreError) -> DeadLetter {
        DeadLetter(
            entry: OutboxEntry(
                challengeID: row.text(0), tenantID: row.text(1),
                partition: try partition(row.integer(8), "dead_letters"),
                body: row.text(2), endedAt: row.integer(3), attempts: Int(row.integer(4)),
                traceparent: row.optionalText(9), target: CallbackTarget(bearerToken: row.optionalText(10))),
            status: Int(row.integer(5)), detail: row.text(6), deadAt: row.integer(7))
    }

    // MARK: Helpers

    /// Comma-separated numbers of at most 9 digits, read from the bytes: a restart reads a million such lists, and a
    /// generic split makes a substring and a parse of each.
    private static func integers(_ text: String, _ column: String) throws(StoreError) -> [Int] {
        var values: [Int] = []
        values.reserveCapacity(4)
        var value = 0
        var digits = 0
        for byte in text.utf8 {
            if byte == UInt8(ascii: ","), digits > 0 {
                values.append(value)
                (value, digits) = (0, 0)
            } else if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte), digits < 9 {
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                digits += 1
            } else {
                throw StoreError("\(column) holds \(text.prefix(40)), which is not a list of numbers")
            }
        }
        guard digits > 0 || text.isEmpty else {
            throw StoreError("\(column) holds \(text.prefix(40)), which is not a list of numbers")
        }
        if digits > 0 { values.append(value) }
        return values
    }

    /// Comma-separated ids; most lists hold one, which is the text itself.
    private static func identifiers(_ text: String) -> [String] {
        guard text.utf8.contains(UInt8(ascii: ",")) else { return text.isEmpty ? [] : [text] }
        return text.split(separator: ",").map(String.init)
    }

    private static func json<Value: Encodable>(_ value: Value) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // Strings and string collections always encode.
        return String(decoding: (try? encoder.encode(value)) ?? Data("null".utf8), as: UTF8.self)
    }

    private static func decodeJSON<Value: Decodable>(
        _ type: Value.Type, _ text: String, _ column: String
    )
        throws(StoreError) -> Value
    {
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw StoreError("\(column) holds \(text.prefix(40)), which is not the JSON expected")
        }
    }

    /// The context as the Core wrote it (canonical JSON), taken as it is: parsing a million of them would be most
    /// of a restart's work. Only its shape is checked.
    private static func context(_ text: String, _ column: String) throws(StoreError) -> ChallengeContext {
        guard text.utf8.first == UInt8(ascii: "{"), text.utf8.last == UInt8(ascii: "}") else {
            throw StoreError("\(column) holds \(text.prefix(40)), which is not the JSON expected")
        }
        return ChallengeContext(canonicalJSON: text)
    }

    /// A stored value that does not parse is damage, reported with where it is.
    private static func parse<Value>(_ value: Value?, _ column: String, _ text: String) throws(StoreError) -> Value {
        guard let value else { throw StoreError("\(column) holds \(text.prefix(40)), which is not a valid value") }
        return value
    }
}

extension ResultChannel {
    /// A CIBA channel's code, which its bearer token follows.
    public static let cibaStoredCode = 3

    /// The number both stores keep it as: 0 for the verifier, so that every challenge stored before had one. A CIBA
    /// channel's bearer token is kept beside it (`bearerToken`).
    public var storedCode: Int {
        switch self {
        case .verifier: 0
        case .browser(codeRedeemed: false): 1
        case .browser(codeRedeemed: true): 2
        case .ciba: Self.cibaStoredCode
        }
    }

    public var bearerToken: String? {
        if case .ciba(let token) = self { return token }
        return nil
    }

    /// Nil for an unknown code, or a CIBA channel without its token.
    public init?(storedCode: Int, bearerToken: String?) {
        switch storedCode {
        case 0: self = .verifier
        case 1: self = .browser(codeRedeemed: false)
        case 2: self = .browser(codeRedeemed: true)
        case Self.cibaStoredCode:
            guard let bearerToken else { return nil }
            self = .ciba(bearerToken: bearerToken)
        default: return nil
        }
    }
}
