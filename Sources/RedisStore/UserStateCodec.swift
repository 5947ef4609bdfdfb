// A user's whole state as the bytes of one Redis value: every request loads and commits it, and a million pending
// challenges live in Redis's memory, so the format is compact (varints, no field names) and read in one pass.
// The first byte is the format; a reader refuses a format it does not know rather than guess. Enumerations are
// stored by their position in `allCases`: new cases go at the end.
//
// Format 3 holds no ended challenges: each is a record of its own (`encode(ended:)`), written once when it ends, in
// keys that expire by themselves when its window ends, and read only by a request that names it. A user who signs in
// often would otherwise carry every challenge of the last 15 minutes through each commit, and a sweep would commit
// again to forget each one. Formats 1 and 2 (2 adds each challenge's traceparent) held the ended challenges in the
// state; releases before 0.17.0 wrote them, and 0.17 and 0.18 while one of those was live. They are read, never
// written: such a state's ended challenges become records when its user's state is next committed.
//
// An ended challenge is written without its decision's signature and its traceparent: both went out with its
// callback, in the commit that ended it, and nothing that reads an ended challenge afterwards (a create's replay,
// the challenge's status, a device's retry of its answer) looks at them.
import Core
import Store

enum UserStateCodec {
    enum Format: UInt8 {
        case original = 1
        /// Each challenge ends with its traceparent.
        case traceparents = 2
        /// As `traceparents`, and the ended challenges are records of their own.
        case endedApart = 3
        /// As `endedApart`, with the user's enrollments at the end. Written only for a state that holds one, so that
        /// 0.19 instances, which read at most format 3, read every other user's state through a rollout.
        case enrollments = 4
        /// As `enrollments`, and each challenge starts with where its result goes (`ResultChannel.storedCode`, then
        /// a CIBA channel's bearer token). Written only for a state with a pending challenge of an OpenID Connect
        /// sign-in or a CIBA request, which 0.20 instances do not serve.
        case channels = 5

        var hasTraceparents: Bool { self != .original }
        var holdsEnded: Bool { self == .original || self == .traceparents }
        var hasEnrollments: Bool { self == .enrollments || self == .channels }
        var hasChannels: Bool { self == .channels }
    }

    /// The format other instances must read before this one writes ended challenges apart, which it tells them
    /// (PartitionLeases): 3, whatever newer formats it reads.
    static let newest = Format.endedApart

    /// The state in format 3, 4 when it holds enrollments, or 5 when a pending challenge's result goes elsewhere
    /// than the verifier, without its ended challenges (each is written with `encode(ended:)`).
    static func encode(_ state: UserState) -> [UInt8] {
        var out = BinaryWriter()
        out.bytes.reserveCapacity(256)
        let format: Format =
            if state.pending.contains(where: { $0.channel != .verifier }) {
                .channels
            } else {
                state.enrollments.isEmpty ? .endedApart : .enrollments
            }
        out.byte(format.rawValue)
        out.optionalTime(state.lockedUntil)
        out.count(state.devices.count)
        for device in state.devices { out.device(device) }
        out.count(state.pending.count)
        for challenge in state.pending { out.challenge(challenge, format) }
        out.count(state.fallbacks.count)
        for fallback in state.fallbacks {
            out.request(fallback.request)
            out.choice(fallback.reason)
            out.time(fallback.decidedAt)
        }
        out.count(state.queue.count)
        for entry in state.queue {
            out.string(entry.challengeID)
            out.string(entry.deviceID)
        }
        out.count(state.recentCreations.count)
        for at in state.recentCreations { out.time(at) }
        if format.hasEnrollments {
            out.count(state.enrollments.count)
            for enrollment in state.enrollments { out.enrollment(enrollment) }
        }
        return out.bytes
    }

    /// The state of `key` at `version` from what `encode` (or a release before) wrote; damaged or unknown bytes are a
    /// `StoreError`. Its `indexedDeadline` is the deadline its writer put in the due set: in formats 1 and 2, the
    /// ends of its ended challenges' windows count.
    static func decode(_ bytes: ArraySlice<UInt8>, key: UserKey, version: UInt64) throws(StoreError) -> UserState {
        var input = BinaryReader(bytes: bytes, subject: "the state of \(key)")
        guard let format = Format(rawValue: try input.byte()) else { throw input.damaged("an unknown format") }
        let lockedUntil = try input.optionalTime()
        let devices = try input.list { reader throws(StoreError) in try reader.device(of: key) }
        let pending = try input.list { reader throws(StoreError) in try reader.challenge(of: key, format) }
        let ended =
            format.holdsEnded
            ? try input.list { reader throws(StoreError) in try reader.challenge(of: key, format) } : []
        let fallbacks = try input.list { reader throws(StoreError) -> Fallback in
            let request = try reader.request()
            let reason = try reader.choice(FallbackReason.self)
            return Fallback(tenantID: key.tenantID, request: request, reason: reason, decidedAt: try reader.time())
        }
        let queue = try input.list { reader throws(StoreError) in
            QueueEntry(challengeID: try reader.string(), deviceID: try reader.string())
        }
        let recentCreations = try input.list { reader throws(StoreError) in try reader.time() }
        let enrollments =
            format.hasEnrollments
            ? try input.list { reader throws(StoreError) in try reader.enrollment(of: key) } : []
        guard input.isAtEnd else { throw input.damaged("bytes after the end") }
        var state = UserState(
            key: key, version: version, devices: devices, pending: pending, ended: ended, fallbacks: fallbacks,
            queue: queue, recentCreations: recentCreations, lockedUntil: lockedUntil, enrollments: enrollments)
        state.indexedDeadline = state.nextDeadline(includingEnded: format.holdsEnded)
        return state
    }

    /// An ended challenge's record: format 1 (of records), then the challenge without its proof; format 2, read
    /// by 0.21 and later, when its result went elsewhere than the verifier: its channel first.
    static func encode(ended challenge: Challenge) -> [UInt8] {
        precondition(challenge.resolution != nil, "a record of an ended challenge")
        var out = BinaryWriter()
        let withChannel = challenge.channel != .verifier
        out.byte(withChannel ? 2 : 1)
        out.challenge(challenge, .original, keepingProof: false, withChannel: withChannel)
        return out.bytes
    }

    static func decode(ended bytes: ArraySlice<UInt8>, of key: UserKey) throws(StoreError) -> Challenge {
        var input = BinaryReader(bytes: bytes, subject: "a record of an ended challenge of \(key)")
        let format = try input.byte()
        guard format == 1 || format == 2 else { throw input.damaged("an unknown format") }
        let challenge = try input.challenge(of: key, .original, withChannel: format == 2)
        guard challenge.resolution != nil else { throw input.damaged("a challenge that has not ended") }
        guard input.isAtEnd else { throw input.damaged("bytes after the end") }
        return challenge
    }
}

extension BinaryWriter {
    mutating func enrollment(_ enrollment: Enrollment) {
        string(enrollment.id)
        string(enrollment.request.displayName)
        byte(enrollment.request.mamRestricted ? 1 : 0)
        number(enrollment.request.ttlSeconds)
        raw(enrollment.codeHash)
        time(enrollment.createdAt)
        time(enrollment.expiresAt)
        guard let end = enrollment.end else { return byte(0) }
        switch end.kind {
        case .completed(let deviceID):
            byte(1)
            string(deviceID)
        case .expired: byte(2)
        case .cancelled: byte(3)
        }
        time(end.at)
    }

    mutating func device(_ device: Device) {
        string(device.id)
        raw(device.publicKey)
        choice(device.push.provider)
        string(device.push.token)
        string(device.push.topic)
        string(device.displayName)
        time(device.createdAt)
        optionalTime(device.lastSeenAt)
    }

    mutating func request(_ request: ChallengeRequest) {
        string(request.requestID)
        string(request.userID)
        number(request.number)
        byte(request.ttlSeconds == nil ? 0 : 1)
        if let ttl = request.ttlSeconds { number(ttl) }
        string(request.context.json)
    }

    /// `keepingProof` false: an empty signature and no traceparent (see the top of the file). `withChannel`: the
    /// format has the challenge's channel (by default, the state's format says).
    mutating func challenge(
        _ challenge: Challenge, _ format: UserStateCodec.Format, keepingProof: Bool = true, withChannel: Bool? = nil
    ) {
        if withChannel ?? format.hasChannels {
            number(challenge.channel.storedCode)
            if let token = challenge.channel.bearerToken { string(token) }
        }
        if format.hasTraceparents { optionalString(keepingProof ? challenge.traceparent : nil) }
        string(challenge.id)
        request(challenge.request)
        count(challenge.choices.count)
        for choice in challenge.choices { number(choice) }
        count(challenge.devices.count)
        for device in challenge.devices { string(device) }
        time(challenge.createdAt)
        time(challenge.expiresAt)
        guard let resolution = challenge.resolution else { return byte(0) }
        byte(1)
        choice(resolution.status)
        byte(resolution.reason == nil ? 0 : 1)
        if let reason = resolution.reason { choice(reason) }
        optionalString(resolution.device)
        time(resolution.at)
        guard let decision = resolution.decision else { return byte(0) }
        switch decision.kind {
        case .approve(let number):
            byte(1)
            self.number(number)
        case .deny(let reason):
            byte(2)
            choice(reason)
        }
        time(decision.signedAtUnix)
        string(keepingProof ? decision.signature : "")
    }
}

extension BinaryReader {
    mutating func enrollment(of key: UserKey) throws(StoreError) -> Enrollment {
        let id = try string()
        let request = EnrollmentRequest(
            userID: key.userID, displayName: try string(), mamRestricted: try flag(), ttlSeconds: try number())
        let codeHash = try raw()
        let createdAt = try time()
        let expiresAt = try time()
        let kind: EnrollmentEnd.Kind?
        switch try byte() {
        case 0: kind = nil
        case 1: kind = .completed(deviceID: try string())
        case 2: kind = .expired
        case 3: kind = .cancelled
        default: throw damaged("an unknown end of an enrollment")
        }
        return Enrollment(
            id: id, tenantID: key.tenantID, request: request, codeHash: codeHash, createdAt: createdAt,
            expiresAt: expiresAt, end: try kind.map { kind throws(StoreError) in EnrollmentEnd(kind, at: try time()) })
    }

    mutating func device(of key: UserKey) throws(StoreError) -> Device {
        let id = try string()
        let publicKey = try raw()
        let push = PushTarget(
            provider: try choice(PushTarget.Provider.self), token: try string(), topic: try string())
        return Device(
            id: id, tenantID: key.tenantID, userID: key.userID, publicKey: publicKey, push: push,
            displayName: try string(), createdAt: try time(), lastSeenAt: try optionalTime())
    }

    mutating func request() throws(StoreError) -> ChallengeRequest {
        let requestID = try string()
        let userID = try string()
        let number = try self.number()
        let ttl = try flag() ? try self.number() : nil
        return ChallengeRequest(
            requestID: requestID, userID: userID, number: number, ttlSeconds: ttl,
            context: ChallengeContext(canonicalJSON: try string()))
    }

    mutating func challenge(
        of key: UserKey, _ format: UserStateCodec.Format, withChannel: Bool? = nil
    ) throws(StoreError) -> Challenge {
        var channel = ResultChannel.verifier
        if withChannel ?? format.hasChannels {
            let code = try number()
            let token = code == ResultChannel.cibaStoredCode ? try string() : nil
            guard let stored = ResultChannel(storedCode: code, bearerToken: token) else {
                throw damaged("an unknown channel")
            }
            channel = stored
        }
        let traceparent = format.hasTraceparents ? try optionalString() : nil
        let id = try string()
        let request = try request()
        let choices = try list { reader throws(StoreError) in try reader.number() }
        let devices = try list { reader throws(StoreError) in try reader.string() }
        let createdAt = try time()
        let expiresAt = try time()
        var resolution: Resolution?
        if try flag() {
            let status: ChallengeStatus = try choice(ChallengeStatus.self)
            guard status != .pending else { throw damaged("a resolution that leaves its challenge pending") }
            let reason: ResolutionReason? = try flag() ? try choice(ResolutionReason.self) : nil
            let device = try optionalString()
            let at = try time()
            var decision: Decision?
            switch try byte() {
            case 0: break
            case 1:
                let kind = Decision.Kind.approve(selectedNumber: try number())
                decision = Decision(kind: kind, signedAtUnix: try time(), signature: try string())
            case 2:
                let kind = Decision.Kind.deny(reason: try choice(DenyReason.self))
                decision = Decision(kind: kind, signedAtUnix: try time(), signature: try string())
            default: throw damaged("an unknown decision")
            }
            resolution = Resolution(status: status, reason: reason, device: device, decision: decision, at: at)
        }
        return Challenge(
            id: id, tenantID: key.tenantID, request: request, choices: choices, devices: devices,
            createdAt: createdAt, expiresAt: expiresAt, resolution: resolution, traceparent: traceparent,
            channel: channel)
    }
}
