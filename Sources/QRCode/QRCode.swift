// QR codes as SVG documents and as terminal text: libqrencode lays out the modules, and small pure functions draw
// them, so that a page can show an activation code as it is, with no image library and no external asset, and a
// terminal can show one too.
import CQREncode

public enum QRCode {
    public struct EncodingError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The square of modules `text` encodes to, at error correction M, row by row: true is dark.
    public struct Modules: Equatable, Sendable {
        public let width: Int
        public let dark: [Bool]

        public init(width: Int, dark: [Bool]) {
            precondition(dark.count == width * width, "a square of modules")
            self.width = width
            self.dark = dark
        }

        public subscript(x: Int, y: Int) -> Bool { dark[y * width + x] }
    }

    /// `text` (8-bit mode, as it is) at error correction M, in the smallest version that holds it.
    public static func modules(for text: String) throws(EncodingError) -> Modules {
        let encoded = text.withCString { QRcode_encodeString8bit($0, 0, QR_ECLEVEL_M) }
        guard let encoded else { throw EncodingError(description: "the text does not fit a QR code") }
        defer { QRcode_free(encoded) }
        let width = Int(encoded.pointee.width)
        // Each module's lowest bit says whether it is dark; the others are libqrencode's own bookkeeping.
        let dark = (0..<width * width).map { encoded.pointee.data[$0] & 1 == 1 }
        return Modules(width: width, dark: dark)
    }

    /// `text` as a complete SVG document: dark modules on white, with the quiet zone of four modules the standard
    /// asks for, `pixelsPerModule` device pixels a module at its natural size.
    public static func svg(for text: String, pixelsPerModule: Int = 6) throws(EncodingError) -> String {
        svg(try modules(for: text), pixelsPerModule: pixelsPerModule)
    }

    /// The modules drawn as one path: each row's runs of dark modules as rectangles.
    public static func svg(_ modules: Modules, pixelsPerModule: Int = 6) -> String {
        let quietZone = 4
        let size = modules.width + 2 * quietZone
        var path = ""
        for y in 0..<modules.width {
            var x = 0
            while x < modules.width {
                guard modules[x, y] else {
                    x += 1
                    continue
                }
                let start = x
                while x < modules.width && modules[x, y] { x += 1 }
                path += "M\(start + quietZone) \(y + quietZone)h\(x - start)v1h-\(x - start)z"
            }
        }
        let pixels = size * pixelsPerModule
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(pixels)" height="\(pixels)" viewBox="0 0 \(size) \(size)" \
            shape-rendering="crispEdges" role="img" aria-label="QR code">\
            <rect width="\(size)" height="\(size)" fill="#fff"/><path fill="#000" d="\(path)"/></svg>
            """
    }

    /// The modules as lines of text for a terminal, two rows of modules to a line, with the four-module quiet zone:
    /// light modules are drawn (full and half blocks) and dark ones left blank, so that light text on a dark
    /// terminal shows dark modules on light, as scanners expect.
    public static func terminalText(_ modules: Modules) -> String {
        let quietZone = 4
        let size = modules.width + 2 * quietZone
        func isLight(_ x: Int, _ y: Int) -> Bool {
            let (column, row) = (x - quietZone, y - quietZone)
            guard (0..<modules.width).contains(column), (0..<modules.width).contains(row) else { return true }
            return !modules[column, row]
        }
        var lines: [String] = []
        for y in stride(from: 0, to: size, by: 2) {
            var line = ""
            for x in 0..<size {
                switch (isLight(x, y), y + 1 < size ? isLight(x, y + 1) : false) {
                case (true, true): line += "\u{2588}"  // █
                case (true, false): line += "\u{2580}"  // ▀
                case (false, true): line += "\u{2584}"  // ▄
                case (false, false): line += " "
                }
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}
