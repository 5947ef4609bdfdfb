// libFuzzer target: the method and path of a request. The input is the method, a space, and the path with its
// query; the route table must name a route, give 404 or 405, or say the path is not the API's, and never crash.
import FuzzSupport
import HTTP

@testable import Service

@_cdecl("FuzzRouter_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzerMain(argc, argv, fuzzRouter)
}

private func fuzzRouter(_ input: UnsafeBufferPointer<UInt8>) {
    let (method, target) = split(input, at: 0x20)
    let request = HTTPRequest(method: method, path: String(decoding: target, as: UTF8.self))
    do {
        if let route = try RouteTable.api.match(method: request.method, path: request.pathOnly) {
            precondition(request.pathOnly.hasPrefix("/v1/"), "a route outside /v1: \(route)")
        }
    } catch {
        precondition(error.status == 404 || error.status == 405)
        precondition(error.status == 404 || !error.allow.isEmpty && !error.allow.contains(method))
    }
    _ = queryValue(request.query, "wait")
    _ = queryValue(request.query, "limit")
}
