// OpenSSL contexts for the server (certificate, TLS 1.2+, ALPN h2 or http/1.1) and the client (peer verification,
// SNI, ALPN).
import COpenSSL
import Glibc

public struct TLSError: Error, CustomStringConvertible {
    public let description: String
    init(_ what: String) {
        var buffer = [CChar](repeating: 0, count: 1024)
        let count = approvald_drain_errors(&buffer, buffer.count)
        let details = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        description = count == 0 ? what : "\(what): \(details)"
    }
}

/// ALPN protocol lists in wire format. The server prefers h2 and serves http/1.1 too.
private let serverALPN: [UInt8] = [2] + Array("h2".utf8) + [8] + Array("http/1.1".utf8)

/// What a client connection offers by ALPN.
public enum ALPNOffer: Sendable {
    case h2
    case http1
    /// Both, h2 preferred: the server's choice decides.
    case either

    var wireFormat: [UInt8] {
        switch self {
        case .h2: [2] + Array("h2".utf8)
        case .http1: [8] + Array("http/1.1".utf8)
        case .either: [2] + Array("h2".utf8) + [8] + Array("http/1.1".utf8)
        }
    }
}

private func makeContext(_ method: OpaquePointer?) throws -> OpaquePointer {
    guard let context = SSL_CTX_new(method) else { throw TLSError("SSL_CTX_new") }
    guard approvald_SSL_CTX_set_min_proto_version(context, Int32(approvald_TLS1_2_VERSION)) == 1 else {
        SSL_CTX_free(context)
        throw TLSError("cannot require TLS 1.2")
    }
    // Idle connections give their read and write buffers back: tens of thousands of device streams are idle.
    _ = approvald_SSL_CTX_set_mode(context, Int(SSL_MODE_RELEASE_BUFFERS))
    approvald_SSL_CTX_harden(context)
    return context
}

/// The server side: one certificate chain and key, shared by every TLS listener. Immutable after creation.
public final class TLSServerContext: @unchecked Sendable {
    let context: OpaquePointer

    /// Loads a PEM certificate chain and its private key, and checks that they match.
    public init(certificateChainPath: String, privateKeyPath: String) throws {
        let context = try makeContext(TLS_server_method())
        guard SSL_CTX_use_certificate_chain_file(context, certificateChainPath) == 1 else {
            SSL_CTX_free(context)
            throw TLSError("cannot load the certificate chain \(certificateChainPath)")
        }
        guard SSL_CTX_use_PrivateKey_file(context, privateKeyPath, SSL_FILETYPE_PEM) == 1 else {
            SSL_CTX_free(context)
            throw TLSError("cannot load the private key \(privateKeyPath)")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            SSL_CTX_free(context)
            throw TLSError("the private key \(privateKeyPath) does not match the certificate")
        }
        SSL_CTX_set_alpn_select_cb(
            context,
            { _, selected, selectedLength, offered, offeredLength, _ in
                var choice: UnsafeMutablePointer<UInt8>? = nil
                let result = serverALPN.withUnsafeBufferPointer { ours in
                    SSL_select_next_proto(
                        &choice, selectedLength, ours.baseAddress, UInt32(ours.count), offered, offeredLength)
                }
                guard result == OPENSSL_NPN_NEGOTIATED, let choice else { return SSL_TLSEXT_ERR_NOACK }
                // `choice` points into `offered`, which outlives the handshake step, as OpenSSL requires.
                selected?.pointee = UnsafePointer(choice)
                return SSL_TLSEXT_ERR_OK
            }, nil)
        self.context = context
    }

    deinit { SSL_CTX_free(context) }

    func makeSession() -> OpaquePointer? { SSL_new(context) }
}

/// The client side: peers verified against the system's CAs or a configured CA file; ALPN is set per connection.
public final class TLSClientContext: @unchecked Sendable {
    let context: OpaquePointer

    /// - Parameter caFile: PEM bundle of trusted CAs; nil trusts the system's store.
    public init(caFile: String? = nil) throws {
        let context = try makeContext(TLS_client_method())
        if let caFile {
            guard SSL_CTX_load_verify_locations(context, caFile, nil) == 1 else {
                SSL_CTX_free(context)
                throw TLSError("cannot load the CA file \(caFile)")
            }
        } else {
            guard SSL_CTX_set_default_verify_paths(context) == 1 else {
                SSL_CTX_free(context)
                throw TLSError("cannot load the system CA store")
            }
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        self.context = context
    }

    deinit { SSL_CTX_free(context) }

    /// A session for one connection to `host`: SNI for names, the certificate checked against the name or IP, and
    /// `offer` by ALPN.
    func makeSession(host: String, offer: ALPNOffer) -> OpaquePointer? {
        guard let session = SSL_new(context) else { return nil }
        let protocols = offer.wireFormat
        guard protocols.withUnsafeBufferPointer({ SSL_set_alpn_protos(session, $0.baseAddress, UInt32($0.count)) }) == 0
        else {
            SSL_free(session)
            return nil
        }
        let isIPAddress = host.contains(":") || host.split(separator: ".").allSatisfy { UInt8($0) != nil }
        if isIPAddress {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(session), host)
        } else {
            _ = approvald_SSL_set_tlsext_host_name(session, host)
            SSL_set1_host(session, host)
        }
        return session
    }
}

/// The protocol ALPN settled on for `session`, if any.
func negotiatedProtocol(_ session: OpaquePointer) -> String? {
    var data: UnsafePointer<UInt8>? = nil
    var length: UInt32 = 0
    SSL_get0_alpn_selected(session, &data, &length)
    guard let data, length > 0 else { return nil }
    return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
}
