// Users' states in Redis: each load and each commit of the user store is one call (see FunctionLibrary for the
// keys). A commit names the version it was decided on; Redis refuses it, writing nothing, when another instance
// committed first. Loads and commits go over several connections, a user's always over the same one: Redis reads
// at most 16 KB from a connection in one turn of its loop and fsyncs its append-only file once a turn, so a busy
// instance's commits share fewer fsyncs over several connections than queued behind one.
import Core
import Redis
import Store

/// `@unchecked Sendable`: confined to the event loop of its clients.
public final class RedisStates: @unchecked Sendable {
    /// Policies, deadlines and gauges.
    private let client: RedisClient
    /// Users' states, by partition.
    private let lanes: [RedisClient]
    /// Device id → its user, as a load through the device index found it here. A load by device then reads that
    /// user's state with a plain GET, no function call, and takes it only if it holds the device: a device serves
    /// one user at a time, and a commit changes the index with the state. Otherwise the index is read again.
    private var deviceUsers: [String: UserKey] = [:]
    /// Past this many, `deviceUsers` starts again empty: its memory stays bounded whatever devices come by.
    private let deviceUsersLimit: Int

    /// `lanes`: the connections for users' states (`client` alone when empty).
    public init(client: RedisClient, lanes: [RedisClient] = [], deviceUsersLimit: Int = 100_000) {
        self.client = client
        self.lanes = lanes.isEmpty ? [client] : lanes
        self.deviceUsersLimit = deviceUsersLimit
    }

    /// The connection a partition's users' loads and commits go over (and so a `WAIT` after one of its commits).
    public func lane(_ partition: Partition) -> RedisClient { lanes[partition.index % lanes.count] }

    /// A device's lane for a load through the device index, which names no partition: any lane will do, and the
    /// device id's hash spreads them (within this process: nothing else depends on the choice).
    private func lane(device deviceID: String) -> RedisClient {
        lanes[Int(UInt(bitPattern: deviceID.hashValue) % UInt(lanes.count))]
    }

    /// Loads the function library unless the server already has this version (or refuses, naming both, when it
    /// has a newer one: instances of a later release share this Redis).
    public static func installFunctions(
        on client: RedisClient, completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        client.send(["FCALL", "approvald_version", "0"]) { result in
            switch result {
            case .failure(let error): completion(.failure(StoreError("\(error)")))
            case .success(.integer(let installed)) where installed == FunctionLibrary.version:
                completion(.success(()))
            case .success(.integer(let installed)) where installed > FunctionLibrary.version:
                completion(
                    .failure(
                        StoreError(
                            "Redis has approvald's functions version \(installed), newer than this release's "
                                + "\(FunctionLibrary.version): upgrade this instance")))
            case .success:
                // None yet (an error reply: no such function) or an older release's.
                client.send(["FUNCTION", "LOAD", "REPLACE", FunctionLibrary.source]) { loaded in
                    switch loaded {
                    case .success(.bulk), .success(.status): completion(.success(()))
                    case .success(let other): completion(.failure(StoreError("FUNCTION LOAD answered \(other)")))
                    case .failure(let error): completion(.failure(StoreError("\(error)")))
                    }
                }
            }
        }
    }

    // MARK: Loading

    public func load(_ lookup: Lookup, completion: @escaping (Result<Loaded, StoreError>) -> Void) {
        switch lookup {
        case .user(let key):
            lane(key.partition).send(["GET", Self.stateKey(key)]) { result in
                completion(
                    Self.read(result) { value throws(StoreError) in Loaded(state: try Self.state(value, of: key)) })
            }
        case .challenge(let challengeID): loadChallenge(challengeID, completion)
        case .answer(let deviceID, let challengeID):
            load(.device(deviceID)) { [self] loaded in
                // An ended challenge is a record apart: read with the state again, which must still hold the device.
                guard case .success(let found) = loaded, let state = found.state, state.challenge(challengeID) == nil
                else { return completion(loaded) }
                loadChallenge(challengeID) { again in
                    guard case .success(let named) = again else { return completion(again) }
                    let sameUser = named.state.map { $0.key == state.key && $0.device(deviceID) != nil } ?? false
                    completion(sameUser ? again : loaded)
                }
            }
        case .device(let deviceID):
            guard let key = deviceUsers[deviceID] else { return loadThroughIndex(device: deviceID, completion) }
            lane(key.partition).send(["GET", Self.stateKey(key)]) { [self] result in
                switch Self.read(result, { value throws(StoreError) in try Self.state(value, of: key) }) {
                case .success(let state?) where state.device(deviceID) != nil:
                    completion(.success(Loaded(state: state)))
                case .success:
                    deviceUsers[deviceID] = nil
                    loadThroughIndex(device: deviceID, completion)
                case .failure(let error): completion(.failure(error))
                }
            }
        case .creation(let key, let request):
            lane(key.partition).send(["MGET", Self.stateKey(key), Self.requestKey(request)]) { result in
                completion(Self.read(result) { value throws(StoreError) in try Self.stateAndHolder(value, of: key) })
            }
        case .registration(let key, let deviceID):
            lane(key.partition).send(["MGET", Self.stateKey(key), Self.deviceKey(deviceID)]) { result in
                completion(Self.read(result) { value throws(StoreError) in try Self.stateAndHolder(value, of: key) })
            }
        case .enrollment(let enrollmentID):
            guard let partition = Partition(enrollmentID: enrollmentID) else {
                return completion(.success(Loaded(state: nil)))
            }
            lane(partition).send([
                "FCALL", "approvald_load_challenge", "1", "ap:{\(Self.tag(partition))}:ch", enrollmentID,
                Self.tag(partition),
            ]) { result in completion(Self.read(result, Self.heldState)) }
        case .activation(let codeHash, let publicKey):
            let codeKey = Self.activationKey(codeHash)
            lane(device: codeKey).send(["FCALL", "approvald_load_device", "1", codeKey]) { [self] result in
                let code = Self.read(result, Self.heldState)
                guard case .success(let found) = code else { return completion(code) }
                let keyKey = Self.publicKeyKey(publicKey)
                lane(device: keyKey).send(["FCALL", "approvald_load_device", "1", keyKey]) { result in
                    // The index is written when a device is saved and left when it goes: its user must hold the key.
                    completion(
                        Self.read(result, Self.heldState).map { held in
                            let holds = held.state?.devices.contains { $0.publicKey == publicKey } ?? false
                            return Loaded(state: found.state, heldBy: holds ? held.state?.key : nil)
                        })
                }
            }
        }
    }

    /// The state of the user whose challenge it is, holding the challenge's record if it has ended.
    private func loadChallenge(_ challengeID: String, _ completion: @escaping (Result<Loaded, StoreError>) -> Void) {
        guard let partition = Partition(challengeID: challengeID) else {
            return completion(.success(Loaded(state: nil)))
        }
        lane(partition).send([
            "FCALL", "approvald_load_challenge", "1", "ap:{\(Self.tag(partition))}:ch", challengeID,
            Self.tag(partition),
        ]) { result in
            completion(
                Self.read(result) { value throws(StoreError) in
                    var loaded = try Self.heldState(value)
                    // The record is that of the challenge's request_id, which may name a later challenge by then.
                    if case .array(let found) = value, found.count == 3, case .bulk(let bytes) = found[2],
                        var state = loaded.state, let record = try Self.holder(bytes).record
                    {
                        let ended = try UserStateCodec.decode(ended: record, of: state.key)
                        if ended.id == challengeID {
                            state.remember(ended: ended)
                            loaded = Loaded(state: state)
                        }
                    }
                    return loaded
                })
        }
    }

    private func loadThroughIndex(device deviceID: String, _ completion: @escaping (Result<Loaded, StoreError>) -> Void)
    {
        lane(device: deviceID).send(["FCALL", "approvald_load_device", "1", Self.deviceKey(deviceID)]) {
            [self] result in
            let loaded = Self.read(result, Self.heldState)
            if case .success(let found) = loaded, let state = found.state, state.device(deviceID) != nil {
                if deviceUsers.count >= deviceUsersLimit { deviceUsers.removeAll() }
                deviceUsers[deviceID] = state.key
            }
            completion(loaded)
        }
    }

    /// `{ user field, state, … }` from a load through an index, or nil when the index names no one.
    private static func heldState(_ value: RedisValue) throws(StoreError) -> Loaded {
        guard case .array(let found) = value, found.count >= 2, let field = found[0].string else {
            return Loaded(state: nil)
        }
        let key = try userKey(field: field)
        return Loaded(state: try state(found[1], of: key))
    }

    /// A create's state and who holds its request_id, with the record of that request's challenge if the holder is
    /// this user and the challenge has ended.
    private static func stateAndHolder(_ value: RedisValue, of key: UserKey) throws(StoreError) -> Loaded {
        guard case .array(let pair) = value, pair.count == 2 else { throw StoreError("MGET answered \(value)") }
        guard case .bulk(let bytes) = pair[1] else { return Loaded(state: try state(pair[0], of: key)) }
        let (holder, record) = try holder(bytes)
        var state = try state(pair[0], of: key)
        if holder == key, let record {
            state = state ?? UserState(key: key)
            state?.remember(ended: try UserStateCodec.decode(ended: record, of: key))
        }
        return Loaded(state: state, heldBy: holder)
    }

    /// The state a value holds: nil for none.
    static func state(_ value: RedisValue, of key: UserKey) throws(StoreError) -> UserState? {
        guard case .bulk(let bytes) = value else { return nil }
        var separators: [Int] = []
        for (offset, byte) in bytes.enumerated() where byte == UInt8(ascii: "|") {
            separators.append(offset)
            if separators.count == 3 { break }
        }
        guard separators.count == 3, let version = UInt64(String(decoding: bytes[..<separators[0]], as: UTF8.self))
        else { throw StoreError("the state of \(key) in Redis has no version") }
        return try UserStateCodec.decode(bytes[(separators[2] + 1)...], key: key, version: version)
    }

    // MARK: Committing

    /// Commits `state` (decided on its version) with the index changes its `changes` imply and the callbacks that
    /// join the outbox with it, in one atomic call.
    /// `deliveries` are published where they belong; `completion` gets, for a durable commit, those this instance
    /// delivers itself.
    public func commit(
        _ state: UserState, _ changes: [Change], enqueue callbacks: [OutboxEntry], deliveries: [Delivery] = [],
        by instanceID: String = "", completion: @escaping (CommitResult, _ deliverHere: [Delivery]) -> Void
    ) {
        let key = state.key
        let partition = key.partition
        let field = Self.field(key)
        let holder = "\(Self.tag(partition))|\(field)"
        var arguments = [
            "FCALL", "approvald_commit", "6", Self.stateKey(key), "ap:{\(Self.tag(partition))}:due",
            Self.gaugesKey, "ap:{\(Self.tag(partition))}:ch", RedisOutbox.outboxKey(partition),
            RedisOutbox.dueKey(partition), String(state.version),
        ].map { Array($0.utf8) }
        arguments.append(dropsOnCommit(state) ? [] : Self.value(of: state, version: state.version + 1))
        arguments.append(Array(field.utf8))
        let deadline = deadline(of: state)
        let indexed = state.indexedDeadline.map(String.init) ?? ""
        arguments.append(Array("\(deadline.map(String.init) ?? "")|\(indexed)".utf8))
        arguments.append(Array(key.tenantID.utf8))
        arguments.append(Array(instanceID.utf8))
        arguments.append(Array(String(deliveries.count).utf8))
        for delivery in deliveries {
            let (kind, target) = Self.target(of: delivery)
            arguments += [Array(kind.utf8), Array(target.utf8), DeliveryCodec.encode(delivery)]
        }
        func index(_ op: String, _ name: String, _ value: String = "") {
            arguments += [Array(op.utf8), Array(name.utf8), Array(value.utf8)]
        }
        for change in changes {
            switch change {
            case .deviceSaved(let device):
                index("S", Self.deviceKey(device.id), holder)
                index("S", Self.publicKeyKey(device.publicKey), holder)
            case .deviceRemoved(let device):
                index("D", Self.deviceKey(device.id))
                index("D", Self.publicKeyKey(device.publicKey))
            // Both indexes are written when the challenge is created, the request_id's to last while it may be
            // pending (it ends by its expiry at the latest); kept apart, both again with its record when it ends.
            case .challengeSaved(let challenge) where challenge.resolution == nil:
                index("H", challenge.id, field)
                index(
                    "E", Self.requestKey(RequestKey(tenantID: key.tenantID, requestID: challenge.request.requestID)),
                    "\(challenge.expiresAt + Self.indexGraceMillis)|\(holder)")
            case .fallbackSaved(let fallback):
                index(
                    "E", Self.requestKey(RequestKey(tenantID: key.tenantID, requestID: fallback.request.requestID)),
                    "\(fallback.decidedAt + Self.indexGraceMillis)|\(holder)")
            case .forgotten(let request, let challengeID):
                index("D", Self.requestKey(request))
                if let challengeID { index("h", challengeID) }
            // An enrollment's indexes are written when it is created and last until it is forgotten: its id in the
            // partition's hash, its code's key until the latest it may be forgotten (expiry, then the window).
            case .enrollmentSaved(let enrollment) where enrollment.isPending:
                index("H", enrollment.id, field)
                index(
                    "E", Self.activationKey(enrollment.codeHash),
                    "\(enrollment.expiresAt + Self.indexGraceMillis)|\(holder)")
            case .enrollmentForgotten(let enrollment):
                index("h", enrollment.id)
                index("D", Self.activationKey(enrollment.codeHash))
            case .deviceUpdated, .challengeSaved, .enrollmentSaved, .policySaved, .lockoutSaved, .resultDue,
                .fallbackResultDue:
                break
            }
        }
        // Every ended challenge the state holds becomes a record of its own: those that ended in this commit, and
        // those a state of format 1 or 2 held (written before 0.17.0, read as they are until their user's next
        // commit).
        for ended in state.ended {
            let challenge = ended.challenge
            guard let resolution = challenge.resolution else { continue }
            arguments += [
                Array("R".utf8), Array(challenge.id.utf8),
                Array("\(resolution.at + Rules.rememberMillis)|\(challenge.request.requestID)|".utf8)
                    + UserStateCodec.encode(ended: challenge),
            ]
        }
        for callback in callbacks { index("O", callback.challengeID, RedisOutbox.value(of: callback)) }
        lane(partition).send(arguments) { result in
            switch result {
            case .success(.array(let reply)) where reply.count == 2 && reply[0] == .integer(1):
                let here = Array(reply[1].string?.utf8 ?? "".utf8)
                guard here.count == deliveries.count else {
                    return completion(.failed(StoreError("Redis answered a commit with \(reply)")), [])
                }
                completion(.durable, zip(deliveries, here).compactMap { $1 == UInt8(ascii: "1") ? $0 : nil })
            case .success(.integer(0)): completion(.stale, [])
            case .success(let other): completion(.failed(StoreError("Redis refused a commit: \(other)")), [])
            case .failure(let error): completion(.failed(StoreError("\(error)")), [])
            }
        }
    }

    /// Whether a commit of `state` deletes it. Ended challenges kept apart are records that expire by themselves:
    /// they keep no state.
    private func dropsOnCommit(_ state: UserState) -> Bool {
        state.isEmptyBesidesEnded
    }

    /// The deadline a commit of `state` puts in the due set: nil when the commit deletes the state. Ended challenges
    /// kept apart set none: their keys expire by themselves.
    public func deadline(of state: UserState) -> UnixMillis? {
        dropsOnCommit(state) ? nil : state.nextDeadline(includingEnded: false)
    }

    /// How long a `request_id`'s index outlives the end of its challenge or fallback: the remembering window and a
    /// minute, so that the sweep forgets it first and an index no sweep forgot still goes.
    static let indexGraceMillis = Rules.rememberMillis + 60_000

    /// Where a delivery goes: the device's stream ('d') or the challenge's long polls ('c').
    private static func target(of delivery: Delivery) -> (String, String) {
        switch delivery {
        case .queued(_, let device): ("d", device.id)
        case .unqueued(_, let deviceID, _), .deviceRemoved(let deviceID): ("d", deviceID)
        case .ended(let challenge): ("c", challenge.id)
        case .enrollmentEnded(let enrollment): ("c", enrollment.id)
        }
    }

    /// "<version>|<pending>|<queue entries>|" and the state's bytes: the function reads the counts for the gauges.
    static func value(of state: UserState, version: UInt64) -> [UInt8] {
        Array("\(version)|\(state.pendingCount)|\(state.queue.count)|".utf8) + UserStateCodec.encode(state)
    }

    // MARK: Policies

    /// The hash of stored policies (a PUT), tenant → PolicyCodec's bytes, and the channel a save is announced on so
    /// that every instance reads it again.
    static let policiesKey = "ap:policies"
    public static let policiesChannel = "ap:policies"

    /// Stores a tenant's policy and tells the other instances (they read the policies again on the message).
    public func savePolicy(
        _ policy: TenantPolicy, for tenantID: String, completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        client.send([
            Array("HSET".utf8), Array(Self.policiesKey.utf8), Array(tenantID.utf8), PolicyCodec.encode(policy),
        ]) {
            [client] saved in
            switch saved {
            case .success(.integer):
                client.send(["PUBLISH", Self.policiesChannel, tenantID]) { _ in completion(.success(())) }
            case .success(let other): completion(.failure(StoreError("Redis refused a policy: \(other)")))
            case .failure(let error): completion(.failure(StoreError("\(error)")))
            }
        }
    }

    /// Every stored policy.
    public func loadPolicies(completion: @escaping (Result<[String: TenantPolicy], StoreError>) -> Void) {
        client.send(["HGETALL", Self.policiesKey]) { result in
            switch result {
            case .success(.array(let pairs)):
                var policies: [String: TenantPolicy] = [:]
                do throws(StoreError) {
                    for index in stride(from: 0, to: pairs.count - 1, by: 2) {
                        guard let tenantID = pairs[index].string, case .bulk(let bytes) = pairs[index + 1] else {
                            throw StoreError("ap:policies holds \(pairs[index])")
                        }
                        policies[tenantID] = try PolicyCodec.decode(bytes[...], tenantID: tenantID)
                    }
                    completion(.success(policies))
                } catch {
                    completion(.failure(error))
                }
            case .success(let other): completion(.failure(StoreError("HGETALL answered \(other)")))
            case .failure(let error): completion(.failure(StoreError("\(error)")))
            }
        }
    }

    // MARK: Deadlines and gauges

    /// Users of these partitions whose next deadline is due at `now`, at most `limit` a partition: one call. A user
    /// stays due until a commit moves its deadline, so two instances that sweep one partition both see it; the
    /// version check lets only one commit.
    public func dueUsers(
        in partitions: [Partition], now: UnixMillis, limit: Int = 100,
        completion: @escaping (Result<[UserKey], StoreError>) -> Void
    ) {
        // Every partition is named by none.
        let tags = partitions.count == Partition.count ? [] : partitions.map(Self.tag)
        client.send(["FCALL", "approvald_due_users", "0", String(now), String(limit)] + tags) { result in
            completion(
                Self.read(result) { value throws(StoreError) in
                    guard case .array(let fields) = value else { throw StoreError("due users: \(value)") }
                    return try fields.map { field throws(StoreError) in
                        guard let text = field.string else { throw StoreError("a due user: \(field)") }
                        return try Self.userKey(field: text)
                    }
                })
        }
    }

    /// The shared figures every instance reports alike.
    public func gauges(completion: @escaping (Result<Gauges, StoreError>) -> Void) {
        client.send(["FCALL", "approvald_gauges", "0"]) { result in
            completion(
                Self.read(result) { value throws(StoreError) in
                    guard case .array(let pairs) = value else { throw StoreError("gauges: \(value)") }
                    var gauges = Gauges()
                    for index in stride(from: 0, to: pairs.count - 1, by: 2) {
                        guard let name = pairs[index].string, let value = pairs[index + 1].string.flatMap({ Int($0) })
                        else { throw StoreError("the gauges hold \(pairs[index]) = \(pairs[index + 1])") }
                        switch name {
                        case "pending": gauges.pendingChallenges = value
                        case "queue": gauges.queueDepth = value
                        case "out": gauges.forwardQueueDepth = value
                        default:
                            guard name.hasPrefix("q:"), value != 0 else { continue }
                            gauges.queueDepthByTenant[String(name.dropFirst(2))] = value
                        }
                    }
                    return gauges
                })
        }
    }

    /// A reply read by `parse`, or the error that came instead.
    static func read<Value>(
        _ result: Result<RedisValue, RedisError>, _ parse: (RedisValue) throws(StoreError) -> Value
    ) -> Result<Value, StoreError> {
        switch result {
        case .failure(let error): return .failure(StoreError("\(error)"))
        case .success(.error(let message)): return .failure(StoreError("Redis refused: \(message)"))
        case .success(let value):
            do throws(StoreError) { return .success(try parse(value)) } catch { return .failure(error) }
        }
    }

    // MARK: Keys

    static func tag(_ partition: Partition) -> String {
        let digits = String(partition.index)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// The shared figures every commit keeps (see FunctionLibrary).
    static let gaugesKey = "ap:gauges"
    static func field(_ key: UserKey) -> String { key.tenantID + "\n" + key.userID }
    static func stateKey(_ key: UserKey) -> String { "ap:{\(tag(key.partition))}:u:\(field(key))" }
    static func deviceKey(_ deviceID: String) -> String { "ap:dev:\(deviceID)" }
    static func requestKey(_ request: RequestKey) -> String { "ap:req:\(request.tenantID)\n\(request.requestID)" }
    /// An enrollment's activation code, by the hex of its SHA-256.
    static func activationKey(_ codeHash: [UInt8]) -> String { "ap:act:" + hex(codeHash) }
    /// A device's public key, by the hex of its DER SPKI: the user it was last saved to.
    static func publicKeyKey(_ publicKey: [UInt8]) -> String { "ap:key:" + hex(publicKey) }

    private static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
    }

    static func userKey(field: String) throws(StoreError) -> UserKey {
        guard let newline = field.firstIndex(of: "\n") else { throw StoreError("a user field without a tenant") }
        return UserKey(
            tenantID: String(field[..<newline]), userID: String(field[field.index(after: newline)...]))
    }

    /// From "<partition>|<tenant>\n<user>", and then "\n<record>" once the request's challenge has ended.
    static func holder(_ bytes: [UInt8]) throws(StoreError) -> (key: UserKey, record: ArraySlice<UInt8>?) {
        guard let bar = bytes.firstIndex(of: UInt8(ascii: "|")),
            let tenantEnd = bytes[(bar + 1)...].firstIndex(of: UInt8(ascii: "\n"))
        else { throw StoreError("an index entry without a partition or a tenant") }
        let userEnd = bytes[(tenantEnd + 1)...].firstIndex(of: UInt8(ascii: "\n"))
        let key = UserKey(
            tenantID: String(decoding: bytes[(bar + 1)..<tenantEnd], as: UTF8.self),
            userID: String(decoding: bytes[(tenantEnd + 1)..<(userEnd ?? bytes.endIndex)], as: UTF8.self))
        return (key, userEnd.map { bytes[($0 + 1)...] })
    }
}
