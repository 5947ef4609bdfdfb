// libFuzzer target: the bytes a client sends the server as HTTP/2 (FuzzServer). The preface comes first, so that the
// input reaches HTTP/2 framing rather than the protocol detection alone; an input that starts with its own preface
// bytes tests the detection.
import FuzzServer
import FuzzSupport

private let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

@_cdecl("FuzzH2Server_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzerMain(argc, argv) { input in
        serveOneConnection(input, prefix: input.first == UInt8(ascii: "P") ? [] : preface)
    }
}
