// A challenge Keycloak handed over as its CIBA channel: its result goes to Keycloak's callback endpoint with the
// request's bearer token, through the outbox; a fallback is called back too; and it ends no later than the token.
import Core
import TestSupport
import Testing

@Suite struct CIBAChannelTests {
    let channel = ResultChannel.ciba(bearerToken: "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiIxIn0.c2ln")

    @Test func itsEndIsAResultDueWithItsToken() throws {
        let core = makeCore()
        try register(core, "phone")
        let (outcome, _) = try core.createChallenge(request(), in: tenant, channel: channel, now: start)
        guard case .created(let challenge) = outcome else { throw TestFailure("not created: \(outcome)") }
        #expect(challenge.channel == channel && challenge.channel.isCallback)
        _ = core.takeChanges()
        _ = try core.answer(challenge.id, from: "phone", approve(42), now: start + second)
        let ended = try #require(core.challenge(challenge.id, in: tenant))
        #expect(core.takeChanges().contains(.resultDue(ended)))
        #expect(ended.channel == channel, "the token stays with the challenge for its callback")
    }

    @Test func itEndsNoLaterThanItsTokenWhateverThePolicySays() throws {
        let core = makeCore { $0.challengeTTLSeconds = 120 }
        try register(core, "phone")
        let notAfter = start + 30 * second
        let (cut, _) = try core.createChallenge(
            request(), in: tenant, channel: channel, notAfter: notAfter, now: start)
        guard case .created(let challenge) = cut else { throw TestFailure("not created: \(cut)") }
        #expect(challenge.expiresAt == notAfter)
        // A retry decided later, with a later bound, is the same request and gets the same challenge.
        let (retried, _) = try core.createChallenge(
            request(), in: tenant, channel: channel, notAfter: notAfter + 5 * second, now: start + 5 * second)
        #expect(retried == .replayedChallenge(challenge))
        // A bound beyond the TTL leaves the TTL.
        try register(core, "bob-phone", user: "bob@contoso.com")
        let (uncut, _) = try core.createChallenge(
            request("signin-2", user: "bob@contoso.com"), in: tenant, channel: channel,
            notAfter: start + 600 * second, now: start)
        guard case .created(let bobs) = uncut else { throw TestFailure("not created: \(uncut)") }
        #expect(bobs.expiresAt == start + 120 * second)
    }

    @Test func aFallbackIsCalledBackButAWebhookFallbackIsNot() throws {
        let core = makeCore()
        let (outcome, events) = try core.createChallenge(request(), in: tenant, channel: channel, now: start)
        guard case .fallback(let fallback) = outcome else { throw TestFailure("not a fallback: \(outcome)") }
        #expect(events.contains(.fallbackResultDue(fallback, bearerToken: "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiIxIn0.c2ln")))
        // Retried: answered from the fallback, with no second callback.
        let (replayed, again) = try core.createChallenge(request(), in: tenant, channel: channel, now: start + second)
        #expect(replayed == .replayedFallback(fallback))
        #expect(!again.contains { if case .fallbackResultDue = $0 { true } else { false } })
        // The IdP API's fallback is its create's answer, and nothing more.
        let (_, webhook) = try core.createChallenge(request("signin-2"), in: tenant, now: start)
        #expect(!webhook.contains { if case .fallbackResultDue = $0 { true } else { false } })
    }
}
