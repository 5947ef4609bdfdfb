// application/x-www-form-urlencoded both ways: `+` and percent-escapes, order kept, malformed escapes refused, and a
// registered redirect URI's own query kept when a response is added to it.
import OIDC
import Testing

@Suite struct FormEncodingTests {
    @Test func decodesInOrderAndRefusesWhatIsMalformed() throws {
        let pairs = try #require(FormEncoding.decode("a=1&b=x+y%21&empty=&flag&%C3%A9=%E2%82%AC"))
        #expect(pairs.map(\.name) == ["a", "b", "empty", "flag", "é"])
        #expect(pairs.map(\.value) == ["1", "x y!", "", "", "€"])
        #expect(FormEncoding.decode("a=%ZZ") == nil)
        #expect(FormEncoding.decode("a=%C3") == nil, "not UTF-8")
        #expect(try #require(FormEncoding.decode("")).isEmpty)
    }

    @Test func whatIsEncodedDecodesBackAndTheRedirectURIKeepsItsQuery() throws {
        let pairs = [(name: "state", value: "a b&c=d\"<é>"), (name: "error", value: "invalid_request")]
        let encoded = FormEncoding.encode(pairs)
        #expect(!encoded.contains(" ") && !encoded.contains("\"") && !encoded.contains("<"))
        let back = try #require(FormEncoding.decode(encoded))
        #expect(back.map(\.name) == pairs.map(\.name) && back.map(\.value) == pairs.map(\.value))
        #expect(FormEncoding.appending([("error", "x")], to: "https://a.example/cb") == "https://a.example/cb?error=x")
        #expect(
            FormEncoding.appending([("error", "x")], to: "https://a.example/cb?tenant=1")
                == "https://a.example/cb?tenant=1&error=x")
    }
}
