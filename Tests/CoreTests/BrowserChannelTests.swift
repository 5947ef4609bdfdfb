// A challenge made for a browser's OpenID Connect sign-in: its result goes to the browser, not to a verifier, and
// the authorization code of an approval is redeemed once, only while the device that approved it is the user's.
import Core
import TestSupport
import Testing

@Suite struct BrowserChannelTests {
    /// A challenge for `alice`'s phone, approved with the right number.
    func approvedForABrowser(_ core: TestCore) throws -> Challenge {
        try register(core, "phone")
        let (outcome, _) = try core.createChallenge(
            request(), in: tenant, channel: .browser(codeRedeemed: false), now: start)
        guard case .created(let challenge) = outcome else { throw TestFailure("not created: \(outcome)") }
        #expect(challenge.channel == .browser(codeRedeemed: false))
        _ = core.takeChanges()
        _ = try core.answer(challenge.id, from: "phone", approve(42), now: start + second)
        return try #require(core.challenge(challenge.id, in: tenant))
    }

    @Test func aBrowsersResultGoesToNoVerifier() throws {
        let core = makeCore()
        let challenge = try approvedForABrowser(core)
        let changes = core.takeChanges()
        #expect(changes.contains(.challengeSaved(challenge)))
        #expect(!changes.contains { if case .resultDue = $0 { true } else { false } })
        // A challenge of the IdP's API sends its result, as before.
        let other = try create(core, request("signin-2"), at: start + 2 * second)
        _ = try core.answer(other.id, from: "phone", approve(42), now: start + 3 * second)
        #expect(core.takeChanges().contains { if case .resultDue = $0 { true } else { false } })
    }

    @Test func aCodeIsRedeemedOnce() throws {
        let core = makeCore()
        let challenge = try approvedForABrowser(core)
        let (redeemed, events) = try core.redeemCode(for: challenge.id, in: tenant)
        #expect(redeemed.channel == .browser(codeRedeemed: true) && redeemed.status == .approved)
        #expect(events == [.challengeSaved(redeemed)])
        #expect(core.challenge(challenge.id, in: tenant)?.channel == .browser(codeRedeemed: true))
        #expect(throws: CoreError(.alreadyResolved, "the code was redeemed already")) {
            try core.redeemCode(for: challenge.id, in: tenant)
        }
    }

    /// Of two redemptions decided on the same version (two instances at once), only the first commits: the store's
    /// version check is what makes a code single-use among instances.
    @Test func twoRedemptionsOnOneVersionCommitOnce() throws {
        let core = makeCore()
        let challenge = try approvedForABrowser(core)
        let user = core.state(challenge.user)
        let first = try Rules.redeemCode(for: challenge.id, user: user)
        let second = try Rules.redeemCode(for: challenge.id, user: user)
        #expect(core.commit(first))
        #expect(!core.commit(second))
    }

    @Test func onlyAnApprovedBrowsersChallengeWithItsDeviceHasACode() throws {
        let core = makeCore()
        try register(core, "phone")
        let (outcome, _) = try core.createChallenge(
            request(), in: tenant, channel: .browser(codeRedeemed: false), now: start)
        guard case .created(let pending) = outcome else { throw TestFailure("not created: \(outcome)") }
        let notFound = CoreError(.notFound, "no such approved sign-in")
        #expect(throws: notFound) { try core.redeemCode(for: pending.id, in: tenant) }
        _ = try core.answer(pending.id, from: "phone", approve(7), now: start + second)
        #expect(core.challenge(pending.id, in: tenant)?.status == .denied)
        #expect(throws: notFound) { try core.redeemCode(for: pending.id, in: tenant) }
        // The IdP API's challenges have no code.
        let viaAPI = try create(core, request("signin-2"), at: start + 2 * second)
        _ = try core.answer(viaAPI.id, from: "phone", approve(42), now: start + 3 * second)
        #expect(throws: notFound) { try core.redeemCode(for: viaAPI.id, in: tenant) }
    }

    /// An approval whose device was removed since: its code is worth nothing.
    @Test func aCodeDiesWithTheDeviceThatApprovedIt() throws {
        let core = makeCore()
        let challenge = try approvedForABrowser(core)
        try register(core, "tablet")
        _ = try core.removeDevice("phone", in: tenant)
        #expect(throws: CoreError(.notFound, "no such approved sign-in")) {
            try core.redeemCode(for: challenge.id, in: tenant)
        }
    }
}
