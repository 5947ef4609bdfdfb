// Users hash into a fixed number of partitions: the unit in which deadlines, the outbox and (with many instances)
// leases are kept, so that one partition's data can live together and move as a whole.

/// A user in a tenant: the key of one aggregate.
public struct UserKey: Hashable, Sendable, CustomStringConvertible {
    public let tenantID: String
    public let userID: String

    public init(tenantID: String, userID: String) {
        self.tenantID = tenantID
        self.userID = userID
    }

    public var partition: Partition { Partition(of: self) }
    public var description: String { "\(tenantID)/\(userID)" }
}

/// A `request_id` in its tenant: the idempotency key of a create.
public struct RequestKey: Hashable, Sendable {
    public let tenantID: String
    public let requestID: String

    public init(tenantID: String, requestID: String) {
        self.tenantID = tenantID
        self.requestID = requestID
    }
}

public struct Partition: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let count = 1024
    /// 0 ..< `count`.
    public let index: Int

    public init(_ index: Int) {
        precondition((0..<Self.count).contains(index), "partition out of range")
        self.index = index
    }

    /// FNV-1a (32 bits) over the tenant, a zero byte and the user, folded to 10 bits: the same in every process and
    /// every release (Swift's `Hasher` is seeded per process, so it cannot place data that outlives one).
    public init(of user: UserKey) {
        var hash: UInt32 = 2_166_136_261
        func mix(_ byte: UInt8) {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        for byte in user.tenantID.utf8 { mix(byte) }
        mix(0)
        for byte in user.userID.utf8 { mix(byte) }
        index = Int((hash ^ (hash >> 16)) % UInt32(Self.count))
    }

    /// The partition a challenge id names in its first two characters after `ch_` (see `PartitionedID`); nil for a
    /// string that is not a challenge id.
    public init?(challengeID: String) {
        guard let index = PartitionedID.partitionIndex(challengeID, .challenge) else { return nil }
        self.index = index
    }

    /// The partition an enrollment id names (see `PartitionedID`); nil for a string that is not an enrollment id.
    public init?(enrollmentID: String) {
        guard let index = PartitionedID.partitionIndex(enrollmentID, .enrollment) else { return nil }
        self.index = index
    }

    public static func < (lhs: Partition, rhs: Partition) -> Bool { lhs.index < rhs.index }
    public static var all: [Partition] { (0..<count).map(Partition.init) }
    public var description: String { "p\(index)" }
}

/// Ids that name their user's partition: a prefix (`ch_` a challenge, `en_` an enrollment) and 22 base64url
/// characters, the first two carrying the partition (10 bits) and 2 random bits, the other 20 holding 120 random bits
/// from the injected generator.
///
/// Challenge ids made before partitions existed have 22 random characters; their first two name an arbitrary
/// partition, so stores find such a challenge through their index, never by its id alone.
public enum PartitionedID {
    public enum Kind: Sendable {
        case challenge
        case enrollment

        fileprivate var prefix: (UInt8, UInt8) {
            switch self {
            case .challenge: (UInt8(ascii: "c"), UInt8(ascii: "h"))
            case .enrollment: (UInt8(ascii: "e"), UInt8(ascii: "n"))
            }
        }
    }

    static func make<Random: RandomNumberGenerator>(
        _ kind: Kind, in partition: Partition, using random: inout Random
    ) -> String {
        String(unsafeUninitializedCapacity: 25) { buffer in
            (buffer[0], buffer[1]) = kind.prefix
            buffer[2] = UInt8(ascii: "_")
            let spare = Int(random.next() & 3)
            let head = partition.index << 2 | spare
            buffer[3] = alphabet[head >> 6]
            buffer[4] = alphabet[head & 63]
            var bits: UInt64 = 0
            for index in 0..<20 {
                if index % 10 == 0 { bits = random.next() }
                buffer[5 + index] = alphabet[Int(bits & 63)]
                bits >>= 6
            }
            return 25
        }
    }

    static func partitionIndex(_ id: String, _ kind: Kind) -> Int? {
        let bytes = Array(id.utf8.prefix(25))
        guard id.utf8.count == 25, (bytes[0], bytes[1]) == kind.prefix, bytes[2] == UInt8(ascii: "_"),
            let high = value[bytes[3]], let low = value[bytes[4]], bytes[5...].allSatisfy({ value[$0] != nil })
        else { return nil }
        return (high << 6 | low) >> 2
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let value: [UInt8: Int] = Dictionary(
        uniqueKeysWithValues: alphabet.enumerated().map { ($0.element, $0.offset) })
}
