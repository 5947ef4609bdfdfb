// `approvald verifier`: a small IdP verifier for trying the broker out. It receives results over h2c, checks each
// one's Approvald-Signature with the IdP client's secret, prints it, and acknowledges it (204) or refuses a bad
// signature (401, which the broker keeps as a dead letter).
import ArgumentParser
import Crypto
import Foundation
import H2
import Logging
import Service

struct Verifier: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Receive and print the broker's signed results, as an IdP's verifier would (h2c, for trying out).",
        discussion: """
            Listens on --host and --port (make run's configuration sends results to 127.0.0.1:9090) and checks the \\
            Approvald-Signature of every POST against the IdP client's key: a valid result is printed and \\
            acknowledged with 204, anything else refused with 401. Defaults match make run's development IdP. Runs \\
            until interrupted.
            """)

    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The port to listen on.") var port = 9090
    @Option(help: "The IdP client's key id.") var keyID = "demo-dev"
    @Option(help: "The IdP client's secret.") var secret = "development-only-secret-do-not-use-0123456789"

    func run() throws {
        let loop = try EventLoop()
        var logger = Logger(label: "approvald-verifier")
        logger.logLevel = .error
        let key = HMACSHA256.Key(Array(secret.utf8))
        let keyID = self.keyID
        let server = H2Server(loop: loop, logger: logger) { request, responder in
            guard request.method == "POST" else {
                responder.respond(HTTPResponse(status: 405, headers: [:], body: []))
                return
            }
            let header = request.headers[field: "approvald-signature"] ?? ""
            let time = header.split(separator: ",").lazy.map { $0.trimmingCharacters(in: .whitespaces) }
                .first { $0.hasPrefix("t=") }.flatMap { Int64($0.dropFirst(2)) }
            let expected = time.map {
                approvaldSignature(
                    keyID: keyID, key: key, time: $0, method: "POST", path: request.path, body: request.body)
            }
            let valid = expected.map { constantTimeEquals(Array($0.utf8), Array(header.utf8)) } ?? false
            let result = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] ?? [:]
            let decision = result["decision"] as? [String: Any]
            say(
                "result \(result["challenge_id"] as? String ?? "?") tenant=\(result["tenant_id"] as? String ?? "?") "
                    + "request=\(result["request_id"] as? String ?? "?") outcome=\(result["outcome"] as? String ?? "?") "
                    + "device=\(result["device_id"] as? String ?? "-") "
                    + "selected=\(decision?["selected_number"].map { "\($0)" } ?? "-") "
                    + "signature=\(valid ? "valid" : "INVALID")")
            responder.respond(HTTPResponse(status: valid ? 204 : 401, headers: [:], body: []))
        }
        let bound = try server.listen(host: host, port: port)
        say("approvald verifier: listening on \(host):\(bound) (h2c) for key \(keyID)")
        signal(SIGPIPE, SIG_IGN)
        let watchers = loop.watchTermination { _ in loop.stop() }
        loop.run()
        withExtendedLifetime((server, watchers)) {}
    }
}
