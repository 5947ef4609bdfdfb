// The ID token's claims (API.md, "OpenID Connect"): who signed in, for which client, when, by which challenge, and
// how — `acr` and `amr` as a claims request (Microsoft Entra ID's) asks for them.
import JSONText

public enum IDToken {
    /// How long an ID token is valid.
    public static let lifetimeSeconds: Int64 = 600

    /// The `amr` values this sign-in can truthfully claim, in order of preference: a key in hardware (a phone's
    /// secure element), or in software.
    static let methods = ["hwk", "swk"]

    /// The claims, as the JSON text to sign.
    /// - Parameters:
    ///   - subject: the approvald user id, or the `sub` of the id_token_hint the client sent.
    ///   - userID: the approvald user who approved (`preferred_username`).
    public static func claims(
        issuer: String, clientID: String, subject: String, userID: String, nonce: String?, challengeID: String,
        authTime: Int64, issuedAt: Int64, requested: RequestedClaims
    ) -> String {
        JSONWriter.object { token in
            token.string("iss", issuer)
            token.string("sub", subject)
            token.string("aud", clientID)
            token.integer("exp", issuedAt + lifetimeSeconds)
            token.integer("iat", issuedAt)
            token.integer("auth_time", authTime)
            // Absent rather than null when not asked for (OpenID Connect Core §2).
            if let nonce { token.string("nonce", nonce) }
            token.string("preferred_username", userID)
            token.string("approvald_challenge_id", challengeID)
            if let acr = requested.acrValues.first { token.string("acr", acr) }
            token.strings("amr", [amr(accepting: requested.amrValues)])
        }
    }

    /// The first of `hwk`, `swk` that the request accepts; `hwk` when it lists neither or nothing.
    static func amr(accepting values: [String]) -> String {
        methods.first { values.contains($0) } ?? methods[0]
    }
}
