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
