// The route table: every operation of API.md, and the 404s and 405s that follow from it.
import Testing

@testable import Service

@Suite struct RouterTests {
    static let routes: [(String, String, Route)] = [
        ("GET", "/v1/tenants/t/policy", .getPolicy(tenantID: "t")),
        ("PUT", "/v1/tenants/t/policy", .putPolicy(tenantID: "t")),
        ("PUT", "/v1/tenants/t/devices/d", .putDevice(tenantID: "t", deviceID: "d")),
        ("DELETE", "/v1/tenants/t/devices/d", .deleteDevice(tenantID: "t", deviceID: "d")),
        ("GET", "/v1/tenants/t/users/a%40b.com/devices", .listDevices(tenantID: "t", userID: "a@b.com")),
        ("POST", "/v1/tenants/t/challenges", .createChallenge(tenantID: "t")),
        ("POST", "/v1/tenants/t/ciba", .ciba(tenantID: "t")),
        ("GET", "/v1/tenants/t/challenges/c", .getChallenge(tenantID: "t", challengeID: "c")),
        ("DELETE", "/v1/tenants/t/challenges/c", .cancelChallenge(tenantID: "t", challengeID: "c")),
        ("GET", "/v1/tenants/t/dead-letters", .deadLetters(tenantID: "t")),
        ("POST", "/v1/tenants/t/dead-letters/retry", .redrive(tenantID: "t", challengeID: nil)),
        ("POST", "/v1/tenants/t/dead-letters/ch_1/retry", .redrive(tenantID: "t", challengeID: "ch_1")),
        ("GET", "/v1/devices/d/challenges", .deviceQueue(deviceID: "d")),
        ("GET", "/v1/devices/d/stream", .deviceStream(deviceID: "d")),
        ("POST", "/v1/devices/d/challenges/c/response", .answer(deviceID: "d", challengeID: "c")),
        ("PUT", "/v1/devices/d/push-token", .pushToken(deviceID: "d")),
    ]

    @Test(arguments: routes.indices)
    func everyOperationHasItsRoute(index: Int) throws {
        let (method, path, route) = Self.routes[index]
        #expect(try RouteTable.api.match(method: method, path: path[...]) == route)
    }

    @Test func aKnownPathUnderAnotherMethodIs405WithTheMethodsItTakes() {
        for (method, path, allow) in [
            ("POST", "/v1/tenants/t/policy", "GET, PUT"), ("GET", "/v1/tenants/t/devices/d", "PUT, DELETE"),
            ("PATCH", "/v1/devices/d/challenges/c/response", "POST"), ("POST", "/v1/devices/d/stream", "GET"),
        ] {
            do {
                _ = try RouteTable.api.match(method: method, path: path[...])
                Issue.record("\(method) \(path) matched")
            } catch {
                #expect(error.status == 405 && error.code == "method_not_allowed")
                #expect(error.response.headers[field: "allow"] == allow, "\(method) \(path)")
            }
        }
    }

    @Test func anUnknownPathIs404AndAnotherPrefixIsNotTheAPIs() throws {
        for path in [
            "/v1", "/v1/", "/v1/tenants", "/v1/tenants/t", "/v1/tenants/t/users/u", "/v1/tenants/t/users/u/keys",
            "/v1/devices/d/challenges/c", "/v1/devices/d/challenges/c/answer", "/v1/tenants/t/policy/x",
        ] {
            #expect(throws: Problem.self, "\(path)") { try RouteTable.api.match(method: "GET", path: path[...]) }
        }
        #expect(try RouteTable.api.match(method: "GET", path: "/healthz") == nil)
        #expect(try RouteTable.api.match(method: "GET", path: "/v2/tenants/t/policy") == nil)
        // Found by fuzzing: whatever comes before the first slash is not to be skipped.
        #expect(try RouteTable.api.match(method: "GET", path: "x/v1/tenants/t/policy") == nil)
        #expect(try RouteTable.api.match(method: "GET", path: "v1/tenants/t/policy") == nil)
    }

    @Test func queryValuesAreFoundByName() {
        #expect(queryValue("wait=5", "wait") == "5")
        #expect(queryValue("limit=1&wait=5&wait=7", "wait") == "7")
        #expect(queryValue("waiting=5", "wait") == nil)
        #expect(queryValue("", "wait") == nil)
    }
}
