import Crypto
// libFuzzer target: the `Authorization: Approvald-Device …` header a device sends. The input is the header's
// value, a newline, and the body; authentication must refuse it with a Problem and never crash.
import FuzzSupport
import HTTP

@testable import Service

private let now: Int64 = 1_795_600_000
// swift-format-ignore: NeverUseForceTry
private let key = try! P256PrivateKey().publicKey

@_cdecl("FuzzDeviceAuthorization_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzerMain(argc, argv, fuzzDeviceAuthorization)
}

private func fuzzDeviceAuthorization(_ input: UnsafeBufferPointer<UInt8>) {
    let (header, body) = split(input, at: 0x0a)
    let request = HTTPRequest(
        method: "GET", path: "/v1/devices/phone-1/challenges", headers: [("authorization", header)], body: body)
    do {
        try Authenticator(clients: []).device(request, deviceID: "phone-1", nowSeconds: now) {
            $0 == "phone-1" ? key : nil
        }
        preconditionFailure("a request without a valid signature was authenticated: \(header)")
    } catch {
        precondition(error.status == 401 || error.status == 403)
    }
}
