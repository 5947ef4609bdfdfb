// Keycloak's CIBA channel in the Service: the bearer token read from its field, what the phone is shown cut to a
// context value's length, each end told to Keycloak as its status, and a fallback's callback named after its request.
import Core
import HTTP
import OIDC
import Store
import Testing

@testable import Service

@Suite struct CIBAChannelServiceTests {
    @Test func theBearerTokenIsReadFromItsFieldInAnyCase() {
        func token(_ field: String?) -> String? {
            CIBAChannel.bearerToken(
                HTTPRequest(
                    method: "POST", path: "/v1/tenants/t/ciba", headers: field.map { [("authorization", $0)] } ?? []))
        }
        #expect(token("Bearer abc.def.ghi") == "abc.def.ghi")
        #expect(token("bearer abc.def.ghi ") == "abc.def.ghi")
        #expect(token("BEARER x") == "x")
        for refused in [nil, "Bearer", "Bearer ", "Bearer    ", "Basic YTpi", "Bearerabc"] {
            #expect(token(refused) == nil, "\(refused ?? "no field")")
        }
    }

    @Test func aLongValueIsCutOnACharacter() {
        #expect(CIBAChannel.prefix("openid profile", maxBytes: 256) == "openid profile")
        let long = String(repeating: "scope ", count: 60)
        #expect(CIBAChannel.prefix(long, maxBytes: 256).utf8.count == 256)
        // "é" is two bytes: the cut never splits it.
        #expect(CIBAChannel.prefix(String(repeating: "é", count: 200), maxBytes: 255).utf8.count == 254)
    }

    @Test func eachEndIsToldAsItsStatus() {
        #expect(CIBAStatus(.approved) == .succeed && CIBAStatus(.cancelled) == .cancelled)
        #expect(CIBAStatus(.denied) == .unauthorized && CIBAStatus(.expired) == .unauthorized)
        #expect(CIBAStatus.succeed.callbackBody == #"{"status":"SUCCEED"}"#)
    }

    @Test func aFallbacksCallbackIsNamedAfterItsRequestAndCarriesTheToken() {
        let fallback = Fallback(
            tenantID: "contoso", request: ChallengeRequest(requestID: "ciba-1", userID: "mia", number: 4),
            reason: .noDevice, decidedAt: 5000)
        let entries = OutboxEntry.callbacks(
            for: [.fallbackSaved(fallback), .fallbackResultDue(fallback, bearerToken: "a.b.c")], now: 6000,
            holdMillis: 100)
        #expect(entries.count == 1)
        let entry = entries[0]
        #expect(entry.challengeID.hasPrefix("fb_") && entry.challengeID.utf8.count == 25)
        #expect(entry.body == #"{"status":"UNAUTHORIZED"}"# && entry.target == .ciba(bearerToken: "a.b.c"))
        #expect(entry.endedAt == 5000 && entry.nextAttemptAt == 5100 && entry.partition == fallback.user.partition)
        // The same request decided again names the same callback; another request another.
        #expect(OutboxEntry.fallbackCallbackID(fallback) == entry.challengeID)
        let other = Fallback(
            tenantID: "fabrikam", request: fallback.request, reason: .noDevice, decidedAt: 5000)
        #expect(OutboxEntry.fallbackCallbackID(other) != entry.challengeID)
    }
}
