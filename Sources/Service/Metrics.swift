// Prometheus text exposition (format 0.0.4): loop-owned counters and gauges, written without locks.

/// A part of the broker with figures on `/metrics`: it writes its own families, and `/metrics` asks each part in
/// turn instead of reading their fields.
protocol MetricsSource: AnyObject {
    func writeMetrics(to writer: inout MetricsWriter)
}

/// Builds one exposition document: each family's HELP and TYPE once, then its samples.
public struct MetricsWriter {
    public private(set) var text = ""

    public init() { text.reserveCapacity(4096) }

    public enum Kind: String { case counter, gauge, histogram }

    /// Starts a family. Every sample that follows, until the next family, belongs to it.
    public mutating func family(_ name: String, _ kind: Kind, help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(kind.rawValue)\n"
    }

    /// One sample; labels in the order given, values escaped as the format requires.
    public mutating func sample(_ name: String, _ value: Double, labels: KeyValuePairs<String, String> = [:]) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.key)=\"\(escapeLabel($0.value))\"" }.joined(separator: ",") + "}"
        }
        text += " " + formatValue(value) + "\n"
    }

    public mutating func sample(_ name: String, _ value: Int, labels: KeyValuePairs<String, String> = [:]) {
        sample(name, Double(value), labels: labels)
    }

    private func escapeLabel(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }

    private func formatValue(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

/// A counter per label value (such as a status code), touched only on the loop thread.
public struct LabelledCounter<Label: Hashable & Comparable & CustomStringConvertible> {
    public private(set) var values: [Label: UInt64] = [:]

    public init() {}

    /// A counter whose `known` labels are written from the start, at 0: a rate over a series that appears only at
    /// its first event misses that event, and dashboards and alerts would see no data instead of none happening.
    public init(known: some Sequence<Label>) {
        for label in known { values[label] = 0 }
    }

    public mutating func increment(_ label: Label, by amount: UInt64 = 1) {
        values[label, default: 0] &+= amount
    }

    public subscript(label: Label) -> UInt64 { values[label] ?? 0 }

    /// Writes every label's sample, sorted, under `labelName`.
    public func write(_ name: String, labelName: String, to writer: inout MetricsWriter) {
        for (label, value) in values.sorted(by: { $0.key < $1.key }) {
            writer.sample(name, Double(value), labels: [labelName: label.description])
        }
    }
}

/// A counter per HTTP status code (100–599), in an array: one increment per response, no hashing.
public struct StatusCounter {
    private var counts = [UInt64](repeating: 0, count: 600)

    public init() {}

    public mutating func increment(_ status: Int) {
        counts[(100..<600).contains(status) ? status : 599] &+= 1
    }

    public subscript(status: Int) -> UInt64 { (100..<600).contains(status) ? counts[status] : 0 }

    /// Writes a sample for every status seen, in order, labelled `code`.
    public func write(_ name: String, to writer: inout MetricsWriter) {
        for status in 100..<600 where counts[status] > 0 {
            writer.sample(name, Double(counts[status]), labels: ["code": String(status)])
        }
    }
}

/// A Prometheus histogram with fixed bucket bounds, touched only on the loop thread.
public struct Histogram {
    public let bounds: [Double]
    private var counts: [UInt64]
    public private(set) var count: UInt64 = 0
    public private(set) var sum = 0.0

    public init(bounds: [Double]) {
        self.bounds = bounds.sorted()
        counts = [UInt64](repeating: 0, count: bounds.count)
    }

    public mutating func observe(_ value: Double) {
        if let index = bounds.firstIndex(where: { value <= $0 }) { counts[index] &+= 1 }
        count &+= 1
        sum += value
    }

    /// Writes the cumulative buckets, `+Inf`, the sum and the count.
    public func write(_ name: String, to writer: inout MetricsWriter) {
        var cumulative: UInt64 = 0
        for (bound, bucket) in zip(bounds, counts) {
            cumulative &+= bucket
            writer.sample(name + "_bucket", Double(cumulative), labels: ["le": formatBound(bound)])
        }
        writer.sample(name + "_bucket", Double(count), labels: ["le": "+Inf"])
        writer.sample(name + "_sum", sum)
        writer.sample(name + "_count", Double(count))
    }

    private func formatBound(_ bound: Double) -> String {
        bound == bound.rounded() && abs(bound) < 1e15 ? String(Int64(bound)) + ".0" : String(bound)
    }
}
