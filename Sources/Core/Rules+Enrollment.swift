// The rules of enrollment (API.md, "Enrollment"): an IdP asks for one, the phone completes it with its activation
// code and a key of its own, the IdP may cancel it, and time expires it and later forgets it.

extension Rules {
    /// Pending enrollments a user may have at once.
    public static let maxPendingEnrollments = 5

    /// Creates an enrollment whose activation code has the SHA-256 `codeHash` (the Service makes the code and keeps
    /// only this). The device rules are checked now, and again at completion.
    public static func enroll<Random: RandomNumberGenerator>(
        _ request: EnrollmentRequest, codeHash: [UInt8], policy: TenantPolicy, user: UserState, now: UnixMillis,
        random: inout Random
    ) throws(CoreError) -> Transition<Enrollment> {
        try Validate.tenantID(user.key.tenantID)
        try request.validate()
        precondition(user.key.userID == request.userID, "the request's user is the state's")
        var work = Work(user)
        expireEnrollments(now: now, &work)
        try checkDeviceRules(
            mamRestricted: request.mamRestricted, policy: policy, user: work.state, addingADevice: true)
        guard work.state.enrollments.filter(\.isPending).count < maxPendingEnrollments else {
            throw CoreError(.rateLimited, "the user already has \(maxPendingEnrollments) pending enrollments")
        }
        let enrollment = Enrollment(
            id: PartitionedID.make(.enrollment, in: user.partition, using: &random), tenantID: user.key.tenantID,
            request: request, codeHash: codeHash, createdAt: now,
            expiresAt: now + UnixMillis(request.ttlSeconds) * 1000)
        work.state.enrollments.append(enrollment)
        work.changes.append(.enrollmentSaved(enrollment))
        return work.finish(enrollment)
    }

    /// A phone completes the enrollment its code names, as the device `deviceID` (which the Service chose).
    /// - Parameter keyHeldBy: the user one of whose devices has the phone's key now, if any (the store's index).
    public static func complete(
        _ completion: EnrollmentCompletion, as deviceID: String, policy: TenantPolicy, keyHeldBy: UserKey?,
        user: UserState, now: UnixMillis
    ) throws(CoreError) -> Transition<CompletionOutcome> {
        try Validate.identifier(deviceID, field: "device_id")
        if let displayName = completion.displayName { try Validate.displayName(displayName) }
        // One answer for a code that is unknown, expired, cancelled or used by another key: nothing to learn from it.
        let unusable = CoreError(.notFound, "no such activation code")
        guard let index = user.enrollments.firstIndex(where: { $0.codeHash == completion.codeHash }) else {
            throw unusable
        }
        let found = user.enrollments[index]
        if let registered = found.deviceID {
            guard let device = user.device(registered), device.publicKey == completion.publicKey else { throw unusable }
            return Work(user).finish(.replayed(found, device))
        }
        guard found.isPending, found.expiresAt > now else { throw unusable }
        if keyHeldBy != nil {
            throw CoreError(.deviceTenantConflict, "the key is already a registered device's")
        }
        try checkDeviceRules(
            mamRestricted: found.request.mamRestricted, policy: policy, user: user, addingADevice: true)
        let device = Device(
            id: deviceID, tenantID: user.key.tenantID, userID: user.key.userID, publicKey: completion.publicKey,
            push: completion.push, displayName: completion.displayName ?? found.request.displayName, createdAt: now)
        var work = Work(user)
        work.state.devices.append(device)
        work.changes.append(.deviceSaved(device))
        let completed = end(at: index, EnrollmentEnd(.completed(deviceID: deviceID), at: now), &work)
        return work.finish(.completed(completed, device))
    }

    /// The IdP cancels an enrollment: a pending one becomes `cancelled`; an ended one is returned as it is.
    public static func cancelEnrollment(
        _ enrollmentID: String, user: UserState, now: UnixMillis
    ) throws(CoreError) -> Transition<Enrollment> {
        var work = Work(user)
        expireEnrollments(now: now, &work)
        guard let index = work.state.enrollments.firstIndex(where: { $0.id == enrollmentID }) else {
            throw CoreError(.notFound, "no such enrollment")
        }
        guard work.state.enrollments[index].isPending else { return work.finish(work.state.enrollments[index]) }
        // Ended before `finish` is called: an argument that changed `work` would not be seen by it.
        let cancelled = end(at: index, EnrollmentEnd(.cancelled, at: now), &work)
        return work.finish(cancelled)
    }

    /// Expires the pending enrollments whose time is up, and forgets the ended ones remembered long enough.
    static func tickEnrollments(now: UnixMillis, _ work: inout Work) {
        expireEnrollments(now: now, &work)
        let forgotten = work.state.enrollments.filter { !$0.isPending && $0.deadline <= now }
        guard !forgotten.isEmpty else { return }
        for enrollment in forgotten { work.changes.append(.enrollmentForgotten(enrollment)) }
        work.state.enrollments.removeAll { !$0.isPending && $0.deadline <= now }
    }

    private static func expireEnrollments(now: UnixMillis, _ work: inout Work) {
        for index in work.state.enrollments.indices {
            let enrollment = work.state.enrollments[index]
            if enrollment.isPending && enrollment.expiresAt <= now {
                end(at: index, EnrollmentEnd(.expired, at: now), &work)
            }
        }
    }

    /// Ends the pending enrollment at `index`: stored, its long polls answered, remembered for the window.
    @discardableResult
    private static func end(at index: Int, _ end: EnrollmentEnd, _ work: inout Work) -> Enrollment {
        work.state.enrollments[index].end = end
        let ended = work.state.enrollments[index]
        work.changes.append(.enrollmentSaved(ended))
        work.deliveries.append(.enrollmentEnded(ended))
        return ended
    }
}
