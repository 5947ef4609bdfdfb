// A delivery as the bytes of an instance inbox message: the instance that committed it publishes it to the instance
// that holds the device's stream or the challenge's long poll, which delivers it as if committed there. Same rules
// as UserStateCodec: a format byte (its formats: 2 when the challenge has a traceparent, otherwise 1, which the
// release before reads), enumerations by position, damaged bytes an error. A challenge's end travels as its id
// alone (`ended`): every commit that ends a challenge carries the message to Redis, where few find a long poll
// elsewhere to publish it to, and the instance with one reads the challenge then.
import Core
import Store

/// What an inbox message asks of the instance that gets it.
enum InboxMessage: Equatable {
    case delivery(Delivery)
    /// The challenge ended: answer its long polls with it, read from the store.
    case ended(challengeID: String)
    /// The enrollment ended: answer its long polls with it, read from the store.
    case enrollmentEnded(enrollmentID: String)
}

enum DeliveryCodec {

    private enum Kind: UInt8 {
        case queued = 1
        case unqueued = 2
        // 3 was a whole ended challenge, which releases before 0.14.0 sent instead of `ended`.
        case deviceRemoved = 4
        case ended = 5
        /// Instances of 0.19 and before refuse it (logged and dropped): their long polls of an enrollment, which they
        /// do not serve, are none.
        case enrollmentEnded = 6
    }

    static func encode(_ delivery: Delivery) -> [UInt8] {
        var out = BinaryWriter()
        let format: UserStateCodec.Format
        switch delivery {
        case .queued(let challenge, _):
            format = challenge.traceparent == nil ? .original : .traceparents
        case .unqueued, .ended, .deviceRemoved, .enrollmentEnded: format = .original
        }
        out.byte(format.rawValue)
        switch delivery {
        case .queued(let challenge, let device):
            out.byte(Kind.queued.rawValue)
            out.user(challenge.user)
            out.challenge(challenge, format)
            out.device(device)
        case .unqueued(let challengeID, let deviceID, let outcome):
            out.byte(Kind.unqueued.rawValue)
            out.string(challengeID)
            out.string(deviceID)
            out.choice(outcome)
        case .ended(let challenge):
            out.byte(Kind.ended.rawValue)
            out.string(challenge.id)
        case .deviceRemoved(let deviceID):
            out.byte(Kind.deviceRemoved.rawValue)
            out.string(deviceID)
        case .enrollmentEnded(let enrollment):
            out.byte(Kind.enrollmentEnded.rawValue)
            out.string(enrollment.id)
        }
        return out.bytes
    }

    static func decode(_ bytes: ArraySlice<UInt8>) throws(StoreError) -> InboxMessage {
        var input = BinaryReader(bytes: bytes, subject: "an inbox message")
        guard let format = UserStateCodec.Format(rawValue: try input.byte()) else {
            throw input.damaged("an unknown format")
        }
        let message: InboxMessage
        switch Kind(rawValue: try input.byte()) {
        case .queued:
            let key = try input.user()
            message = .delivery(.queued(try input.challenge(of: key, format), try input.device(of: key)))
        case .unqueued:
            message = .delivery(
                .unqueued(
                    challengeID: try input.string(), deviceID: try input.string(),
                    outcome: try input.choice(DeviceOutcome.self)))
        case .deviceRemoved: message = .delivery(.deviceRemoved(deviceID: try input.string()))
        case .ended: message = .ended(challengeID: try input.string())
        case .enrollmentEnded: message = .enrollmentEnded(enrollmentID: try input.string())
        case nil: throw input.damaged("an unknown kind of delivery")
        }
        guard input.isAtEnd else { throw input.damaged("bytes after the end") }
        return message
    }
}

extension BinaryWriter {
    fileprivate mutating func user(_ key: UserKey) {
        string(key.tenantID)
        string(key.userID)
    }
}

extension BinaryReader {
    fileprivate mutating func user() throws(StoreError) -> UserKey {
        UserKey(tenantID: try string(), userID: try string())
    }
}
