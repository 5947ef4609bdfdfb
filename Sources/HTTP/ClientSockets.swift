// What every client connection does before it speaks HTTP: a bufferevent for a socket (TLS with SNI, peer
// verification and an ALPN offer, or plain), and the words for a connect that failed.
import CLibevent
import COpenSSL
import EventLoop
import Glibc

/// A bufferevent with no socket yet, for `bufferevent_socket_connect_hostname`; nil if one cannot be made.
func makeClientBufferEvent(loop: EventLoop, tls: TLSClientContext?, offer: ALPNOffer, host: String) -> OpaquePointer? {
    let options = Int32(BEV_OPT_CLOSE_ON_FREE.rawValue | BEV_OPT_DEFER_CALLBACKS.rawValue)
    guard let tls else { return bufferevent_socket_new(loop.base, -1, options) }
    guard let ssl = tls.makeSession(host: host, offer: offer) else { return nil }
    guard let created = bufferevent_openssl_socket_new(loop.base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, options) else {
        SSL_free(ssl)
        return nil
    }
    bufferevent_openssl_set_allow_dirty_shutdown(created, 1)
    return created
}

/// Why connecting on `bufferEvent` failed: DNS, TLS (OpenSSL's errors, the certificate check) or the socket's error.
func connectFailure(of bufferEvent: OpaquePointer?, authority: String) -> String {
    var details: [String] = []
    if let bufferEvent {
        let dnsError = bufferevent_socket_get_dns_error(bufferEvent)
        if dnsError != 0 { details.append("DNS: \(String(cString: evutil_gai_strerror(dnsError)))") }
        while case let code = bufferevent_get_openssl_error(bufferEvent), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            details.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        if let ssl = bufferevent_openssl_get_ssl(bufferEvent), case let verify = SSL_get_verify_result(ssl),
            verify != X509_V_OK
        {
            details.append("certificate: \(String(cString: X509_verify_cert_error_string(verify)))")
        }
    }
    if details.isEmpty && errno != 0 { details.append(String(cString: strerror(errno))) }
    return "\(authority): " + (details.isEmpty ? "connection closed" : details.joined(separator: "; "))
}

/// Small writes go out at once: with Nagle's algorithm, a request written while the peer delays its ACK waits up
/// to 40 ms.
func disableNagle(_ bufferEvent: OpaquePointer?) {
    var enabled: Int32 = 1
    setsockopt(
        bufferevent_getfd(bufferEvent), Int32(IPPROTO_TCP), TCP_NODELAY, &enabled, socklen_t(MemoryLayout<Int32>.size))
}
