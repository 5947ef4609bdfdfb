// HTTPHeaders (byte storage, copy-on-write, lookups) and HTTPRequest's path parts.
import HTTP
import Testing

@Suite struct HTTPHeadersTests {
    @Test func keepsOrderRepeatsAndLooksUpTheFirst() {
        var headers: HTTPHeaders = ["accept": "a", "x-twice": "1"]
        headers.append("x-twice", "2")
        headers.append(("empty", ""))
        #expect(headers.count == 4)
        #expect(headers.map(\.name) == ["accept", "x-twice", "x-twice", "empty"])
        #expect(headers.map(\.value) == ["a", "1", "2", ""])
        #expect(headers[field: "x-twice"] == "1")
        #expect(headers[field: "empty"] == "")
        #expect(headers[field: "missing"] == nil)
        #expect(headers[field: "x-twic"] == nil)
        #expect(HTTPHeaders().isEmpty && HTTPHeaders()[field: "a"] == nil)
    }

    @Test func copiesAreIndependent() {
        var original: HTTPHeaders = [("a", "1")]
        let copy = original
        original.append("b", "2")
        var second = copy
        second.append("c", "3")
        #expect(copy.map(\.name) == ["a"])
        #expect(original.map(\.name) == ["a", "b"])
        #expect(second.map(\.name) == ["a", "c"])
    }

    @Test func growsPastItsFirstAllocationWithLongAndNonASCIIValues() {
        var headers = HTTPHeaders()
        let long = String(repeating: "v", count: 5000)
        for index in 0..<50 { headers.append("x-\(index)", index == 25 ? long : "välue-\(index)") }
        #expect(headers.count == 50)
        #expect(headers[field: "x-25"] == long)
        #expect(headers[field: "x-49"] == "välue-49")
        #expect(headers.map(\.name).last == "x-49")
    }
}

@Suite struct HTTPRequestTests {
    @Test func splitsPathAndQuery() {
        let request = HTTPRequest(method: "GET", path: "/v1/items/ü?wait=5&x=?")
        #expect(request.pathOnly == "/v1/items/ü")
        #expect(request.query == "wait=5&x=?")
        let bare = HTTPRequest(method: "GET", path: "/healthz")
        #expect(bare.pathOnly == "/healthz" && bare.query == "")
        #expect(HTTPRequest(method: "GET", path: "/a?").query == "")
    }

    @Test func exposesPseudoHeadersAndFields() {
        let request = HTTPRequest(
            method: "POST", path: "/p", authority: "example.test", scheme: "https", headers: ["x-a": "1"])
        #expect(request.authority == "example.test")
        #expect(request.scheme == "https")
        #expect(request.headers[field: "x-a"] == "1")
        #expect(request.headers[field: ":method"] == "POST")
        let hostOnly = HTTPRequest(method: "GET", path: "/", headers: ["host": "h.test"])
        #expect(hostOnly.authority == "h.test")
    }
}
