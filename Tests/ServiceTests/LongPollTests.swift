// Long polls and the streams they hold: one whose client resets it at once (a WINDOW_UPDATE that overflows its
// window, right behind the request) is not left registered.
import Core
import Crypto
import Foundation
import HTTP
import Store
import TestSupport
import Testing

@testable import Service

@Suite struct LongPollTests {
    @Test func aLongPollResetAtOnceIsNotLeftRegistered() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-poll-\(UUID())")
        let broker = try await InProcessBroker { loop in
            // swift-format-ignore: NeverUseForceTry
            try! SQLiteJournal(directory: directory.path) { work in loop.execute(work) }
        }
        defer { broker.stop() }
        let key = try P256PrivateKey()
        let registration = InProcessBroker.registration("alice", key)
        #expect(try await broker.idp("PUT", "/v1/tenants/contoso/devices/phone-1", registration).status == 201)
        let created = try await broker.idp(
            "POST", "/v1/tenants/contoso/challenges", "{\"request_id\":\"r-1\",\"user_id\":\"alice\",\"number\":42}")
        let challengeID = try #require(
            (try JSONSerialization.jsonObject(with: Data(created.body)) as? [String: Any])?["challenge_id"] as? String)
        let path = "/v1/tenants/contoso/challenges/\(challengeID)?wait=30"
        let request = RawHTTP2Connection.request(
            "GET", path, extra: [("approvald-signature", InProcessBroker.signature("GET", path, ""))])
        func longPoll(_ id: UInt32) -> [UInt8] {
            RawHTTP2Connection.frame(
                type: Frame.headers, flags: Frame.endHeaders | Frame.endStream, stream: id,
                payload: RawHTTP2Connection.headerBlock(request))
        }
        let overflow: [UInt8] = [0x7f, 0xff, 0xff, 0xff]

        // One held poll is registered (the count can see it), then 50 reset right behind their requests are not.
        let held = try RawHTTP2Connection(port: broker.port)
        try held.sendPreface()
        try held.send(longPoll(1))
        #expect(try await eventually { try await broker.onLoop { $0.longPolls.count } == 1 })
        let raw = try RawHTTP2Connection(port: broker.port)
        try raw.sendPreface()
        var burst: [UInt8] = []
        for index in 0..<50 {
            let id = UInt32(2 * index + 1)
            burst += longPoll(id) + RawHTTP2Connection.frame(type: Frame.windowUpdate, stream: id, payload: overflow)
        }
        try raw.send(burst)
        var resets = 0
        while resets < 50, let frame = try? raw.readFrame(timeout: 5) {
            if frame.type == Frame.rstStream { resets += 1 }
        }
        #expect(resets == 50)
        #expect(try await broker.onLoop { $0.longPolls.count } == 1)
    }
}
