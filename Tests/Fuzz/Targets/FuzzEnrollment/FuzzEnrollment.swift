// libFuzzer target: the enrollment bodies, the phone's completion (`POST /v1/enroll`, whose code and proof are its
// only credentials) and the IdP's creation. The first byte picks the body: even, a completion; odd, a creation.
// Neither may crash; a completion that is accepted must carry a proof its own key made over its own code and key,
// and a creation that is accepted must be within the rules.
import Core
import Crypto
import Foundation
import FuzzSupport
import Protocol

@testable import Service

@_cdecl("FuzzEnrollment_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzerMain(argc, argv, fuzzEnrollment)
}

private func fuzzEnrollment(_ input: UnsafeBufferPointer<UInt8>) {
    guard let selector = input.first else { return }
    let body = Array(input.dropFirst())
    if selector % 2 == 0 {
        guard let enroll = try? decodeBody(EnrollBody.self, from: body),
            let completion = try? enroll.completion()
        else { return }
        let code = Array(enroll.activationCode.utf8)
        precondition((1...256).contains(code.count), "an activation code of \(code.count) bytes was accepted")
        precondition(completion.codeHash == SHA256.hash(code), "the stored hash is not the code's")
        precondition(Data(base64Encoded: enroll.publicKey).map(Array.init) == completion.publicKey)
        // swift-format-ignore: NeverUseForceTry
        let key = try! P256PublicKey(spkiDER: completion.publicKey)
        let message = Array(enrollmentProofMessage(code: enroll.activationCode, publicKey: enroll.publicKey).utf8)
        precondition(
            key.isValidSignature(Base64URL.decode(enroll.proof) ?? [], for: message),
            "a completion whose proof does not verify was accepted")
        precondition(completion.push.provider == .none || !completion.push.token.isEmpty)
    } else {
        guard let creation = try? decodeBody(EnrollmentBody.self, from: body) else { return }
        let request = creation.request
        guard (try? request.validate()) != nil else { return }
        precondition(!request.userID.isEmpty, "an enrollment for no user was accepted")
        precondition(EnrollmentRequest.ttlSecondsRange.contains(request.ttlSeconds))
    }
}
