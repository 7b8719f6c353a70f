@testable import Nexus
import Testing

/// A PSF2 font of `glyphs` (each rows of '#' and '.'), with a Unicode table of `table` (one entry a glyph).
func psf2(width: Int, height: Int, glyphs: [[String]], table: [[UInt8]]?) -> [UInt8] {
    func word(_ value: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) } }
    let rowBytes = (width + 7) / 8
    var bytes: [UInt8] = [0x72, 0xB5, 0x4A, 0x86] + word(0) + word(32) + word(table == nil ? 0 : 1)
        + word(glyphs.count) + word(rowBytes * height) + word(height) + word(width)
    for glyph in glyphs {
        for row in glyph {
            var bits = [UInt8](repeating: 0, count: rowBytes)
            for (x, character) in row.enumerated() where character == "#" { bits[x / 8] |= 0x80 >> UInt8(x % 8) }
            bytes += bits
        }
    }
    for entry in table ?? [] { bytes += entry + [0xFF] }
    return bytes
}

/// The glyph of Terminus 8×16 for 'N', read from Uni2-Terminus16.psf with a
/// separate Python reader: the golden the renderer must reproduce.
let terminusN = [
    "........", "........", ".#....#.", ".#....#.", ".#....#.", ".##...#.", ".#.#..#.", ".#..#.#.",
    ".#...##.", ".#....#.", ".#....#.", ".#....#.", "........", "........", "........", "........",
]

@Suite struct FontTests {
    @Test func theBakedFontsParse() throws {
        let small = BuiltInFont.terminus8x16.load()
        #expect(small.width == 8 && small.height == 16 && small.glyphCount == 512 && small.bytesPerRow == 1)
        #expect(small.unicode.count == 791)
        #expect(small.glyph(for: "N") == 78 && small.glyph(for: "4") == 52)
        // No glyph for a CJK character: U+FFFD's glyph (4) stands in.
        #expect(small.glyph(for: "漢") == 4)
        let large = BuiltInFont.terminus16x32.load()
        #expect(large.width == 16 && large.height == 32 && large.glyphCount == 512 && large.bytesPerRow == 2)
        #expect(large.glyph(for: "A") == small.glyph(for: "A"))
        for y in 0..<16 {
            #expect(String((0..<8).map { small.isSet(glyph: 78, x: $0, y: y) ? "#" : "." }) == terminusN[y])
        }
    }

    @Test func parsesAPSF2WithItsUnicodeTable() throws {
        let font = try PSFFont.parse(psf2(width: 10, height: 2, glyphs: [
            ["#.........", "........##"],
            ["##########", ".#.#.#.#.#"],
        ], table: [
            Array("a".utf8) + Array("é".utf8),
            [0xFE] + Array("b".utf8) + Array("\u{301}".utf8) + Array("€".utf8), // a sequence b+◌́, ignored
        ].map { $0 }))
        #expect(font.width == 10 && font.height == 2 && font.bytesPerRow == 2 && font.glyphCount == 2)
        #expect(font.unicode == [0x61: 0, 0xE9: 0])
        #expect(font.isSet(glyph: 0, x: 0, y: 0) && !font.isSet(glyph: 0, x: 1, y: 0) && font.isSet(glyph: 0, x: 9, y: 1))
        #expect(font.isSet(glyph: 1, x: 9, y: 0) && !font.isSet(glyph: 1, x: 0, y: 1))
    }

    @Test func theSequenceMarkerOnlyCoversTheRestOfItsEntry() throws {
        let font = try PSFFont.parse(psf2(width: 1, height: 1, glyphs: [["#"], ["."]],
                                          table: [[0x61, 0xFE, 0x62, 0xCC, 0x81], [0x63]]))
        #expect(font.unicode == [0x61: 0, 0x63: 1])
        // Without a table the code point is the glyph number.
        let plain = try PSFFont.parse(psf2(width: 1, height: 1, glyphs: [["#"], ["."]], table: nil))
        #expect(plain.unicode.isEmpty && plain.glyph(for: "\u{1}") == 1 && plain.glyph(for: "z") == 0)
    }

    @Test func badInputSaysWhatIsWrong() {
        func error(_ bytes: [UInt8]) -> String {
            do { _ = try PSFFont.parse(bytes); return "no error" } catch { return error.description }
        }
        let good = psf2(width: 8, height: 2, glyphs: [["#.......", "........"]], table: [[0x41]])
        #expect(error([]) == "not a PSF font: it starts with nothing, not 3604 (PSF1) or 72b54a86 (PSF2)")
        #expect(error([0x1F, 0x8B, 0x08, 0x00]) == "not a PSF font: it starts with 1f8b0800, not 3604 (PSF1) or 72b54a86 (PSF2)")
        #expect(error([0x36, 0x04, 0x00]) == "a PSF1 header is 4 bytes; the file has 3")
        #expect(error([0x36, 0x04, 0x00, 16] + [UInt8](repeating: 0, count: 100)) == "cut off: 256 glyphs of 16 bytes need 4100 bytes; the file has 104")
        #expect(error([0x36, 0x04, 0x02, 1] + [UInt8](repeating: 0, count: 256) + [0x41, 0x00]) == "the Unicode table is cut off at glyph 0")
        #expect(error(Array(good.prefix(20))) == "a PSF2 header is 32 bytes; the file has 20")
        #expect(error(Array(good.dropLast(3))) == "cut off: 1 glyphs of 2 bytes after a 32-byte header need 34 bytes; the file has 33")
        #expect(error(Array(good.dropLast())) == "the Unicode table is cut off at glyph 0")
        var badSize = good
        badSize[20] = 3
        #expect(error(badSize) == "a 8x2 glyph is 2 bytes, but the header says 3")
        var badVersion = good
        badVersion[4] = 1
        #expect(error(badVersion) == "PSF2 version 1 is unknown (only 0 exists)")
        var badUTF8 = good
        badUTF8[34] = 0x80
        #expect(error(badUTF8) == "the Unicode table has bad UTF-8 at byte 34 (glyph 0)")
        var noWidth = good
        noWidth[28] = 0
        #expect(error(noWidth) == "a glyph of 0x2 pixels is not a console glyph (1–256 each way)")
    }
}

@Suite struct TextTests {
    let font = GlyphCache(font: BuiltInFont.terminus8x16.load())
    let ink = Color(0xD8DEE9), paper = Color(0x111820), under = Color(0x0B0F14)

    @Test func drawsNEXUS42GlyphForGlyph() {
        var buffer = PixelBuffer(width: 80, height: 20, pitch: 352, fill: under)
        let end = buffer.drawText("NEXUS-42", x: 5, y: 2, ink, background: paper, font: font)
        #expect(end == 5 + 8 * 8)
        for (index, scalar) in "NEXUS-42".unicodeScalars.enumerated() {
            let glyph = font.font.glyph(for: scalar)
            for y in 0..<16 {
                for x in 0..<8 {
                    let expected = font.font.isSet(glyph: glyph, x: x, y: y) ? ink : paper
                    #expect(buffer[5 + index * 8 + x, 2 + y] == expected, "\(scalar) at (\(x), \(y))")
                }
            }
        }
        // The 'N' against the golden from the font file.
        let drawn = (0..<16).map { y in String((0..<8).map { x in buffer[5 + x, 2 + y] == ink ? "#" : "." }) }
        #expect(drawn == terminusN)
        // Nothing outside the text's cells, nothing in the pitch's padding.
        #expect(buffer[4, 2] == under && buffer[69, 2] == under && buffer[5, 1] == under && buffer[5, 18] == under)
        #expect(padding(buffer).allSatisfy { $0 == under.pixel })
    }

    @Test func aTransparentBackgroundKeepsWhatIsBeneath() {
        var buffer = PixelBuffer(width: 8, height: 16, fill: under)
        buffer.drawText("N", x: 0, y: 0, ink, font: font)
        #expect(buffer[0, 0] == under && buffer[1, 2] == ink)
    }

    @Test func clipsTextAtEveryEdge() {
        var buffer = PixelBuffer(width: 12, height: 10, pitch: 64, fill: under)
        buffer.drawText("NN", x: -4, y: -3, ink, background: paper, font: font)   // top left
        buffer.drawText("N", x: 7, y: 4, ink, background: paper, font: font)      // right and bottom
        // "NN" at (-4, -3) covers cells x -4..3 and 4..11, glyph rows 3..12;
        // the lone N at (7, 4) is cut at the right edge (x 12) and the bottom (y 10).
        for y in 0..<10 {
            for x in 0..<12 {
                let expected: Color
                if x >= 7 && y >= 4 {
                    expected = font.font.isSet(glyph: 78, x: x - 7, y: y - 4) ? ink : paper
                } else {
                    expected = font.font.isSet(glyph: 78, x: (x + 4) % 8, y: y + 3) ? ink : paper
                }
                #expect(buffer[x, y] == expected, "(\(x), \(y))")
            }
        }
        #expect(padding(buffer).allSatisfy { $0 == under.pixel })
        // Wholly outside: nothing drawn, and the advance is still the text's width.
        let before = buffer.pixels
        #expect(buffer.drawText("abc", x: 0, y: 40, ink, font: font) == 24)
        #expect(buffer.drawText("abc", x: -30, y: 0, ink, font: font) == -6)
        #expect(buffer.pixels == before)
    }

    @Test func scaleTwoDoublesEveryPixel() {
        let double = GlyphCache(font: font.font, scale: 2)
        #expect(double.cellWidth == 16 && double.cellHeight == 32 && double.width(of: "NEXUS") == 80 && double.columns(in: 100) == 6)
        var buffer = PixelBuffer(width: 16, height: 32, fill: under)
        buffer.drawText("N", x: 0, y: 0, ink, background: paper, font: double)
        for y in 0..<32 {
            for x in 0..<16 {
                #expect(buffer[x, y] == (Array(terminusN[y / 2])[x / 2] == "#" ? ink : paper), "(\(x), \(y))")
            }
        }
    }

    @Test func theLargeFontIsItsOwnDrawingNotADoubledOne() {
        let large = GlyphCache(font: BuiltInFont.terminus16x32.load())
        var buffer = PixelBuffer(width: 16, height: 32, fill: under)
        buffer.drawText("N", x: 0, y: 0, ink, font: large)
        let inked = buffer.pixels.filter { $0 == ink.pixel }.count
        // Terminus 16×32's N has strokes 2 pixels wide; enough ink, and not 4× the 8×16's.
        let smallInk = terminusN.joined().filter { $0 == "#" }.count
        #expect(inked > smallInk * 2 && inked != smallInk * 4)
    }
}
