// The activation URI a QR code carries (API.md, "Enrollment"): what the broker writes the phone reads back, and
// anything else is refused rather than half-read.
import Protocol
import Testing

@Suite struct ActivationURITests {
    @Test func aWrittenURIReadsBackWithEveryPartPercentEncoded() throws {
        let uri = ActivationURI(
            baseURL: "https://approve.example:8443/broker path?", tenantID: "contoso & co", code: "K7Q2-9XWM+/=")
        let text = uri.description
        #expect(text.hasPrefix("approvald://enroll?v=1&url=https%3A%2F%2Fapprove.example%3A8443%2Fbroker%20path%3F&"))
        #expect(text.hasSuffix("&tenant=contoso%20%26%20co&code=K7Q2-9XWM%2B%2F%3D"))
        let read = try #require(ActivationURI(text))
        #expect(read == uri)
    }

    @Test(arguments: [
        "https://enroll?v=1&url=https%3A%2F%2Fa.example&tenant=t&code=c",
        "approvald://login?v=1&url=https%3A%2F%2Fa.example&tenant=t&code=c",
        "approvald://enroll/more?v=1&url=https%3A%2F%2Fa.example&tenant=t&code=c",
        "approvald://enroll?v=2&url=https%3A%2F%2Fa.example&tenant=t&code=c",
        "approvald://enroll?url=https%3A%2F%2Fa.example&tenant=t&code=c",
        "approvald://enroll?v=1&tenant=t&code=c",
        "approvald://enroll?v=1&url=https%3A%2F%2Fa.example&code=c",
        "approvald://enroll?v=1&url=https%3A%2F%2Fa.example&tenant=t",
        "approvald://enroll?v=1&url=https%3A%2F%2Fa.example&tenant=t&code",
        "approvald://enroll?v=1&url=https%3A%2F%2Fa.example&tenant=t&tenant=u&code=c",
        "approvald://enroll?v=1&url=ftp%3A%2F%2Fa.example&tenant=t&code=c",
        "approvald://enroll?v=1&url=https%3A%2F%2F%2Fpath&tenant=t&code=c",
        "not a uri at all",
    ])
    func anythingElseIsRefused(text: String) {
        #expect(ActivationURI(text) == nil)
    }
}
