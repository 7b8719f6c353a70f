import SpiritCore
import CNexusFont

/// A bitmap console font in the PC Screen Font format, version 1 or 2 — what
/// Linux's setfont loads and Debian's console-setup ships. The HUD's text is
/// these bitmaps: crisp at any size the font has, with no rasteriser.
///
/// PSF1: magic 36 04, a mode byte (0x01: 512 glyphs, 0x02/0x04: a Unicode
/// table follows), the glyph height; glyphs are 8 pixels wide. The table
/// gives each glyph its UCS-2 code points, ended by FFFF (FFFE starts
/// combining sequences). PSF2: magic 72 B5 4A 86, then little-endian
/// version, header size, flags (1: a Unicode table), glyph count, bytes per
/// glyph, height, width; its table is UTF-8, each glyph's entry ended by FF
/// (FE starts sequences). Sequences are skipped: the HUD draws one glyph a
/// code point.
public struct PSFFont: Sendable {
    public let width: Int
    public let height: Int
    public let glyphCount: Int
    /// Bytes in one row of a glyph: each row starts on a byte.
    public let bytesPerRow: Int
    /// Every glyph's rows, glyph after glyph.
    let bitmaps: [UInt8]
    /// Code point → glyph. Empty when the font has no table: then the code
    /// point is the glyph number.
    public let unicode: [UInt32: Int]

    /// Whether pixel (`x`, `y`) of glyph `glyph` is ink.
    public func isSet(glyph: Int, x: Int, y: Int) -> Bool {
        let byte = bitmaps[(glyph * height + y) * bytesPerRow + x / 8]
        return byte & (0x80 >> UInt8(x % 8)) != 0
    }

    /// The glyph for `scalar`: from the Unicode table, else U+FFFD's glyph,
    /// else '?', else glyph 0 — never nothing, so unknown text still takes
    /// its cell.
    public func glyph(for scalar: Unicode.Scalar) -> Int {
        if unicode.isEmpty { return Int(scalar.value) < glyphCount ? Int(scalar.value) : 0 }
        return unicode[scalar.value] ?? unicode[0xFFFD] ?? unicode[0x3F] ?? 0
    }

    public static func parse(_ bytes: [UInt8]) throws(FontError) -> PSFFont {
        if bytes.count >= 2, bytes[0] == 0x36, bytes[1] == 0x04 { return try parsePSF1(bytes) }
        if bytes.count >= 4, bytes[0] == 0x72, bytes[1] == 0xB5, bytes[2] == 0x4A, bytes[3] == 0x86 { return try parsePSF2(bytes) }
        throw FontError("not a PSF font: it starts with \(Hex.encode(bytes.prefix(4)).isEmpty ? "nothing" : Hex.encode(bytes.prefix(4))), not 3604 (PSF1) or 72b54a86 (PSF2)")
    }

    static func parsePSF1(_ bytes: [UInt8]) throws(FontError) -> PSFFont {
        guard bytes.count >= 4 else { throw FontError("a PSF1 header is 4 bytes; the file has \(bytes.count)") }
        let mode = bytes[2], height = Int(bytes[3])
        guard height > 0 else { throw FontError("the PSF1 header gives glyphs no height") }
        let count = mode & 0x01 != 0 ? 512 : 256
        let glyphBytes = count * height
        guard bytes.count >= 4 + glyphBytes else {
            throw FontError("cut off: \(count) glyphs of \(height) bytes need \(4 + glyphBytes) bytes; the file has \(bytes.count)")
        }
        var unicode: [UInt32: Int] = [:]
        if mode & 0x06 != 0 {
            var offset = 4 + glyphBytes
            for glyph in 0..<count {
                var inSequence = false
                while true {
                    guard offset + 2 <= bytes.count else { throw FontError("the Unicode table is cut off at glyph \(glyph)") }
                    let value = UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8
                    offset += 2
                    if value == 0xFFFF { break }
                    if value == 0xFFFE { inSequence = true; continue }
                    if !inSequence, unicode[value] == nil { unicode[value] = glyph }
                }
            }
        }
        return PSFFont(width: 8, height: height, glyphCount: count, bytesPerRow: 1,
                       bitmaps: Array(bytes[4..<(4 + glyphBytes)]), unicode: unicode)
    }

    static func parsePSF2(_ bytes: [UInt8]) throws(FontError) -> PSFFont {
        guard bytes.count >= 32 else { throw FontError("a PSF2 header is 32 bytes; the file has \(bytes.count)") }
        func word(_ at: Int) -> Int {
            Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24
        }
        let version = word(4), headerSize = word(8), flags = word(12)
        let count = word(16), glyphBytes = word(20), height = word(24), width = word(28)
        guard version == 0 else { throw FontError("PSF2 version \(version) is unknown (only 0 exists)") }
        guard headerSize >= 32 else { throw FontError("the PSF2 header size \(headerSize) is below 32") }
        guard width > 0, height > 0, width <= 256, height <= 256 else {
            throw FontError("a glyph of \(width)x\(height) pixels is not a console glyph (1–256 each way)")
        }
        guard count > 0, count <= 65536 else { throw FontError("\(count) glyphs: a font has 1–65536") }
        let rowBytes = (width + 7) / 8
        guard glyphBytes == rowBytes * height else {
            throw FontError("a \(width)x\(height) glyph is \(rowBytes * height) bytes, but the header says \(glyphBytes)")
        }
        let end = headerSize + count * glyphBytes
        guard bytes.count >= end else {
            throw FontError("cut off: \(count) glyphs of \(glyphBytes) bytes after a \(headerSize)-byte header need \(end) bytes; the file has \(bytes.count)")
        }
        var unicode: [UInt32: Int] = [:]
        if flags & 0x01 != 0 {
            var offset = end
            for glyph in 0..<count {
                var inSequence = false
                while true {
                    guard offset < bytes.count else { throw FontError("the Unicode table is cut off at glyph \(glyph)") }
                    let lead = bytes[offset]
                    if lead == 0xFF { offset += 1; break }
                    if lead == 0xFE { offset += 1; inSequence = true; continue }
                    let length = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0
                    guard length > 0, offset + length <= bytes.count,
                          let text = String(validating: bytes[offset..<(offset + length)], as: UTF8.self),
                          let scalar = text.unicodeScalars.first else {
                        throw FontError("the Unicode table has bad UTF-8 at byte \(offset) (glyph \(glyph))")
                    }
                    offset += length
                    if !inSequence, unicode[scalar.value] == nil { unicode[scalar.value] = glyph }
                }
            }
        }
        return PSFFont(width: width, height: height, glyphCount: count, bytesPerRow: rowBytes,
                       bitmaps: Array(bytes[headerSize..<end]), unicode: unicode)
    }
}

/// A font that cannot be used, and why.
public struct FontError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The fonts baked into the binary (Sources/CNexusFont).
public enum BuiltInFont: Sendable, CaseIterable {
    /// Terminus 8×16: screens up to about 1280×800.
    case terminus8x16
    /// Terminus 16×32: the same design drawn for large screens, crisper
    /// than 8×16 doubled.
    case terminus16x32

    public var bytes: [UInt8] {
        switch self {
        case .terminus8x16:
            Array(UnsafeBufferPointer(start: nexus_font_terminus_8x16_ptr(), count: nexus_font_terminus_8x16_size))
        case .terminus16x32:
            Array(UnsafeBufferPointer(start: nexus_font_terminus_16x32_ptr(), count: nexus_font_terminus_16x32_size))
        }
    }

    /// The parsed font. The bytes are fixed at build time and a unit test
    /// parses both, so a failure here is a build that was never tested.
    public func load() -> PSFFont {
        do {
            return try PSFFont.parse(bytes)
        } catch {
            preconditionFailure("the built-in font \(self) does not parse: \(error)")
        }
    }
}
