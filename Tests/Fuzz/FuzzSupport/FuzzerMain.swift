// The fuzz targets' shared entry: hands the process to libFuzzer's driver with the target's test.
import CFuzzer

/// The target's test of one input; libFuzzer's callback is a C function, so it reaches the test through here.
nonisolated(unsafe) private var testOneInput: (UnsafeBufferPointer<UInt8>) -> Void = { _ in }

/// Runs libFuzzer (its flags and corpus directories in `argv`) on `test`. Call it from the target's
/// `@_cdecl("<Target>_main")`, the symbol SwiftPM links `main` to.
public func fuzzerMain(
    _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
    _ test: @escaping (UnsafeBufferPointer<UInt8>) -> Void
) -> Int32 {
    testOneInput = test
    var argc = argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        testOneInput(UnsafeBufferPointer(start: data, count: size))
        return 0
    }
}

/// The input split at the first `separator`: the text before it, and the bytes after it (all of it and nothing, if
/// there is none). The targets whose inputs have two parts use it.
public func split(_ input: UnsafeBufferPointer<UInt8>, at separator: UInt8) -> (head: String, rest: [UInt8]) {
    let end = input.firstIndex(of: separator) ?? input.count
    return (String(decoding: input[..<end], as: UTF8.self), Array(input[min(end + 1, input.count)...]))
}
