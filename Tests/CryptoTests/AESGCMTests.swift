// AES-256-GCM: the known answer of the GCM specification's test case 16 (McGrew and Viega; also checked with
// Python's cryptography), a round trip with and without associated data, and every kind of tampering refused.
import Crypto
import Testing

@Suite struct AESGCMTests {
    static func hex(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    static let key = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")

    @Test func theSpecificationsTestCase16Opens() {
        let sealed = Self.hex(
            "cafebabefacedbaddecaf888"
                + "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838"
                + "c5f61e6393ba7a0abcc9f662" + "76fc6ece0f4e1768cddf8853bb2d551b")
        let data = Self.hex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
        #expect(
            AESGCM.open(sealed, key: Self.key, associatedData: data)
                == Self.hex(
                    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
                        + "b16aedf5aa0de657ba637b39"))
        #expect(AESGCM.open(sealed, key: Self.key) == nil, "without its associated data")
    }

    @Test(arguments: [0, 1, 31, 1000])
    func whatIsSealedOpensAndNothingAlteredDoes(length: Int) throws {
        let plaintext = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let sealed = try AESGCM.seal(plaintext, key: Self.key, associatedData: Array("purpose".utf8))
        #expect(sealed.count == 12 + length + 16)
        #expect(AESGCM.open(sealed, key: Self.key, associatedData: Array("purpose".utf8)) == plaintext)
        // A fresh nonce each time: the same plaintext never seals alike.
        #expect(try AESGCM.seal(plaintext, key: Self.key, associatedData: Array("purpose".utf8)) != sealed)
        for index in [0, 11, 12, sealed.count - 17, sealed.count - 1] where index >= 0 && index < sealed.count {
            var altered = sealed
            altered[index] ^= 0x01
            #expect(AESGCM.open(altered, key: Self.key, associatedData: Array("purpose".utf8)) == nil)
        }
        #expect(AESGCM.open(sealed, key: Self.key, associatedData: Array("other".utf8)) == nil)
        #expect(
            AESGCM.open(sealed, key: [UInt8](repeating: 1, count: 32), associatedData: Array("purpose".utf8)) == nil)
        #expect(AESGCM.open(Array(sealed.prefix(27)), key: Self.key, associatedData: Array("purpose".utf8)) == nil)
    }
}
