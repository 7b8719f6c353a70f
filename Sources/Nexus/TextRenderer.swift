import SpiritCore

/// A font made ready to draw at one scale: every glyph's rows expanded
/// once into bit masks of the scaled width, and Latin-1 mapped straight to
/// glyph numbers. Drawing text then costs an array read per character and
/// a shift per pixel — the research probe spent most of its text time in a
/// Dictionary lookup per glyph (hud.md §7).
public struct GlyphCache: Sendable {
    public let font: PSFFont
    public let scale: Int
    /// One cell on screen: the glyph's size times the scale.
    public let cellWidth: Int
    public let cellHeight: Int
    /// `cellHeight` masks per glyph; bit `x` (from the least significant)
    /// of a row is pixel `x` of the scaled cell.
    let rows: [UInt64]
    /// U+0000–U+00FF → glyph, so common text never touches the font's Dictionary.
    let latin1: [Int32]

    /// Cells are at most 64 pixels wide (a row is one UInt64): Terminus
    /// 16×32 at scale 4.
    public init(font: PSFFont, scale: Int = 1) {
        precondition(scale >= 1 && font.width * scale <= 64, "a glyph cell is 1–64 pixels wide")
        self.font = font
        self.scale = scale
        cellWidth = font.width * scale
        cellHeight = font.height * scale
        var rows = [UInt64](repeating: 0, count: font.glyphCount * font.height * scale)
        for glyph in 0..<font.glyphCount {
            for y in 0..<font.height {
                var mask: UInt64 = 0
                for x in 0..<font.width where font.isSet(glyph: glyph, x: x, y: y) {
                    for repeat_ in 0..<scale { mask |= 1 << UInt64(x * scale + repeat_) }
                }
                for repeat_ in 0..<scale { rows[(glyph * font.height + y) * scale + repeat_] = mask }
            }
        }
        self.rows = rows
        latin1 = (0..<256).map { Int32(font.glyph(for: Unicode.Scalar(UInt8($0)))) }
    }

    public func glyph(for scalar: Unicode.Scalar) -> Int {
        scalar.value < 256 ? Int(latin1[Int(scalar.value)]) : font.glyph(for: scalar)
    }

    /// The width of `text` in pixels: one cell a code point (the fonts are
    /// monospaced and the HUD draws no double-width characters).
    public func width(of text: String) -> Int { text.unicodeScalars.count * cellWidth }

    /// How many cells fit in `pixels`.
    public func columns(in pixels: Int) -> Int { max(0, pixels / cellWidth) }
}

extension PixelBuffer {
    /// Draws `text` with its top-left corner at (`x`, `y`), ink in
    /// `color` and, if `background` is given, the rest of each cell in it
    /// (nil leaves what is beneath). Clipped like everything else. Returns
    /// the x just after the last cell.
    @discardableResult
    public mutating func drawText(_ text: String, x: Int, y: Int, _ color: Color, background: Color? = nil,
                                  font: GlyphCache) -> Int {
        var cellX = x
        for scalar in text.unicodeScalars {
            drawGlyph(scalar, x: cellX, y: y, color, background: background, font: font)
            cellX += font.cellWidth
        }
        return cellX
    }

    /// One character cell (a terminal's cells are drawn one by one, each in
    /// its own colours).
    public mutating func drawGlyph(_ scalar: Unicode.Scalar, x: Int, y: Int, _ color: Color, background: Color? = nil,
                                   font: GlyphCache) {
        // Only the part of the cell inside the clip.
        let visible = Rect(x: x, y: y, width: font.cellWidth, height: font.cellHeight).intersection(clip)
        guard !visible.isEmpty else { return }
        let stride = self.stride
        let ink = color.pixel, paper = background?.pixel
        let glyphRows = font.glyph(for: scalar) * font.cellHeight
        pixels.withUnsafeMutableBufferPointer { words in
            font.rows.withUnsafeBufferPointer { masks in
                let base = words.baseAddress!
                for row in visible.y..<visible.maxY {
                    let mask = masks[glyphRows + row - y]
                    let line = base + row * stride
                    for px in visible.x..<visible.maxX {
                        if mask & (1 << UInt64(px - x)) != 0 {
                            line[px] = ink
                        } else if let paper {
                            line[px] = paper
                        }
                    }
                }
            }
        }
    }
}
