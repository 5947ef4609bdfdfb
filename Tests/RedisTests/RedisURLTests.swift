// The store URL: host, port, credentials and database from `redis://[[user]:password@]host[:port][/db]`, errors that
// name what is wrong and never show the password.
import Testing

@testable import Redis

@Suite struct RedisURLTests {
    @Test func readsHostPortCredentialsAndDatabase() throws {
        let plain = try RedisURL(parsing: "redis://127.0.0.1:6379/0")
        #expect(plain.host == "127.0.0.1" && plain.port == 6379 && plain.database == 0)
        #expect(plain.user == nil && plain.password == nil)
        let full = try RedisURL(parsing: "redis://:s%40cret@redis.internal:6380/3")
        #expect(full.host == "redis.internal" && full.port == 6380 && full.database == 3)
        #expect(full.user == nil && full.password == "s@cret")
        let acl = try RedisURL(parsing: "redis://approvald:pw@[::1]:7000")
        #expect(acl.host == "::1" && acl.port == 7000 && acl.user == "approvald" && acl.password == "pw")
        let defaults = try RedisURL(parsing: "redis://localhost")
        #expect(defaults.port == 6379 && defaults.database == 0)
        #expect(try RedisURL(parsing: "redis://localhost/").database == 0)
    }

    @Test func describesItselfWithThePasswordMasked() throws {
        #expect(try RedisURL(parsing: "redis://:hunter2@h:1/2").description == "redis://:***@h:1/2")
        #expect(try RedisURL(parsing: "redis://u:hunter2@[::1]:1").description == "redis://u:***@[::1]:1/0")
        #expect(try RedisURL(parsing: "redis://h").description == "redis://h:6379/0")
    }

    @Test(arguments: [
        ("http://h:1", "does not start with redis://"),
        ("redis://h:0", "the port must be 1-65535"),
        ("redis://h:99999", "the port must be 1-65535"),
        ("redis://h:x", "the port must be 1-65535"),
        ("redis://h/x", "the database must be a number"),
        ("redis://hunter2@h", "credentials must be :password or user:password"),
        ("redis://:hunter2%4@h", "a % in the credentials"),
        ("redis://:hunter2@", "names no host"),
        ("redis://[::1", "unclosed ["),
    ])
    func refusesWhatItCannotUseWithoutShowingThePassword(_ text: String, _ reason: String) {
        #expect {
            try RedisURL(parsing: text)
        } throws: { error in
            "\(error)".contains(reason) && !"\(error)".contains("hunter2")
        }
    }
}
