// libFuzzer target: request bodies, which arrive from the network. The JSON parser must never crash, and a string
// it reads must come back the same through the writer; each request body type must decode or give a Problem.
import FuzzSupport
import JSONText

@testable import Service

@_cdecl("FuzzJSON_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzerMain(argc, argv, fuzzJSON)
}

private func fuzzJSON(_ input: UnsafeBufferPointer<UInt8>) {
    let bytes = Array(input)
    if let value = JSONValue.parse(bytes) { checkStrings(in: value) }
    _ = try? decodeBody(PolicyBody.self, from: bytes)
    _ = try? decodeBody(DeviceBody.self, from: bytes)
    _ = try? decodeBody(PushBody.self, from: bytes)
    _ = try? decodeBody(ChallengeBody.self, from: bytes)
    _ = try? decodeBody(AnswerBody.self, from: bytes)
}

/// Every string in a parsed document survives `jsonString` and parsing again.
private func checkStrings(in value: JSONValue) {
    switch value {
    case .string(let text):
        precondition(JSONValue.parse(Array(jsonString(text).utf8)) == .string(text), "jsonString round trip")
    case .array(let elements):
        for element in elements { checkStrings(in: element) }
    case .object(let members):
        for member in members {
            checkStrings(in: .string(member.name))
            checkStrings(in: member.value)
        }
    default:
        break
    }
}
