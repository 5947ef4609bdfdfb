// libFuzzer target: the event stream a broker sends the tools' phones. The first byte sets the chunk size the
// rest is fed in; the parser must deliver whole events only and never crash.
import FuzzSupport
import Protocol

@_cdecl("FuzzEventStream_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzerMain(argc, argv, fuzzEventStream)
}

private func fuzzEventStream(_ input: UnsafeBufferPointer<UInt8>) {
    guard let first = input.first, let base = input.baseAddress else { return }
    let chunk = Int(first) + 1
    var events = 0
    let parser = EventStreamParser { _ in events += 1 }
    var offset = 1
    while offset < input.count {
        let count = min(chunk, input.count - offset)
        parser.feed(UnsafeBufferPointer(start: base + offset, count: count))
        offset += count
    }
    // An event needs at least "data: {}" and its blank line.
    precondition(events <= input.count / 9)
}
