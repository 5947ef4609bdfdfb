// libFuzzer target: the OpenID provider's request parsers, on what a browser or a relying party may send. The first
// byte picks the parser: even, an authorization request (the rest is its query or form); odd, a token request (the
// rest is an Authorization header's value, a newline, then the form). Neither may crash, and what either accepts
// must keep the rules it exists for.
import FuzzSupport
import OIDC

@_cdecl("FuzzOIDCRequests_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzerMain(argc, argv, fuzzOIDCRequests)
}

private let settings = OIDCSettings(
    issuer: "https://login.example.com", signingKeyFiles: [],
    clients: [
        OIDCClient(
            clientID: "webapp", clientSecret: Array("a client secret of at least thirty-two bytes".utf8),
            redirectURIs: ["https://app.example.com/cb"], tenant: "contoso"),
        OIDCClient(clientID: "spa", clientSecret: nil, redirectURIs: ["http://127.0.0.1:5000/cb"], tenant: "contoso"),
        OIDCClient(
            clientID: "entra", clientSecret: nil, redirectURIs: ["https://login.example.net/federation"],
            tenant: "contoso",
            hintTrust: HintTrust(issuer: "https://login.example.net", keys: .file("keys.json"), userClaim: "upn")),
    ])

private func fuzzOIDCRequests(_ input: UnsafeBufferPointer<UInt8>) {
    guard let selector = input.first else { return }
    let text = String(decoding: input.dropFirst(), as: UTF8.self)
    if selector % 2 == 0 {
        guard let parameters = FormEncoding.decode(text) else { return }
        guard let request = try? AuthorizationRequest.parse(parameters, settings: settings) else { return }
        precondition(request.client.redirectURIs.contains(request.redirectURI), "an unregistered redirect URI")
        precondition(request.scopes.contains("openid"), "no openid scope")
        if request.client.clientSecret == nil && request.responseType == .code {
            precondition(request.codeChallenge?.utf8.count == 43, "a public client without PKCE")
        }
        if request.responseType == .idToken {
            precondition(request.responseMode == .formPost && request.nonce?.isEmpty == false, "id_token unguarded")
        }
        if request.idTokenHint != nil {
            precondition(request.client.hintTrust != nil, "a hint from a client without trust")
        }
    } else {
        let lines = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        let header = lines.first.map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        guard let form = FormEncoding.decode(lines.count == 2 ? String(lines[1]) : "") else { return }
        guard let request = try? TokenRequest.parse(form: form, authorization: header, settings: settings) else {
            return
        }
        precondition(!request.code.isEmpty, "an empty code")
        if let verifier = request.codeVerifier { precondition((43...128).contains(verifier.utf8.count)) }
        // A confidential client is accepted only with its secret somewhere in the input.
        if request.client.clientSecret != nil {
            precondition(
                text.contains("client_secret=") || header?.lowercased().hasPrefix("basic ") == true,
                "a confidential client without its secret")
        }
    }
}
