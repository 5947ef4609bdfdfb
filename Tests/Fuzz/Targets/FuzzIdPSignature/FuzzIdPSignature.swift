// libFuzzer target: the `Approvald-Signature` header an IdP sends. The input is the header's value, a newline, and
// the body; authentication must refuse it with a Problem (it holds no valid MAC) and never crash.
import FuzzSupport
import HTTP
import Protocol

@testable import Service

private let now: Int64 = 1_795_600_000
private let authenticator = Authenticator(clients: [
    IdPClient(
        // Not the secret the seeds' MACs were made with: no input can hold a valid MAC, so none may authenticate.
        keyID: "k", secret: Array("the fuzz target's own secret, which no seed knows".utf8), tenants: ["t"],
        verifierURL: "http://127.0.0.1:9")
])

@_cdecl("FuzzIdPSignature_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzerMain(argc, argv, fuzzIdPSignature)
}

private func fuzzIdPSignature(_ input: UnsafeBufferPointer<UInt8>) {
    let (header, body) = split(input, at: 0x0a)
    let request = HTTPRequest(
        method: "POST", path: "/v1/tenants/t/challenges", headers: [("approvald-signature", header)], body: body)
    do {
        _ = try authenticator.idp(request, tenantID: "t", nowSeconds: now)
        preconditionFailure("a request without a valid MAC was authenticated: \(header)")
    } catch {
        precondition(error.status == 401 || error.status == 403)
    }
    _ = hexBytes(header[...])
}
