// A blocking TCP client that writes HTTP/2 frames by hand, for tests that need what no well-behaved client
// sends: malformed frames, lying content-length, floods, silence, a reader that never reads.
import CNghttp2
import Foundation
import Glibc

public struct Frame: CustomStringConvertible {
    public let type: UInt8
    public let flags: UInt8
    public let streamID: UInt32
    public let payload: [UInt8]

    public static let data: UInt8 = 0, headers: UInt8 = 1, rstStream: UInt8 = 3, settings: UInt8 = 4, ping: UInt8 = 6,
        goaway: UInt8 = 7, windowUpdate: UInt8 = 8, continuation: UInt8 = 9
    public static let endStream: UInt8 = 1, ack: UInt8 = 1, endHeaders: UInt8 = 4

    /// For GOAWAY and RST_STREAM: the error code.
    public var errorCode: UInt32? {
        switch type {
        case Frame.goaway where payload.count >= 8:
            UInt32(bigEndian: payload[4..<8].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
        case Frame.rstStream where payload.count >= 4:
            UInt32(bigEndian: payload[0..<4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
        default: nil
        }
    }

    public var description: String { "frame(type \(type), flags \(flags), stream \(streamID), \(payload.count) bytes)" }
}

public struct RawConnectionError: Error, CustomStringConvertible {
    public let description: String
}

public final class RawHTTP2Connection {
    public let socket: Int32
    private var buffer: [UInt8] = []

    public static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private var inflater: OpaquePointer?

    public init(port: Int, host: String = "127.0.0.1") throws {
        // The descriptor is stored only once connected: a throw before that runs no deinit, so it is closed
        // exactly once either way (a second close could close a descriptor another thread just opened).
        let descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw RawConnectionError(description: "socket: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw RawConnectionError(description: "connect to \(port): errno \(code)")
        }
        socket = descriptor
    }

    deinit {
        Glibc.close(socket)
        if let inflater { nghttp2_hd_inflate_del(inflater) }
    }

    /// Decodes a HEADERS frame's block with nghttp2's HPACK decoder (one per connection: HPACK is stateful).
    public func decodeHeaders(_ frame: Frame) -> [(name: String, value: String)] {
        if inflater == nil { nghttp2_hd_inflate_new(&inflater) }
        var block = frame.payload
        if frame.flags & 0x8 != 0, let padding = block.first { block = Array(block.dropFirst().dropLast(Int(padding))) }
        if frame.flags & 0x20 != 0 { block = Array(block.dropFirst(5)) }
        var fields: [(String, String)] = []
        var offset = 0
        while true {
            var field = nghttp2_nv()
            var flags: Int32 = 0
            let used = block[offset...].withUnsafeBufferPointer {
                nghttp2_hd_inflate_hd2(inflater, &field, &flags, $0.baseAddress, $0.count, 1)
            }
            guard used >= 0 else { return fields }
            offset += used
            if flags & Int32(NGHTTP2_HD_INFLATE_EMIT.rawValue) != 0 {
                fields.append(
                    (
                        String(decoding: UnsafeBufferPointer(start: field.name, count: field.namelen), as: UTF8.self),
                        String(decoding: UnsafeBufferPointer(start: field.value, count: field.valuelen), as: UTF8.self)
                    ))
            }
            if flags & Int32(NGHTTP2_HD_INFLATE_FINAL.rawValue) != 0 {
                nghttp2_hd_inflate_end_headers(inflater)
                return fields
            }
            if used == 0 && offset >= block.count { return fields }
        }
    }

    /// Reads until the response HEADERS on `stream` and returns its `:status` (nil if the stream or the
    /// connection ends first).
    public func readStatus(stream: UInt32, timeout: Double = 5) throws -> Int? {
        let deadline = Date().addingTimeInterval(timeout)
        while let frame = try readFrame(timeout: max(0.01, deadline.timeIntervalSinceNow)) {
            if frame.type == Frame.headers {
                let fields = decodeHeaders(frame)  // decode every block: HPACK state must stay in step
                if frame.streamID == stream { return fields.first { $0.name == ":status" }.flatMap { Int($0.value) } }
            }
            if frame.streamID == stream && frame.type == Frame.rstStream { return nil }
        }
        return nil
    }

    /// Shrinks the kernel's receive buffer, so a client that does not read pushes back quickly.
    public func setReceiveBuffer(bytes: Int32) {
        var size = bytes
        setsockopt(socket, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// A send that the peer does not make room for within `seconds` fails (EAGAIN) instead of blocking.
    public func setSendTimeout(seconds: Int) {
        var limit = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    }

    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            guard sent > 0 else { throw RawConnectionError(description: "send failed: errno \(errno)") }
            offset += sent
        }
    }

    public func sendFrame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8] = []) throws {
        try send(Self.frame(type: type, flags: flags, stream: stream, payload: payload))
    }

    public static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8] = []) -> [UInt8] {
        let length = UInt32(payload.count)
        return [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags]
            + withUnsafeBytes(of: (stream & 0x7fff_ffff).bigEndian, Array.init) + payload
    }

    /// The client preface and an empty SETTINGS frame (or the given settings).
    public func sendPreface(settings: [(UInt16, UInt32)] = []) throws {
        var payload: [UInt8] = []
        for (id, value) in settings {
            payload += withUnsafeBytes(of: id.bigEndian, Array.init) + withUnsafeBytes(of: value.bigEndian, Array.init)
        }
        try send(Self.preface + Self.frame(type: Frame.settings, payload: payload))
    }

    /// A request header block: every field a literal without indexing (RFC 7541 §6.2.2).
    public static func headerBlock(_ fields: [(String, String)]) -> [UInt8] {
        var block: [UInt8] = []
        for (name, value) in fields {
            block.append(0)
            block += integer(name.utf8.count, prefixBits: 7) + Array(name.utf8)
            block += integer(value.utf8.count, prefixBits: 7) + Array(value.utf8)
        }
        return block
    }

    /// An HPACK integer with an N-bit prefix (RFC 7541 §5.1); the prefix's high bits are left zero.
    static func integer(_ value: Int, prefixBits: Int) -> [UInt8] {
        let limit = (1 << prefixBits) - 1
        guard value >= limit else { return [UInt8(value)] }
        var bytes = [UInt8(limit)]
        var rest = value - limit
        while rest >= 128 {
            bytes.append(UInt8(rest % 128 + 128))
            rest /= 128
        }
        bytes.append(UInt8(rest))
        return bytes
    }

    public static func request(_ method: String, _ path: String, extra: [(String, String)] = []) -> [(String, String)] {
        [(":method", method), (":scheme", "http"), (":authority", "localhost"), (":path", path)] + extra
    }

    /// The next frame, or nil at end of stream. Throws when nothing complete arrives within `timeout` seconds.
    public func readFrame(timeout: Double = 5) throws -> Frame? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if buffer.count >= 9 {
                let length = Int(buffer[0]) << 16 | Int(buffer[1]) << 8 | Int(buffer[2])
                if buffer.count >= 9 + length {
                    let stream =
                        UInt32(buffer[5]) << 24 | UInt32(buffer[6]) << 16 | UInt32(buffer[7]) << 8 | UInt32(buffer[8])
                    let frame = Frame(
                        type: buffer[3], flags: buffer[4], streamID: stream & 0x7fff_ffff,
                        payload: Array(buffer[9..<9 + length]))
                    buffer.removeFirst(9 + length)
                    return frame
                }
            }
            guard try fill(until: deadline) else { return nil }
        }
    }

    /// Reads frames until one matches; nil when the connection ends first.
    public func readFrame(timeout: Double = 5, where match: (Frame) -> Bool) throws -> Frame? {
        let deadline = Date().addingTimeInterval(timeout)
        while let frame = try readFrame(timeout: max(0.01, deadline.timeIntervalSinceNow)) {
            if match(frame) { return frame }
        }
        return nil
    }

    /// Reads raw bytes until the peer closes; throws on timeout.
    public func readToEnd(timeout: Double = 5) throws -> [UInt8] {
        let deadline = Date().addingTimeInterval(timeout)
        while try fill(until: deadline) {}
        defer { buffer = [] }
        return buffer
    }

    /// Reads raw bytes until what has arrived satisfies `enough` (and returns it all), or the peer closes, or the
    /// time is up (nil).
    public func read(timeout: Double = 5, until enough: ([UInt8]) -> Bool) -> [UInt8]? {
        let deadline = Date().addingTimeInterval(timeout)
        while !enough(buffer) {
            guard (try? fill(until: deadline)) == true else { return nil }
        }
        defer { buffer = [] }
        return buffer
    }

    /// Whether the peer closes the connection within `timeout` seconds (reading and discarding what comes).
    public func closes(within timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        do {
            while try fill(until: deadline) { buffer = [] }
            return true
        } catch {
            return false
        }
    }

    /// Reads once; false at end of stream (or reset). Throws on timeout.
    private func fill(until deadline: Date) throws -> Bool {
        let remaining = deadline.timeIntervalSinceNow
        guard remaining > 0 else { throw RawConnectionError(description: "timed out") }
        var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let ready = poll(&poller, 1, Int32(remaining * 1000) + 1)
        guard ready > 0 else { throw RawConnectionError(description: "timed out") }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = recv(socket, &chunk, chunk.count, 0)
        if count <= 0 { return false }
        buffer += chunk.prefix(count)
        return true
    }
}
