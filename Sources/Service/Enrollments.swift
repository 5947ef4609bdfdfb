// Enrollment (API.md, "Enrollment"): the IdP's create, read (with its long poll) and cancel, and a phone's completion
// with its activation code and a proof by its new key. The caller has authenticated the IdP; a phone's completion
// is authenticated by its code and proof alone.
import Core
import Crypto
import Foundation
import HTTP
import Logging
import Protocol
import QRCode
import Store

/// `@unchecked Sendable`: confined to the event loop; store completions come back through it.
final class Enrollments: @unchecked Sendable {
    private let store: StoreRoles
    private let pipeline: CommitPipeline
    private let longPolls: LongPolls
    /// The base URL phones reach, for activation URIs.
    private let publicURL: String
    private let clock: () -> UnixMillis
    private let logger: Logger
    private var random = BufferedSecureRandom()
    private(set) var outcomes = LabelledCounter(
        known: ["created"] + EnrollmentStatus.allCases.filter { $0 != .pending }.map(\.rawValue))

    init(
        store: StoreRoles, pipeline: CommitPipeline, longPolls: LongPolls, publicURL: String,
        clock: @escaping () -> UnixMillis, logger: Logger
    ) {
        self.store = store
        self.pipeline = pipeline
        self.longPolls = longPolls
        self.publicURL = publicURL
        self.clock = clock
        self.logger = logger
    }

    /// A new enrollment and its activation code (at least 128 bits from the CSPRNG), of which only the SHA-256 is
    /// kept; 201 with the code, its URI and its QR code, once durable.
    func create(
        _ body: EnrollmentBody, tenantID: String, _ done: @escaping (Result<HTTPResponse, Problem>) -> Void
    ) throws(Problem) {
        let request = body.request
        try core(request.validate())
        let code = Base64URL.encode(SecureRandom.bytes(16))
        let uri = ActivationURI(baseURL: publicURL, tenantID: tenantID, code: code).description
        let user = UserKey(tenantID: tenantID, userID: request.userID)
        pipeline.decide(.user(user)) { [self] loaded throws(Problem) in
            try core(
                Rules.enroll(
                    request, codeHash: SHA256.hash(Array(code.utf8)), policy: store.states.policy(for: tenantID),
                    user: loaded.state ?? UserState(key: user), now: clock(), random: &random))
        } then: { [self] result in
            if case .success(let enrollment) = result {
                outcomes.increment("created")
                logger.debug(
                    "enrollment created", metadata: ["tenant": "\(tenantID)", "enrollment_id": "\(enrollment.id)"])
            }
            // The QR code is drawn for an enrollment made, not for a refused one. The URI always fits: public_url is at
            // most 512 bytes (1,536 percent-encoded), a tenant 64, and version 40 holds 2,331 bytes at level M.
            done(
                result.map { enrollment in
                    let qrSVG = (try? QRCode.svg(for: uri)) ?? ""
                    let activation = Views.Activation(code: code, uri: uri, qrSVG: qrSVG)
                    return .json(201, Views.enrollment(enrollment, activation: activation))
                })
        }
    }

    /// The enrollment as it is; with `wait`, held until it leaves `pending` or the wait runs out.
    func read(tenantID: String, enrollmentID: String, wait: Double, _ responder: HTTPResponder) {
        // Due expiries first, so that the status is exact to the millisecond.
        pipeline.decide(.enrollment(enrollmentID)) { [self] loaded throws(Problem) in
            let (state, enrollment) = try Self.owner(of: enrollmentID, in: tenantID, loaded)
            let ticked = Rules.tick(user: state, now: clock())
            return ticked.map { ticked.state.enrollment(enrollmentID) ?? enrollment }
        } then: { [self] result in
            let current: Enrollment
            switch result {
            case .failure(let problem):
                responder.respond(problem.response)
                return
            case .success(let enrollment): current = enrollment
            }
            guard current.isPending, wait > 0 else {
                responder.respond(.json(200, Views.enrollment(current)))
                return
            }
            longPolls.wait(responder, for: enrollmentID, seconds: wait, fanOut: store.fanOut) {
                [states = store.states] answer in
                states.load(.enrollment(enrollmentID)) { loaded in
                    guard case .success(let found) = loaded, let enrollment = found.state?.enrollment(enrollmentID)
                    else { return answer(nil) }
                    answer((.json(200, Views.enrollment(enrollment)), !enrollment.isPending))
                }
            }
        }
    }

    /// Cancels a pending enrollment; an ended one is answered as it is.
    func cancel(
        tenantID: String, enrollmentID: String, _ done: @escaping (Result<HTTPResponse, Problem>) -> Void
    ) {
        pipeline.decide(.enrollment(enrollmentID)) { [self] loaded throws(Problem) in
            let (state, _) = try Self.owner(of: enrollmentID, in: tenantID, loaded)
            return try core(Rules.cancelEnrollment(enrollmentID, user: state, now: clock()))
        } then: { result in
            done(result.map { .json(200, Views.enrollment($0)) })
        }
    }

    /// A phone completes the enrollment its code names: 201 as a new device with an id approvald chooses, or 200
    /// with the same body for the same code and key again.
    func complete(_ body: EnrollBody, _ done: @escaping (Result<HTTPResponse, Problem>) -> Void) throws(Problem) {
        let completion = try body.completion()
        let deviceID = "dev_" + Base64URL.encode(SecureRandom.bytes(16))
        pipeline.decide(.activation(codeHash: completion.codeHash, publicKey: completion.publicKey)) {
            [self] loaded throws(Problem) in
            guard let state = loaded.state else { throw .notFound("no such activation code") }
            return try core(
                Rules.complete(
                    completion, as: deviceID, policy: store.states.policy(for: state.key.tenantID),
                    keyHeldBy: loaded.heldBy, user: state, now: clock()))
        } then: { [self] result in
            done(
                result.map { outcome in
                    switch outcome {
                    case .completed(let enrollment, let device):
                        logger.info(
                            "enrollment completed",
                            metadata: [
                                "tenant": "\(device.tenantID)", "enrollment_id": "\(enrollment.id)",
                                "device_id": "\(device.id)",
                            ])
                        return .json(201, Views.enrolled(device))
                    case .replayed(_, let device): return .json(200, Views.enrolled(device))
                    }
                })
        }
    }

    /// An enrollment ended (here, or on another instance for a long poll here): its long polls are answered, and
    /// its end is counted where it was committed.
    func ended(_ enrollment: Enrollment, committedHere: Bool) {
        if committedHere { outcomes.increment(enrollment.status.rawValue) }
        longPolls.end(enrollment.id, with: .json(200, Views.enrollment(enrollment)))
    }

    /// The state holding the enrollment, and the enrollment, if it is the tenant's: a tenant learns nothing of
    /// another's.
    private static func owner(
        of enrollmentID: String, in tenantID: String, _ loaded: Loaded
    ) throws(Problem) -> (state: UserState, enrollment: Enrollment) {
        guard let state = loaded.state, state.key.tenantID == tenantID, let found = state.enrollment(enrollmentID)
        else { throw .notFound("no such enrollment") }
        return (state, found)
    }
}

extension Enrollments: MetricsSource {
    func writeMetrics(to writer: inout MetricsWriter) {
        writer.family(
            "approvald_enrollments_total", .counter,
            help: "Enrollments created, and ended by outcome (completed, expired, cancelled).")
        outcomes.write("approvald_enrollments_total", labelName: "result", to: &writer)
    }
}
