// SHA-256 and HMAC-SHA256 against published vectors (FIPS 180-2 examples, RFC 4231), and constant-time equality.
import Crypto
import TestSupport
import Testing

func hexString(_ bytes: [UInt8]) -> String { bytes.map { String(format2: $0) }.joined() }

extension String {
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }
}

@Suite struct SHA256Tests {
    @Test func publishedVectors() {
        #expect(hexString(SHA256.hash("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hexString(SHA256.hash("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            hexString(SHA256.hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            hexString(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}

@Suite struct HMACTests {
    /// RFC 4231 §4.2–4.8, HMAC-SHA-256 results (test 5 is truncated to 128 bits there).
    static let vectors: [(key: [UInt8], data: [UInt8], mac: String, truncated: Bool)] = [
        (
            [UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", false
        ),
        (
            Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", false
        ),
        (
            [UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", false
        ),
        (
            hex("0102030405060708090a0b0c0d0e0f10111213141516171819"), [UInt8](repeating: 0xcd, count: 50),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", false
        ),
        (
            [UInt8](repeating: 0x0c, count: 20), Array("Test With Truncation".utf8),
            "a3b6167473100ee06e0c796c2955552b", true
        ),
        (
            [UInt8](repeating: 0xaa, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", false
        ),
        (
            [UInt8](repeating: 0xaa, count: 131),
            Array(
                ("This is a test using a larger than block-size key and a larger than block-size data. The key "
                    + "needs to be hashed before being used by the HMAC algorithm.").utf8),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", false
        ),
    ]

    @Test(arguments: 0..<vectors.count) func rfc4231(_ index: Int) {
        let vector = Self.vectors[index]
        let mac = HMACSHA256.authenticationCode(key: vector.key, message: vector.data)
        let expected = hex(vector.mac)
        let prepared = HMACSHA256.Key(vector.key).authenticationCode(for: vector.data)
        #expect(prepared == mac)
        if vector.truncated {
            #expect(Array(mac.prefix(expected.count)) == expected)
        } else {
            #expect(mac == expected)
            #expect(HMACSHA256.isValid(expected, key: vector.key, message: vector.data))
        }
    }

    @Test func rejectsAlteredCodesKeysAndMessages() {
        let key = Array("a secret of at least thirty-two bytes!!".utf8)
        let mac = HMACSHA256.authenticationCode(key: key, message: "message")
        #expect(HMACSHA256.isValid(mac, key: key, message: "message"))
        #expect(!HMACSHA256.isValid(mac, key: key, message: "messagE"))
        #expect(!HMACSHA256.isValid(mac, key: key + [1], message: "message"))
        var flipped = mac
        flipped[31] ^= 1
        #expect(!HMACSHA256.isValid(flipped, key: key, message: "message"))
        #expect(!HMACSHA256.isValid(Array(mac.prefix(16)), key: key, message: "message"))
        #expect(!HMACSHA256.isValid([], key: key, message: "message"))
        // The prepared key, many times over: its states are not consumed by use.
        let prepared = HMACSHA256.Key(key)
        for _ in 0..<3 {
            #expect(prepared.isValid(mac, for: "message"))
            #expect(!prepared.isValid(mac, for: "messagE"))
            #expect(!prepared.isValid(flipped, for: "message"))
        }
    }

    @Test func constantTimeEqualsComparesWholeStrings() {
        #expect(constantTimeEquals([], []))
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(!constantTimeEquals([9, 2, 3], [1, 2, 3]))
    }
}
