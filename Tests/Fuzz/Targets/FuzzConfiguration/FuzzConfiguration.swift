// libFuzzer target: what an operator writes. The input is TOML text, a NUL, then environment overrides as
// `NAME=value` lines; the reader must give a Configuration or a ConfigError naming the problem, never crash.
import FuzzSupport

@testable import Broker

@_cdecl("FuzzConfiguration_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzerMain(argc, argv, fuzzConfiguration)
}

private func fuzzConfiguration(_ input: UnsafeBufferPointer<UInt8>) {
    let (text, overrides) = split(input, at: 0)
    var environment: [String: String] = [:]
    for line in String(decoding: overrides, as: UTF8.self).split(separator: "\n") {
        guard let equals = line.firstIndex(of: "=") else { continue }
        environment[String(line[..<equals])] = String(line[line.index(after: equals)...])
    }
    do {
        _ = try Configuration.parse(text, source: "fuzz.toml", environment: environment)
    } catch let error as ConfigError {
        precondition(error.description.hasPrefix("fuzz.toml"), "an error that names no source: \(error)")
    } catch {
        preconditionFailure("not a ConfigError: \(error)")
    }
}
