// The Approvald-Signature header as API.md defines it, checked against an independent computation.
import Crypto
import Foundation
import Testing

@testable import Service

@Suite struct SignatureTests {
    @Test func theHeaderCarriesKeyTimeAndTheHexMACOfTheMessage() {
        let secret = Array("a secret of at least thirty-two bytes, for tests".utf8)
        let body = Array(#"{"request_id":"r"}"#.utf8)
        let header = approvaldSignature(
            keyID: "k-2026", key: HMACSHA256.Key(secret), time: 1_795_600_000, method: "POST",
            path: "/v1/tenants/contoso/challenges?x=1", body: body)
        let mac = HMACSHA256.authenticationCode(
            key: secret, message: Array("1795600000\nPOST\n/v1/tenants/contoso/challenges?x=1\n".utf8) + body)
        #expect(header == "key=k-2026, t=1795600000, v1=\(mac.map { String(format: "%02x", $0) }.joined())")
        #expect(lowercaseHex([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff" && lowercaseHex([]) == "")
    }

    @Test func headerParametersAreFoundByName() {
        #expect(parameters("key=k, t=17, v1=ab", "key", "t", "v1") == ["k", "17", "ab"])
        #expect(parameters("v1=ab,t=17", "key", "t", "v1") == [nil, "17", "ab"])
        #expect(parameters("t=1, t=2, x, =3, key=", "key", "t") == ["", "2"])
        #expect(parameters("", "t") == [nil])
    }
}
