// The parsed public keys of the devices seen lately: a device's stream, polls and answers parse its key once, not
// once a request (building an EVP_PKEY costs a tenth of a signature check).
import Core
import Crypto

/// At most `capacity` keys, the oldest forgotten first. A key is used only for the device it was parsed for and only
/// while the device's stored key is the same bytes, so a device registered again with a new key is never checked
/// against its old one.
///
/// Confined to the event loop, as `ApprovalService` is.
final class DeviceKeys {
    /// About 2 KB each (an EC key with its own copy of the curve): 20 MB at most.
    static let defaultCapacity = 10_000

    private struct Entry {
        let spkiDER: [UInt8]
        let key: P256PublicKey
    }

    private let capacity: Int
    private var entries: [String: Entry] = [:]
    /// Device ids in the order their keys were first remembered; once full, `oldest` is the next to go.
    private var order: [String] = []
    private var oldest = 0

    init(capacity: Int = DeviceKeys.defaultCapacity) {
        precondition(capacity > 0, "a key cache holds at least one key")
        self.capacity = capacity
    }

    /// The device's stored key, parsed; nil when it does not parse.
    func key(of device: Device) -> P256PublicKey? {
        if let entry = entries[device.id], entry.spkiDER == device.publicKey { return entry.key }
        guard let key = try? P256PublicKey(spkiDER: device.publicKey) else { return nil }
        remember(Entry(spkiDER: device.publicKey, key: key), for: device.id)
        return key
    }

    var count: Int { entries.count }

    private func remember(_ entry: Entry, for deviceID: String) {
        // A new key for a device already here keeps its place in the order.
        guard entries.updateValue(entry, forKey: deviceID) == nil else { return }
        if order.count < capacity {
            order.append(deviceID)
            return
        }
        entries[order[oldest]] = nil
        order[oldest] = deviceID
        oldest = (oldest + 1) % capacity
    }
}
