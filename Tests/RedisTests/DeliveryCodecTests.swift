// An inbox message carries a delivery from the instance that committed it to the one holding the stream or long
// poll: every kind comes back as it was (a challenge's end as its id), and damaged bytes, or a kind no release
// since 0.14.0 sends, are an error, never a crash or a wrong delivery.
import Core
import Store
import TestSupport
import Testing

@testable import RedisStore

@Suite struct DeliveryCodecTests {
    /// One delivery of each kind, with challenges and devices as the rules made them (context, push target, an
    /// ended challenge with its resolution).
    static func everyKind() throws -> [Delivery] {
        let state = try UserStateCodecTests.eventfulState()
        let pending = try #require(state.pending.first)
        let ended = try #require(state.ended.first?.challenge)
        let device = try #require(state.devices.first { $0.push.provider == .apns })
        return [
            .queued(pending, device),
            .ended(ended),
            .deviceRemoved(deviceID: device.id),
            .enrollmentEnded(try UserStateCodecTests.enrollment(ended: true)),
        ] + DeviceOutcome.allCases.map { .unqueued(challengeID: pending.id, deviceID: device.id, outcome: $0) }
    }

    @Test func everyKindComesBackAsItWasAndAnEndAsItsID() throws {
        for delivery in try Self.everyKind() {
            let expected: InboxMessage
            if case .ended(let challenge) = delivery {
                expected = .ended(challengeID: challenge.id)
            } else if case .enrollmentEnded(let enrollment) = delivery {
                expected = .enrollmentEnded(enrollmentID: enrollment.id)
            } else {
                expected = .delivery(delivery)
            }
            #expect(try DeliveryCodec.decode(DeliveryCodec.encode(delivery)[...]) == expected)
        }
    }

    /// Releases before 0.14.0 published a challenge's end with the whole challenge (kind 3): the oldest release an
    /// instance may run beside (0.17.0) never does, and such a message is refused, not misread.
    @Test func anEndAsReleasesBefore0_14SentItIsRefused() throws {
        let state = try UserStateCodecTests.eventfulState()
        let challenge = try #require(state.ended.first?.challenge)
        var out = BinaryWriter()
        out.byte(UserStateCodec.Format.original.rawValue)
        out.byte(3)
        out.string(challenge.tenantID)
        out.string(challenge.user.userID)
        out.challenge(challenge, .original)
        #expect {
            try DeliveryCodec.decode(out.bytes[...])
        } throws: { error in "\(error)".contains("an unknown kind of delivery") }
    }

    @Test func damagedMessagesAreRefused() throws {
        var random = SeededRandom(seed: 11)
        for delivery in try Self.everyKind() {
            let bytes = DeliveryCodec.encode(delivery)
            for length in 0..<bytes.count {
                #expect(throws: StoreError.self) { try DeliveryCodec.decode(bytes[..<length]) }
            }
            #expect {
                try DeliveryCodec.decode((bytes + [0])[...])
            } throws: { error in "\(error)".contains("bytes after the end") }
            var unknownFormat = bytes
            unknownFormat[0] = 99
            #expect {
                try DeliveryCodec.decode(unknownFormat[...])
            } throws: { error in "\(error)".contains("an unknown format") }
            var unknownKind = bytes
            unknownKind[1] = 99
            #expect {
                try DeliveryCodec.decode(unknownKind[...])
            } throws: { error in "\(error)".contains("an unknown kind of delivery") }
            // Random damage: an error or some delivery, never a crash.
            for _ in 0..<500 {
                var damaged = bytes
                damaged[Int.random(in: 0..<damaged.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                _ = try? DeliveryCodec.decode(damaged[...])
            }
        }
    }
}
