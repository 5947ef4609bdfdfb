// W3C Trace Context: the `traceparent` an IdP sends with a create, kept with the challenge and sent again with its
// result, so that one sign-in can be followed across the IdP, approvald and the verifier.

public enum TraceContext {
    /// The `traceparent` value to keep, or nil for one that is not valid (which is ignored, not an error):
    /// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase, ids not all zeros. A later version (not
    /// `ff`) is read as version 00 would be, and its extra fields are dropped, as the recommendation asks.
    public static func traceparent(_ header: Substring) -> String? {
        let bytes = Array(header.utf8)
        guard bytes.count >= 55 else { return nil }
        let fields = [0..<2, 3..<35, 36..<52, 53..<55]
        for dash in [2, 35, 52] where bytes[dash] != UInt8(ascii: "-") { return nil }
        guard fields.allSatisfy({ bytes[$0].allSatisfy(isLowerHex) }) else { return nil }
        let version = bytes[0..<2]
        guard !version.elementsEqual("ff".utf8) else { return nil }
        if version.elementsEqual("00".utf8) {
            guard bytes.count == 55 else { return nil }
        } else if bytes.count > 55 && bytes[55] != UInt8(ascii: "-") {
            return nil
        }
        guard !bytes[3..<35].allSatisfy({ $0 == UInt8(ascii: "0") }),
            !bytes[36..<52].allSatisfy({ $0 == UInt8(ascii: "0") })
        else { return nil }
        return String(decoding: bytes[0..<55], as: UTF8.self)
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
    }
}
