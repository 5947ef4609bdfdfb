// The flow's seal: what one instance seals another opens when both have the same first signing key; a box is bound
// to its purpose and its key, and anything altered, or not a box at all, opens as nil.
import Crypto
import OIDC
import Testing

@Suite struct FlowSealTests {
    @Test func instancesWithTheSameKeyOpenEachOthersBoxesAndNothingElse() throws {
        let pem = try RSAPrivateKey(generatingBits: 2048).pem
        let one = FlowSeal(signingKey: try OIDCSigningKey(pem: pem, certificateName: "login.example.com"))
        let other = FlowSeal(signingKey: try OIDCSigningKey(pem: pem, certificateName: "login.example.com"))
        let sealed = one.seal(#"{"client_id":"webapp","state":"é"}"#, for: .flow)
        #expect(other.open(sealed, for: .flow) == #"{"client_id":"webapp","state":"é"}"#)
        #expect(other.open(sealed, for: .code) == nil, "a cookie is not a code")
        #expect(sealed.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }, "base64url")
        let stranger = FlowSeal(signingKey: try OIDCSigningKey(pem: try P256PrivateKey().pem, certificateName: "x"))
        #expect(stranger.open(sealed, for: .flow) == nil)
        var altered = Array(sealed)
        altered[20] = altered[20] == "A" ? "B" : "A"
        #expect(one.open(String(altered), for: .flow) == nil)
        for garbage in ["", "not base64url!", "AAAA", String(repeating: "A", count: 20_000)] {
            #expect(one.open(garbage, for: .flow) == nil)
        }
    }
}
