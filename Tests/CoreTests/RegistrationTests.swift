// Policies and the device registry's rules.
import Core
import TestSupport
import Testing

@Suite struct PolicyTests {
    @Test func storedPoliciesWinOverConfiguredOnesWhichWinOverTheBase() throws {
        var configured = TenantPolicy()
        configured.choices = 5
        let core = TestCore(random: SeededRandom(), configuredPolicies: ["fabrikam": configured])
        #expect(core.policy(for: "contoso").choices == 3)
        #expect(core.policy(for: "fabrikam").choices == 5)
        var stored = configured
        stored.choices = 4
        let events = try core.setPolicy(stored, for: "fabrikam")
        #expect(events == [.policySaved(tenantID: "fabrikam", stored)])
        #expect(core.policy(for: "fabrikam").choices == 4)
    }

    static var bounds: [String: (WritableKeyPath<TenantPolicy, Int>, ClosedRange<Int>)] {
        [
            "max_devices_per_user": (\.maxDevicesPerUser, 1...100),
            "challenge_ttl_seconds": (\.challengeTTLSeconds, 10...600),
            "choices": (\.choices, 2...10), "max_pending_per_user": (\.maxPendingPerUser, 1...100),
            "window_seconds": (\.windowSeconds, 1...86_400), "lockout_seconds": (\.lockoutSeconds, 0...2_592_000),
            "max_challenges_per_window": (\.maxChallengesPerWindow, 1...100_000),
        ]
    }

    @Test(arguments: [
        "max_devices_per_user", "challenge_ttl_seconds", "choices", "max_pending_per_user", "window_seconds",
        "lockout_seconds", "max_challenges_per_window",
    ])
    func outOfRangeFieldsAreRefusedByName(name: String) throws {
        let (field, range) = Self.bounds[name]!
        let core = makeCore()
        for value in [range.lowerBound - 1, range.upperBound + 1] {
            var policy = TenantPolicy()
            policy[keyPath: field] = value
            #expect(
                throws: CoreError(.invalidField, "\(name) must be within \(range.lowerBound)...\(range.upperBound)")
            ) {
                try core.setPolicy(policy, for: tenant)
            }
        }
        #expect(core.policy(for: tenant) == TenantPolicy())
        // The bounds themselves are accepted.
        for value in [range.lowerBound, range.upperBound] {
            var policy = TenantPolicy()
            policy[keyPath: field] = value
            _ = try core.setPolicy(policy, for: tenant)
        }
    }

    @Test func selectedTargetsOnlyItsUsers() {
        var policy = TenantPolicy()
        policy.target = .selected
        policy.users = [alice]
        #expect(policy.targets(alice) && policy.offersPasswordless(to: alice))
        #expect(!policy.targets("bob@contoso.com"))
        policy.passwordless = false
        #expect(policy.targets(alice) && !policy.offersPasswordless(to: alice))
    }
}

@Suite struct RegistrationTests {
    @Test func createsUpdatesAndRecognisesTheSameRegistration() throws {
        let core = makeCore()
        let registration = DeviceRegistration(
            userID: alice, publicKey: key, push: PushTarget(provider: .apns, token: "ab", topic: "t"),
            displayName: "Alice's iPhone")
        let (created, events) = try core.registerDevice("phone-1", in: tenant, registration, now: start)
        guard case .created(let device) = created else { throw TestFailure("not created: \(created)") }
        #expect(events == [.deviceSaved(device)])
        #expect(device.createdAt == start && device.userID == alice && device.tenantID == tenant)

        let (again, noEvents) = try core.registerDevice("phone-1", in: tenant, registration, now: start + second)
        #expect(again == .unchanged(device))
        #expect(noEvents.isEmpty)

        var rotated = registration
        rotated.push.token = "cd"
        let (updated, updateEvents) = try core.registerDevice("phone-1", in: tenant, rotated, now: start + second)
        guard case .updated(let changed) = updated else { throw TestFailure("not updated: \(updated)") }
        #expect(changed.push.token == "cd" && changed.createdAt == start)
        // The id and the key are as they were: stored, with no index to change.
        #expect(updateEvents == [.deviceUpdated(changed)])
        #expect(core.devices(of: alice, in: tenant).map(\.id) == ["phone-1"])

        var rekeyed = rotated
        rekeyed.publicKey = Array(key.reversed())
        let (replaced, rekeyEvents) = try core.registerDevice("phone-1", in: tenant, rekeyed, now: start + second)
        guard case .updated(let withNewKey) = replaced else { throw TestFailure("not updated: \(replaced)") }
        // A new key is saved as a registration is: the stores index it.
        #expect(rekeyEvents == [.deviceSaved(withNewKey)])
    }

    @Test func aDeviceServesExactlyOneAccount() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let otherUser = DeviceRegistration(userID: "bob@contoso.com", publicKey: key)
        #expect(throws: CoreError(.deviceTenantConflict, "the device is registered to another account")) {
            try core.registerDevice("phone-1", in: tenant, otherUser, now: start)
        }
        let otherTenant = DeviceRegistration(userID: alice, publicKey: key)
        #expect(throws: CoreError(.deviceTenantConflict, "the device is registered to another account")) {
            try core.registerDevice("phone-1", in: "fabrikam", otherTenant, now: start)
        }
        #expect(core.device("phone-1")?.tenantID == tenant)
    }

    @Test func theDeviceLimitCountsNewDevicesOnly() throws {
        let core = makeCore { $0.maxDevicesPerUser = 2 }
        try register(core, "phone-1")
        try register(core, "phone-2")
        #expect(throws: CoreError(.deviceLimit, "the user already has 2 devices")) { try register(core, "phone-3") }
        // Updating an existing device at the limit is fine; another user is not limited by alice's devices.
        try register(core, "phone-2")
        try register(core, "phone-9", user: "bob@contoso.com")
        // Removing one makes room.
        _ = try core.removeDevice("phone-1", in: tenant)
        try register(core, "phone-3")
        #expect(core.devices(of: alice, in: tenant).map(\.id) == ["phone-2", "phone-3"])
    }

    @Test func mobileAppManagementAndPolicyExclusionRefuse() throws {
        let core = makeCore {
            $0.target = .selected
            $0.users = [alice]
        }
        let managed = DeviceRegistration(userID: alice, publicKey: key, mamRestricted: true)
        #expect(throws: CoreError(.mamRestricted, "the user is under mobile-app management")) {
            try core.registerDevice("phone-1", in: tenant, managed, now: start)
        }
        #expect(throws: CoreError(.policyExcluded, "the tenant's policy does not target the user")) {
            try register(core, "phone-2", user: "bob@contoso.com")
        }
        #expect(core.device("phone-1") == nil && core.device("phone-2") == nil)
        try register(core, "phone-3")
    }

    @Test(arguments: [
        ("Contoso", "phone-1", alice), ("", "phone-1", alice), (String(repeating: "a", count: 65), "phone-1", alice),
        ("contoso", "phone 1", alice), ("contoso", "", alice), ("contoso", String(repeating: "d", count: 129), alice),
        ("contoso", "phone/1", alice), ("contoso", "phone-1", ""), ("contoso", "phone-1", "al\u{7}ice"),
        ("contoso", "phone-1", String(repeating: "u", count: 257)), ("contoso", "phone-1", "bell\u{85}"),
    ])
    func malformedIdsAreRefused(tenantID: String, deviceID: String, user: String) {
        let core = makeCore()
        #expect(throws: CoreError.self) { try register(core, deviceID, user: user, in: tenantID) }
        #expect(core.device(deviceID) == nil)
    }

    @Test func acceptsTheWholeIdAlphabetsAndNonASCIIUsers() throws {
        let core = makeCore()
        try register(core, "A-z_0.9:x", user: "ålice@exämple.se", in: "tenant-0")
        try register(core, String(repeating: "d", count: 128), user: String(repeating: "u", count: 256))
    }

    @Test func removingADeviceIsTenantScopedAndEmptiesItsQueue() throws {
        let core = makeCore { $0.maxPendingPerUser = 3 }
        try register(core, "phone-1")
        try register(core, "phone-2")
        _ = try create(core, request("r1"))
        _ = try create(core, request("r2"))
        #expect(core.queueDepth == 4 && core.queueDepthByTenant[tenant] == 4)
        #expect(throws: CoreError(.notFound, "no such device")) { try core.removeDevice("phone-1", in: "fabrikam") }
        let events = try core.removeDevice("phone-1", in: tenant)
        #expect(events == [.deviceRemoved(tenantID: tenant, deviceID: "phone-1")])
        #expect(core.queueDepth == 2 && core.queue(of: "phone-1", now: start).isEmpty)
        #expect(core.queue(of: "phone-2", now: start).count == 2)
        #expect(throws: CoreError(.notFound, "no such device")) { try core.removeDevice("phone-1", in: tenant) }
    }

    @Test func pushTokensRotate() throws {
        let core = makeCore()
        try register(core, "phone-1")
        let target = PushTarget(provider: .fcm, token: "new", topic: "")
        let events = try core.updatePush(target, for: "phone-1")
        #expect(core.device("phone-1")?.push == target)
        #expect(events.count == 1)
        #expect(try core.updatePush(target, for: "phone-1").isEmpty)
        #expect(throws: CoreError(.notFound, "no such device")) { try core.updatePush(target, for: "nope") }
    }
}
