// The request bodies of API.md, read from their JSON objects with the field names of the contract, and the domain
// values they stand for.
import Core
import Crypto
import Foundation
import Protocol

struct PolicyBody: RequestBody {
    var passwordless: Bool?
    var target: String?
    var users: [String]?
    var maxDevicesPerUser: Int?
    var challengeTTLSeconds: Int?
    var choices: Int?
    var maxPendingPerUser: Int?
    var maxChallengesPerWindow: Int?
    var windowSeconds: Int?
    var lockoutSeconds: Int?

    init(_ object: JSONObject) throws(Problem) {
        passwordless = try object.optionalBool("passwordless")
        target = try object.optionalString("target")
        users = try object.optionalStrings("users")
        maxDevicesPerUser = try object.optionalInteger("max_devices_per_user")
        challengeTTLSeconds = try object.optionalInteger("challenge_ttl_seconds")
        choices = try object.optionalInteger("choices")
        maxPendingPerUser = try object.optionalInteger("max_pending_per_user")
        maxChallengesPerWindow = try object.optionalInteger("max_challenges_per_window")
        windowSeconds = try object.optionalInteger("window_seconds")
        lockoutSeconds = try object.optionalInteger("lockout_seconds")
    }
}

struct PushBody: RequestBody {
    var provider: String
    var token: String?
    var topic: String?

    init(_ object: JSONObject) throws(Problem) {
        provider = try object.string("provider")
        token = try object.optionalString("token")
        topic = try object.optionalString("topic")
    }
}

struct DeviceBody: RequestBody {
    var userID: String
    var publicKey: String
    var push: PushBody?
    var mamRestricted: Bool?
    var displayName: String?

    init(_ object: JSONObject) throws(Problem) {
        userID = try object.string("user_id")
        publicKey = try object.string("public_key")
        push = try object.optionalObject("push").map { object throws(Problem) in try PushBody(object) }
        mamRestricted = try object.optionalBool("mam_restricted")
        displayName = try object.optionalString("display_name")
    }
}

struct ChallengeBody: RequestBody {
    var requestID: String
    var userID: String
    var number: Int
    var ttlSeconds: Int?
    var context: [String: String]?

    init(_ object: JSONObject) throws(Problem) {
        requestID = try object.string("request_id")
        userID = try object.string("user_id")
        number = try object.integer("number")
        ttlSeconds = try object.optionalInteger("ttl_seconds")
        context = try object.optionalStringMap("context")
    }
}

struct AnswerBody: RequestBody {
    var decision: String
    var selectedNumber: Int?
    var reason: String?
    var signedAtUnix: Int
    var signature: String

    init(_ object: JSONObject) throws(Problem) {
        decision = try object.string("decision")
        selectedNumber = try object.optionalInteger("selected_number")
        reason = try object.optionalString("reason")
        signedAtUnix = try object.integer("signed_at_unix")
        signature = try object.string("signature")
    }
}

struct EnrollmentBody: RequestBody {
    var userID: String
    var displayName: String?
    var mamRestricted: Bool?
    var ttlSeconds: Int?

    init(_ object: JSONObject) throws(Problem) {
        userID = try object.string("user_id")
        displayName = try object.optionalString("display_name")
        mamRestricted = try object.optionalBool("mam_restricted")
        ttlSeconds = try object.optionalInteger("ttl_seconds")
    }

    var request: EnrollmentRequest {
        EnrollmentRequest(
            userID: userID, displayName: displayName ?? "", mamRestricted: mamRestricted ?? false,
            ttlSeconds: ttlSeconds ?? EnrollmentRequest.defaultTTLSeconds)
    }
}

/// A phone's completion of an enrollment (`POST /v1/enroll`).
struct EnrollBody: RequestBody {
    var activationCode: String
    var publicKey: String
    var proof: String
    var push: PushBody?
    var displayName: String?

    init(_ object: JSONObject) throws(Problem) {
        activationCode = try object.string("activation_code")
        publicKey = try object.string("public_key")
        proof = try object.string("proof")
        push = try object.optionalObject("push").map { object throws(Problem) in try PushBody(object) }
        displayName = try object.optionalString("display_name")
    }
}

extension PolicyBody {
    /// The policy, each field not given at its default.
    func policy() throws(Problem) -> TenantPolicy {
        var policy = TenantPolicy()
        if let target {
            guard let parsed = TenantPolicy.Target(rawValue: target) else {
                throw Problem.invalidField("target must be all or selected")
            }
            policy.target = parsed
        }
        policy.passwordless = passwordless ?? policy.passwordless
        policy.users = Set(users ?? [])
        policy.maxDevicesPerUser = maxDevicesPerUser ?? policy.maxDevicesPerUser
        policy.challengeTTLSeconds = challengeTTLSeconds ?? policy.challengeTTLSeconds
        policy.choices = choices ?? policy.choices
        policy.maxPendingPerUser = maxPendingPerUser ?? policy.maxPendingPerUser
        policy.maxChallengesPerWindow = maxChallengesPerWindow ?? policy.maxChallengesPerWindow
        policy.windowSeconds = windowSeconds ?? policy.windowSeconds
        policy.lockoutSeconds = lockoutSeconds ?? policy.lockoutSeconds
        return policy
    }
}

extension DeviceBody {
    /// The registration, its key checked to be a P-256 SubjectPublicKeyInfo.
    func registration() throws(Problem) -> DeviceRegistration {
        guard let der = Data(base64Encoded: publicKey).map(Array.init), (try? P256PublicKey(spkiDER: der)) != nil
        else { throw Problem.invalidField("public_key is not base64 of a P-256 SubjectPublicKeyInfo") }
        return DeviceRegistration(
            userID: userID, publicKey: der, push: try push?.target() ?? .none, mamRestricted: mamRestricted ?? false,
            displayName: displayName ?? "")
    }
}

extension PushBody {
    func target() throws(Problem) -> PushTarget {
        guard let provider = PushTarget.Provider(rawValue: provider) else {
            throw Problem.invalidField("push.provider must be apns, fcm or none")
        }
        let target = PushTarget(provider: provider, token: token ?? "", topic: topic ?? "")
        guard provider == .none || !target.token.isEmpty else {
            throw Problem.invalidField("push.token is required for \(provider.rawValue)")
        }
        return target
    }
}

extension EnrollBody {
    /// The completion, once the proof is checked: a signature by the new key over the code and the key.
    func completion() throws(Problem) -> EnrollmentCompletion {
        guard (1...256).contains(activationCode.utf8.count) else {
            throw Problem.invalidField("activation_code must be 1-256 characters")
        }
        guard let der = Data(base64Encoded: publicKey).map(Array.init), let key = try? P256PublicKey(spkiDER: der)
        else { throw Problem.invalidField("public_key is not base64 of a P-256 SubjectPublicKeyInfo") }
        guard let signature = Base64URL.decode(proof),
            key.isValidSignature(
                signature, for: Array(enrollmentProofMessage(code: activationCode, publicKey: publicKey).utf8))
        else { throw Problem.badSignature("proof does not verify with public_key") }
        return EnrollmentCompletion(
            codeHash: SHA256.hash(Array(activationCode.utf8)), publicKey: der, push: try push?.target() ?? .none,
            displayName: displayName)
    }
}

extension ChallengeBody {
    func request() throws(Problem) -> ChallengeRequest {
        ChallengeRequest(
            requestID: requestID, userID: userID, number: number, ttlSeconds: ttlSeconds,
            context: try core(ChallengeContext(validating: context ?? [:])))
    }
}

extension AnswerBody {
    func signedDecision() throws(Problem) -> Decision {
        let kind: Decision.Kind
        switch decision {
        case "approve":
            guard let number = selectedNumber, (0...99).contains(number) else {
                throw Problem.invalidField("selected_number within 0...99 is required to approve")
            }
            kind = .approve(selectedNumber: number)
        case "deny":
            guard let reason = reason.flatMap(DenyReason.init(rawValue:)) else {
                throw Problem.invalidField("reason must be not_me or cancelled to deny")
            }
            kind = .deny(reason: reason)
        default:
            throw Problem.invalidField("decision must be approve or deny")
        }
        return Decision(kind: kind, signedAtUnix: Int64(signedAtUnix), signature: signature)
    }
}
