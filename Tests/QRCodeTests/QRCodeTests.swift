// QR codes decode back to their text: the SVG rendered by librsvg (rsvg-convert), and the terminal's text turned
// into a bitmap here, read by zbar (zbarimg), both independent of libqrencode, for texts of every length an
// activation URI takes.
import Foundation
import QRCode
import TestSupport
import Testing

@Suite struct QRCodeTests {
    /// The text zbar reads from `svg`, rendered to a PNG.
    func decoded(_ svg: String) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-qr-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = directory.appendingPathComponent("code.svg").path
        let image = directory.appendingPathComponent("code.png").path
        try svg.write(toFile: source, atomically: true, encoding: .utf8)
        let rendered = try runCommand(["rsvg-convert", "--format", "png", "--output", image, source], timeout: 30)
        #expect(rendered.status == 0, "\(rendered.stderr)")
        let read = try runCommand(["zbarimg", "--quiet", "--raw", image], timeout: 30)
        #expect(read.status == 0, "\(read.stderr)")
        return read.stdout.trimmingCharacters(in: .newlines)
    }

    @Test(arguments: [
        "x",
        "approvald://enroll?v=1&url=http%3A%2F%2F127.0.0.1%3A8080&tenant=demo&code=AAAAAAAAAAAAAAAAAAAAAA",
        "approvald://enroll?v=1&url=https%3A%2F%2Fapprovald.example.com%3A8443%2Fbroker&tenant="
            + String(repeating: "t", count: 64) + "&code=" + String(repeating: "Z", count: 43),
    ])
    func anSVGDecodesBackToItsText(text: String) throws {
        let svg = try QRCode.svg(for: text)
        #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
        #expect(svg.hasSuffix("</svg>"))
        #expect(try decoded(svg) == text)
    }

    /// The terminal's lines as a terminal shows them with light text on a dark background (a drawn half is light),
    /// four pixels a module, in a plain bitmap (PBM, 1 is black) that zbar reads.
    @Test(arguments: [
        "x",
        "approvald://enroll?v=1&url=http%3A%2F%2F127.0.0.1%3A8080&tenant=demo&code=AAAAAAAAAAAAAAAAAAAAAA",
    ])
    func theTerminalTextDecodesBackToItsText(text: String) throws {
        let lines = QRCode.terminalText(try QRCode.modules(for: text)).split(separator: "\n").map(Array.init)
        var rows: [[Bool]] = []  // true: dark
        for line in lines {
            rows.append(line.map { $0 == " " || $0 == "\u{2584}" })
            rows.append(line.map { $0 == " " || $0 == "\u{2580}" })
        }
        let scale = 4
        var pbm = "P1\n\(rows[0].count * scale) \(rows.count * scale)\n"
        for row in rows {
            let pixels = row.flatMap { Array(repeating: $0 ? "1" : "0", count: scale) }.joined(separator: " ")
            pbm += String(repeating: pixels + "\n", count: scale)
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("approvald-qr-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let image = directory.appendingPathComponent("code.pbm").path
        try pbm.write(toFile: image, atomically: true, encoding: .ascii)
        let read = try runCommand(["zbarimg", "--quiet", "--raw", image], timeout: 30)
        #expect(read.status == 0, "\(read.stderr)")
        #expect(read.stdout.trimmingCharacters(in: .newlines) == text)
        // The quiet zone: the first two lines are light throughout.
        #expect(lines[0].allSatisfy { $0 == "\u{2588}" } && lines[1].allSatisfy { $0 == "\u{2588}" })
    }

    @Test func theSquareHasItsFinderPatternsAndAQuietZone() throws {
        let modules = try QRCode.modules(for: "approvald")
        #expect(modules.width == 21)  // version 1
        // The top-left finder pattern: a dark 7×7 ring around a light ring and a dark 3×3 centre.
        for i in 0..<7 {
            #expect(modules[i, 0] && modules[i, 6] && modules[0, i] && modules[6, i])
        }
        #expect(!modules[1, 1] && modules[3, 3])
        let svg = QRCode.svg(modules)
        #expect(svg.contains("viewBox=\"0 0 29 29\"") && svg.contains("M4 4h7v1h-7z"))
    }
}
