// libFuzzer target: the bytes a client sends the server as HTTP/1.1 (FuzzServer): requests, pipelined or not, with
// every strictness rule's shape among the seeds (Tests/Fuzz/make_seeds.py). Anything that does not open with the
// HTTP/2 preface is HTTP/1.1 to the server.
import FuzzServer
import FuzzSupport

@_cdecl("FuzzHTTP1Server_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzerMain(argc, argv) { serveOneConnection($0) }
}
