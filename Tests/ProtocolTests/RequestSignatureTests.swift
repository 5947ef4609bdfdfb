// Both signing schemes and the signed answer as API.md defines them, checked against independent computations.
import Crypto
import Foundation
import JSONText
import Protocol
import Testing

@Suite struct RequestSignatureTests {
    @Test func theHeaderCarriesKeyTimeAndTheHexMACOfTheMessage() {
        let secret = Array("a secret of at least thirty-two bytes, for tests".utf8)
        let body = Array(#"{"request_id":"r"}"#.utf8)
        let header = IdPSignature.header(
            keyID: "k-2026", key: HMACSHA256.Key(secret), time: 1_795_600_000, method: "POST",
            path: "/v1/tenants/contoso/challenges?x=1", body: body)
        let mac = HMACSHA256.authenticationCode(
            key: secret, message: Array("1795600000\nPOST\n/v1/tenants/contoso/challenges?x=1\n".utf8) + body)
        #expect(header == "key=k-2026, t=1795600000, v1=\(mac.map { String(format: "%02x", $0) }.joined())")
        #expect(lowercaseHex([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff" && lowercaseHex([]) == "")
    }

    @Test func headerParametersAreFoundByName() {
        #expect(headerParameters("key=k, t=17, v1=ab", "key", "t", "v1") == ["k", "17", "ab"])
        #expect(headerParameters("v1=ab,t=17", "key", "t", "v1") == [nil, "17", "ab"])
        #expect(headerParameters("t=1, t=2, x, =3, key=", "key", "t") == ["", "2"])
        #expect(headerParameters("", "t") == [nil])
    }

    @Test func anIdPHeaderParsesBackToWhatWasSigned() throws {
        let key = HMACSHA256.Key(Array("a secret of at least thirty-two bytes, for tests".utf8))
        let header = IdPSignature.header(keyID: "k", key: key, time: 17, method: "GET", path: "/p", body: [])
        let fields = try #require(IdPSignature.parse(header))
        #expect(fields.keyID == "k" && fields.time == "17" && fields.seconds == 17)
        #expect(key.isValid(fields.mac, for: signedMessage(time: fields.time, method: "GET", path: "/p", body: [])))
        for malformed in ["key=k, t=17", "key=k, t=x, v1=ab", "key=k, t=17, v1=abc", "key=k, t=17, v1=zz", ""] {
            #expect(IdPSignature.parse(malformed) == nil, "\(malformed)")
        }
    }

    @Test func aDeviceHeaderCarriesASignatureOfTheMessage() throws {
        let key = try P256PrivateKey()
        let header = try DeviceSignature.header(
            device: "phone-1", time: 1_795_600_000, method: "GET", path: "/q", sign: key.signature(for:))
        #expect(header.hasPrefix("Approvald-Device device=phone-1, t=1795600000, sig="))
        #expect(DeviceSignature.claimedDevice(header) == "phone-1")
        let fields = try #require(DeviceSignature.parse(header))
        let message = Array("1795600000\nGET\n/q\n".utf8)
        #expect(try P256PublicKey(spkiDER: key.spkiDER).isValidSignature(fields.signature, for: message))
        #expect(DeviceSignature.claimedDevice("Bearer device=phone-1") == nil)
        #expect(DeviceSignature.parse("Approvald-Device device=p, t=1, sig=not base64url!") == nil)
    }

    @Test func anAnswerSignsTheDecisionStringOfTheChallengeItAnswers() throws {
        let key = try P256PrivateKey()
        let view = try #require(
            JSONValue.parse(Array(#"{"tenant_id":"t","request_id":"r","challenge_id":"ch_1"}"#.utf8)))
        let body = try answerBody(
            to: view, device: "phone-1", decision: "approve", selectedNumber: 42, reason: nil,
            signedAtUnix: 1_795_600_000, sign: key.signature(for:))
        let sent = try #require(JSONValue.parse(Array(body.utf8)))
        #expect(sent["decision"]?.string == "approve" && sent["selected_number"] == .integer(42))
        #expect(sent["reason"] == .null && sent["signed_at_unix"] == .integer(1_795_600_000))
        let signed = "approvald-decision-v1\nt\nr\nch_1\nphone-1\napprove\n42\n\n1795600000"
        let signature = try #require(sent["signature"]?.string.flatMap { Base64URL.decode($0) })
        #expect(try P256PublicKey(spkiDER: key.spkiDER).isValidSignature(signature, for: Array(signed.utf8)))
    }
}
