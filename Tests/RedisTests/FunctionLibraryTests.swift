// The Redis functions on their own: functions.lua, read from the source tree as an operator's redis-cli would load
// it, called with FCALL against a real redis-server, without the store that normally drives them.
import Core
import Foundation
import TestSupport
import Testing

@testable import RedisStore

/// One redis-server with the library loaded from the file.
private struct LoadedLibrary {
    let server: RedisServer

    static let source = try! String(
        contentsOf: packageRoot.appendingPathComponent("Sources/RedisStore/functions.lua"), encoding: .utf8)

    init() async throws {
        server = try await RedisServer.start()
        #expect(try await server.cli(["FUNCTION", "LOAD", Self.source]) == "approvald")
    }

    func call(_ function: String, keys: [String] = [], _ arguments: [String] = []) async throws -> [String] {
        let output = try await server.cli(
            ["FCALL", "approvald_\(function)", String(keys.count)] + keys + arguments)
        // redis-cli writes one line per element, nil and "" as empty lines; the output comes trimmed.
        return output.isEmpty ? [] : output.components(separatedBy: "\n")
    }

    /// A commit of the user `field` in partition 0001: its six keys, then the arguments after them.
    func commit(
        expected: String, state: String, field: String = "t\nalice", deadlines: String = "|", instance: String = "i1",
        deliveries: [[String]] = [], changes: [[String]] = []
    ) async throws -> [String] {
        let keys = [
            "ap:{0001}:u:\(field)", "ap:{0001}:due", "ap:gauges", "ap:{0001}:ch", "ap:{0001}:out", "ap:{0001}:outdue",
        ]
        let arguments =
            [expected, state, field, deadlines, "t", instance, String(deliveries.count)] + deliveries.flatMap { $0 }
            + changes.flatMap { $0 }
        return try await call("commit", keys: keys, arguments)
    }
}

@Suite(.serialized) struct FunctionLibraryTests {
    @Test func theFileDeclaresTheVersionTheStoreChecksAndTheCorePartitionCount() async throws {
        #expect(FunctionLibrary.source == LoadedLibrary.source, "the binary embeds the file as it is")
        let library = try await LoadedLibrary()
        #expect(try await library.call("version") == [String(FunctionLibrary.version)])
        #expect(LoadedLibrary.source.contains("\nlocal PARTITIONS = \(Partition.count)\n"))
        try await library.server.kill()
    }

    @Test func aCommitChecksTheVersionAndKeepsTheTenantsCounts() async throws {
        let library = try await LoadedLibrary()
        #expect(try await library.commit(expected: "0", state: "1|1|2|state one") == ["1"])
        #expect(try await library.server.cli(["GET", "ap:{0001}:u:t\nalice"]) == "1|1|2|state one")
        #expect(try await library.server.cli(["HGET", "ap:gauges", "c:t"]) == "10000000002")

        // Stale: nothing is written.
        #expect(try await library.commit(expected: "0", state: "1|0|0|other") == ["0"])
        #expect(try await library.server.cli(["GET", "ap:{0001}:u:t\nalice"]) == "1|1|2|state one")

        let skipped = try await library.commit(expected: "1", state: "3|0|0|skips a version")
        #expect(skipped.joined().contains("the new state must be version + 1"))

        // Deleting the state takes its counts out of the tenant's.
        #expect(try await library.commit(expected: "1", state: "") == ["1"])
        #expect(try await library.server.cli(["EXISTS", "ap:{0001}:u:t\nalice"]) == "0")
        #expect(try await library.server.cli(["HGET", "ap:gauges", "c:t"]) == "0")
        try await library.server.kill()
    }

    @Test func aCommitAppliesItsIndexChangesAndRefusesAnUnknownOne() async throws {
        let library = try await LoadedLibrary()
        let committed = try await library.commit(
            expected: "0", state: "1|1|0|s",
            changes: [["S", "ap:dev:phone-1", "0001|t\nalice"], ["H", "ch_0001_x", "t\nalice"]])
        #expect(committed == ["1"])
        #expect(try await library.server.cli(["GET", "ap:dev:phone-1"]) == "0001|t\nalice")
        #expect(try await library.server.cli(["HGET", "ap:{0001}:ch", "ch_0001_x"]) == "t\nalice")
        #expect(try await library.call("load_device", keys: ["ap:dev:phone-1"]) == ["t", "alice", "1|1|0|s"])

        let refused = try await library.commit(expected: "1", state: "2|1|0|s", changes: [["Z", "k", "v"]])
        #expect(refused.joined().contains("unknown index change Z"))
        try await library.server.kill()
    }

    @Test func deadlinesMakeUsersDueOnlyOnceTheirTimeHasCome() async throws {
        let library = try await LoadedLibrary()
        _ = try await library.commit(expected: "0", state: "1|1|0|s", deadlines: "5000|")
        #expect(try await library.call("due_users", ["4999", "10"]) == [])
        #expect(try await library.call("due_users", ["5000", "10"]) == ["t", "alice"])
        #expect(try await library.call("due_users", ["5000", "10", "0002"]) == [], "another partition was asked")
        // The deadline moves later: the user is not due at the old time any more.
        _ = try await library.commit(expected: "1", state: "2|1|0|s", deadlines: "9000|5000")
        #expect(try await library.call("due_users", ["5000", "10"]) == [])
        #expect(try await library.call("due_users", ["9000", "10"]) == ["t", "alice"])
        try await library.server.kill()
    }

    @Test func callbacksAreDueInOrderAndLeaveTheOutboxWhenDelivered() async throws {
        let library = try await LoadedLibrary()
        // "<attempts>|<next attempt>|<ended>|<tenant>|<traceparent>|<body>"
        _ = try await library.commit(
            expected: "0", state: "1|0|0|s",
            changes: [["O", "ch_b", "0|2000|1000|t||{\"b\":1}"], ["O", "ch_a", "0|3000|1000|t||{\"a\":1}"]])
        #expect(try await library.call("due_callbacks", ["1000", "10", "", "", "0001"]) == ["2000"])
        let due = try await library.call("due_callbacks", ["2500", "10", "", "", "0001"])
        #expect(due == ["3000", "0001", "ch_b", "0|2000|1000|t||{\"b\":1}"])
        #expect(try await library.call("due_callbacks", ["2500", "10", "", "", "0002"]) == [])

        _ = try await library.call("outbox", ["d", "ch_b", "", "0001", "t"])
        #expect(try await library.server.cli(["HEXISTS", "ap:{0001}:out", "ch_b"]) == "0")
        #expect(try await library.call("due_callbacks", ["2500", "10", "", "", "0001"]) == ["3000"])
        try await library.server.kill()
    }

    @Test func aDeliveryGoesToTheInstanceThatStreamsTheDevice() async throws {
        let library = try await LoadedLibrary()
        _ = try await library.call("route_streams", ["i2", "60000", "phone-1"])
        let committed = try await library.commit(
            expected: "0", state: "1|1|1|s", instance: "i1",
            deliveries: [["d", "phone-1", "queued"], ["d", "phone-2", "queued"], ["c", "ch_1", "ended"]])
        // phone-1 is streamed by i2 (published to its inbox); i1 delivers the rest itself.
        #expect(committed == ["1", "011"])
        _ = try await library.call("unroute_stream", ["i1", "phone-1"])
        #expect(try await library.server.cli(["GET", "ap:route:phone-1"]) == "i2", "only its holder ends a route")
        _ = try await library.call("unroute_stream", ["i2", "phone-1"])
        #expect(try await library.server.cli(["EXISTS", "ap:route:phone-1"]) == "0")
        try await library.server.kill()
    }
}
