// Enrollment's rules: created under the device rules and a bound on pending ones, completed once by the phone with its
// code and key (a retry with the same key replayed, any other use refused alike), cancelled, expired and forgotten
// on time.
import Core
import TestSupport
import Testing

@Suite struct EnrollmentTests {
    let code: [UInt8] = Array(repeating: 7, count: 32)
    let phoneKey: [UInt8] = [0x30, 0x59, 9, 9, 9]

    func enroll(
        _ core: TestCore, code: [UInt8]? = nil, ttl: Int = 600, mam: Bool = false, at now: UnixMillis = start
    ) throws -> Enrollment {
        try core.enroll(
            EnrollmentRequest(userID: alice, displayName: "Alice's phone", mamRestricted: mam, ttlSeconds: ttl),
            in: tenant, codeHash: code ?? self.code, now: now
        ).0
    }

    func completion(key: [UInt8]? = nil, code: [UInt8]? = nil) -> EnrollmentCompletion {
        EnrollmentCompletion(codeHash: code ?? self.code, publicKey: key ?? phoneKey)
    }

    @Test func anEnrollmentIsPendingUntilThePhoneCompletesItAsANewDevice() throws {
        let core = makeCore()
        let enrollment = try enroll(core)
        #expect(enrollment.id.hasPrefix("en_") && enrollment.id.utf8.count == 25)
        #expect(Partition(enrollmentID: enrollment.id) == UserKey(tenantID: tenant, userID: alice).partition)
        #expect(enrollment.status == .pending && enrollment.expiresAt == start + 600 * second)
        #expect(core.state(UserKey(tenantID: tenant, userID: alice)).nextDeadline == enrollment.expiresAt)

        let (outcome, events) = try core.complete(completion(), as: "dev_1", now: start + second)
        guard case .completed(let completed, let device) = outcome else { throw TestFailure("\(outcome)") }
        #expect(completed.status == .completed && completed.deviceID == "dev_1" && completed.end?.at == start + second)
        #expect(device.publicKey == phoneKey && device.displayName == "Alice's phone" && device.userID == alice)
        #expect(events.contains(.deviceSaved(device)) && events.contains(.enrollmentEnded(completed)))
        #expect(core.device("dev_1") == device)
        #expect(core.enrollment(enrollment.id)?.status == .completed)
    }

    @Test func aRetryWithTheSameKeyIsReplayedAndAnyOtherUseIsOneRefusal() throws {
        let core = makeCore()
        _ = try enroll(core)
        _ = try core.complete(completion(), as: "dev_1", now: start + second)
        let (again, events) = try core.complete(completion(), as: "dev_2", now: start + 2 * second)
        guard case .replayed(_, let device) = again else { throw TestFailure("\(again)") }
        #expect(device.id == "dev_1" && events.isEmpty)
        let refusal = CoreError(.notFound, "no such activation code")
        #expect(throws: refusal) {
            try core.complete(completion(key: [0x30, 1]), as: "dev_3", now: start + 3 * second)
        }
        #expect(throws: refusal) {
            try core.complete(completion(code: Array(repeating: 8, count: 32)), as: "dev_3", now: start)
        }
    }

    @Test func anExpiredOrCancelledCodeIsRefusedLikeAnUnknownOne() throws {
        let core = makeCore()
        let enrollment = try enroll(core, ttl: 60)
        let refusal = CoreError(.notFound, "no such activation code")
        #expect(throws: refusal) { try core.complete(completion(), as: "dev_1", now: start + 60 * second) }
        let events = core.tick(now: start + 60 * second)
        #expect(
            events.contains { if case .enrollmentEnded(let ended) = $0 { ended.status == .expired } else { false } })

        let other: [UInt8] = Array(repeating: 9, count: 32)
        let another = try enroll(core, code: other, at: start + 61 * second)
        let (cancelled, _) = try core.cancelEnrollment(another.id, in: tenant, now: start + 62 * second)
        #expect(cancelled.status == .cancelled)
        #expect(throws: refusal) { try core.complete(completion(code: other), as: "dev_1", now: start + 63 * second) }
        // Cancelling again returns it as it is; the expired one stays expired.
        #expect(try core.cancelEnrollment(another.id, in: tenant, now: start + 64 * second).0 == cancelled)
        #expect(try core.cancelEnrollment(enrollment.id, in: tenant, now: start + 64 * second).0.status == .expired)
    }

    @Test func endedEnrollmentsAreForgottenAfterTheWindow() throws {
        let core = makeCore()
        let enrollment = try enroll(core)
        _ = try core.complete(completion(), as: "dev_1", now: start + second)
        let forgetAt = start + second + Rules.rememberMillis
        #expect(core.state(UserKey(tenantID: tenant, userID: alice)).nextDeadline == forgetAt)
        #expect(core.tick(now: forgetAt - 1).isEmpty)
        #expect(core.tick(now: forgetAt) == [.enrollmentForgotten(enrollmentID: enrollment.id)])
        #expect(core.enrollment(enrollment.id) == nil)
        #expect(throws: CoreError(.notFound, "no such activation code")) {
            try core.complete(completion(), as: "dev_2", now: forgetAt)
        }
    }

    @Test func theDeviceRulesApplyAtCreationAndAgainAtCompletion() throws {
        #expect(throws: CoreError(.mamRestricted, "the user is under mobile-app management")) {
            try enroll(makeCore(), mam: true)
        }
        #expect(throws: CoreError(.policyExcluded, "the tenant's policy does not target the user")) {
            try enroll(makeCore { $0.target = .selected })
        }
        let full = makeCore { $0.maxDevicesPerUser = 1 }
        try register(full, "phone-1")
        #expect(throws: CoreError(.deviceLimit, "the user already has 1 devices")) { try enroll(full) }

        // Room at creation, none at completion: refused, and the enrollment stays pending.
        let core = makeCore { $0.maxDevicesPerUser = 1 }
        let enrollment = try enroll(core)
        try register(core, "phone-1")
        #expect(throws: CoreError(.deviceLimit, "the user already has 1 devices")) {
            try core.complete(completion(), as: "dev_1", now: start + second)
        }
        #expect(core.enrollment(enrollment.id)?.status == .pending)
    }

    @Test func aKeyThatIsAlreadyADevicesIsAConflict() throws {
        let core = makeCore()
        try register(core, "phone-1")
        _ = try enroll(core)
        #expect(throws: CoreError(.deviceTenantConflict, "the key is already a registered device's")) {
            try core.complete(completion(key: key), as: "dev_1", now: start + second)
        }
    }

    @Test func atMostFivePendingEnrollmentsAUser() throws {
        let core = makeCore()
        for index in 0..<Rules.maxPendingEnrollments {
            _ = try enroll(core, code: Array(repeating: UInt8(index), count: 32))
        }
        #expect(throws: CoreError(.rateLimited, "the user already has 5 pending enrollments")) {
            try enroll(core, code: Array(repeating: 99, count: 32))
        }
        // Once one has expired there is room again.
        _ = try enroll(core, code: Array(repeating: 99, count: 32), at: start + 600 * second)
    }

    @Test func theRequestIsChecked() throws {
        for ttl in [59, 3601] {
            #expect(throws: CoreError(.invalidField, "ttl_seconds must be within 60...3600")) {
                try enroll(makeCore(), ttl: ttl)
            }
        }
        let long = String(repeating: "x", count: 257)
        #expect(throws: CoreError(.invalidField, "display_name is longer than 256 bytes")) {
            try makeCore().enroll(
                EnrollmentRequest(userID: alice, displayName: long), in: tenant, codeHash: code, now: start)
        }
    }
}
