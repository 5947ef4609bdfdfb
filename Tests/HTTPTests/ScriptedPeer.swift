// A server that answers with bytes written by hand, for the client's unhappy paths the real server never takes:
// malformed answers, a kept connection closed under the next request, a body that ends with the connection.
import Foundation
import Glibc
import Locking

final class ScriptedPeer: @unchecked Sendable {
    enum Step: Sendable {
        /// Reads a request head (no body), then writes these bytes.
        case answer(String)
        /// Reads a request head, then closes without a word.
        case closeAfterRequest
    }

    let port: Int
    private let listener: Int32
    private let acceptedCount = Locked(0)
    private let thread: Thread

    /// The connections it accepts, in order, each with its steps; a connection closes after its last step.
    init(connections: [[Step]]) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 8) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        guard listener >= 0, bound else {
            close(listener)
            throw POSIXError(.EADDRNOTAVAIL)
        }
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        let count = acceptedCount
        thread = Thread {
            for steps in connections {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { return }
                count.withLock { $0 += 1 }
                var limit = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
                for step in steps {
                    guard ScriptedPeer.readHead(connection) else { break }
                    guard case .answer(let text) = step else { break }
                    _ = Array(text.utf8).withUnsafeBytes {
                        send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                    }
                }
                close(connection)
            }
        }
        thread.start()
    }

    deinit {
        // Wakes an accept still waiting.
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    var acceptedConnections: Int { acceptedCount.withLock { $0 } }

    /// Reads until a blank line ends a request head; false if the peer closes or says nothing for 5 s first.
    private static func readHead(_ connection: Int32) -> Bool {
        var received: [UInt8] = []
        var byte: UInt8 = 0
        while !received.suffix(4).elementsEqual("\r\n\r\n".utf8) {
            guard recv(connection, &byte, 1, 0) == 1 else { return false }
            received.append(byte)
        }
        return true
    }
}
