// The process_* gauges, read from /proc: resident memory, open descriptors, start time.
import Glibc

public enum ProcessMetrics {
    /// Resident set size in bytes (second field of /proc/self/statm, in pages).
    public static func residentMemoryBytes() -> Int {
        guard let statm = readFile("/proc/self/statm") else { return 0 }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// The number of open file descriptors (entries of /proc/self/fd, less the one used to list it).
    public static func openFileDescriptors() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { $0.first == UInt8(ascii: ".") }
            if !isDot { count += 1 }
        }
        return count - 1
    }

    /// When the process started, in Unix seconds: read once, not on every scrape.
    public static let startTime = startTimeSeconds()

    /// When the process started, in Unix seconds: boot time plus field 22 of /proc/self/stat (in clock ticks).
    static func startTimeSeconds() -> Double {
        guard let stat = readFile("/proc/self/stat"), let procStat = readFile("/proc/stat"),
            let afterName = stat.lastIndex(of: ")")
        else { return 0 }
        // Fields after the parenthesised command name start at field 3; starttime is field 22.
        let fields = stat[stat.index(after: afterName)...].split(separator: " ")
        guard fields.count > 19, let ticks = Double(fields[19]) else { return 0 }
        let bootLine = procStat.split(separator: "\n").first { $0.hasPrefix("btime ") }
        guard let boot = bootLine.flatMap({ Double($0.dropFirst(6)) }) else { return 0 }
        return boot + ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes.append(contentsOf: buffer.prefix(count))
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
