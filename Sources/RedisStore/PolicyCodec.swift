// A tenant's stored policy as the bytes of one field of `ap:policies`.
import Core
import Store

enum PolicyCodec {
    static let format: UInt8 = 1

    static func encode(_ policy: TenantPolicy) -> [UInt8] {
        var out = BinaryWriter()
        out.byte(format)
        out.byte(policy.passwordless ? 1 : 0)
        out.choice(policy.target)
        let users = policy.users.sorted()
        out.count(users.count)
        for user in users { out.string(user) }
        for limit in [
            policy.maxDevicesPerUser, policy.challengeTTLSeconds, policy.choices, policy.maxPendingPerUser,
            policy.maxChallengesPerWindow, policy.windowSeconds, policy.lockoutSeconds,
        ] { out.number(limit) }
        return out.bytes
    }

    static func decode(_ bytes: ArraySlice<UInt8>, tenantID: String) throws(StoreError) -> TenantPolicy {
        var input = BinaryReader(bytes: bytes, subject: "the policy of \(tenantID)")
        guard try input.byte() == format else { throw input.damaged("an unknown format") }
        var policy = TenantPolicy()
        policy.passwordless = try input.flag()
        policy.target = try input.choice(TenantPolicy.Target.self)
        policy.users = Set(try input.list { reader throws(StoreError) in try reader.string() })
        policy.maxDevicesPerUser = try input.number()
        policy.challengeTTLSeconds = try input.number()
        policy.choices = try input.number()
        policy.maxPendingPerUser = try input.number()
        policy.maxChallengesPerWindow = try input.number()
        policy.windowSeconds = try input.number()
        policy.lockoutSeconds = try input.number()
        guard input.isAtEnd else { throw input.damaged("bytes after the end") }
        do throws(CoreError) { try policy.validate() } catch {
            throw input.damaged("a policy out of bounds (\(error))")
        }
        return policy
    }
}
