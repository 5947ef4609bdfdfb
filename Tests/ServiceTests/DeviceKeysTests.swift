// The cache of parsed device keys: one parse per device, the device's current key only, the oldest forgotten.
import Core
import Crypto
import Testing

@testable import Service

@Suite struct DeviceKeysTests {
    private static func device(_ id: String, _ key: P256PrivateKey) -> Device {
        Device(
            id: id, tenantID: "t", userID: "u-\(id)", publicKey: key.spkiDER, push: .none, displayName: "",
            createdAt: 0)
    }

    @Test func parsesADevicesKeyOnceAndChecksWithIt() throws {
        let privateKey = try P256PrivateKey()
        let keys = DeviceKeys(capacity: 4)
        let first = try #require(keys.key(of: Self.device("d1", privateKey)))
        let again = try #require(keys.key(of: Self.device("d1", privateKey)))
        #expect(first === again)
        let message = Array("decision".utf8)
        #expect(again.isValidSignature(try privateKey.signature(for: message), for: message))
    }

    @Test func aDeviceRegisteredAgainWithANewKeyIsNeverCheckedAgainstItsOldOne() throws {
        let old = try P256PrivateKey()
        let new = try P256PrivateKey()
        let keys = DeviceKeys(capacity: 4)
        _ = keys.key(of: Self.device("d1", old))
        let current = try #require(keys.key(of: Self.device("d1", new)))
        let message = Array("decision".utf8)
        #expect(current.isValidSignature(try new.signature(for: message), for: message))
        #expect(!current.isValidSignature(try old.signature(for: message), for: message))
        #expect(keys.count == 1)
    }

    @Test func forgetsTheOldestBeyondItsCapacity() throws {
        let privateKey = try P256PrivateKey()
        let keys = DeviceKeys(capacity: 2)
        let d1 = try #require(keys.key(of: Self.device("d1", privateKey)))
        let d2 = try #require(keys.key(of: Self.device("d2", privateKey)))
        _ = keys.key(of: Self.device("d3", privateKey))
        #expect(keys.count == 2)
        #expect(keys.key(of: Self.device("d2", privateKey)) === d2)
        #expect(keys.key(of: Self.device("d1", privateKey)) !== d1)  // parsed again: d1 was the oldest
        #expect(keys.count == 2)
    }

    @Test func aStoredKeyThatDoesNotParseHasNone() {
        let keys = DeviceKeys(capacity: 2)
        let broken = Device(
            id: "d1", tenantID: "t", userID: "u", publicKey: [0x30, 0x00], push: .none, displayName: "", createdAt: 0)
        #expect(keys.key(of: broken) == nil)
        #expect(keys.count == 0)
    }
}
