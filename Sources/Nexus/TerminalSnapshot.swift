/// A terminal colour as a VT sees it: the default, one of the 256 indexed
/// colours (SGR 30–37, 90–97, 38;5;n), or direct RGB (38;2;r;g;b).
public enum TerminalColor: Sendable, Hashable {
    case `default`
    case indexed(UInt8)
    case rgb(UInt32)
}

/// One character cell.
public struct TerminalCell: Sendable, Equatable {
    public var scalar: Unicode.Scalar
    public var foreground: TerminalColor
    public var background: TerminalColor
    public var bold: Bool
    public var reverse: Bool

    public init(_ scalar: Unicode.Scalar = " ", foreground: TerminalColor = .default, background: TerminalColor = .default,
                bold: Bool = false, reverse: Bool = false) {
        self.scalar = scalar
        self.foreground = foreground
        self.background = background
        self.bold = bold
        self.reverse = reverse
    }

    public static let blank = TerminalCell()
}

/// What a terminal shows at one moment: the grid of cells and the cursor.
/// The terminal emulator (libvterm) produces it; the renderer draws it and
/// `dump` prints its rows.
public struct TerminalSnapshot: Sendable, Equatable {
    /// Stable while the terminal lives: the I/O shell's key to its PTY.
    public var id: Int
    public var title: String
    public var columns: Int
    public var rows: Int
    /// `rows` × `columns`, row after row.
    public var cells: [TerminalCell]
    /// Where the cursor is, if it is shown.
    public var cursor: (row: Int, column: Int)?

    public init(id: Int, title: String? = nil, columns: Int, rows: Int) {
        self.id = id
        self.title = title ?? "terminal \(id)"
        self.columns = max(0, columns)
        self.rows = max(0, rows)
        cells = Array(repeating: .blank, count: self.columns * self.rows)
        cursor = (0, 0)
    }

    /// A snapshot holding `lines` as plain text (for tests and the dump's
    /// reader), cut to the grid.
    public init(id: Int, title: String? = nil, columns: Int, rows: Int, lines: [String]) {
        self.init(id: id, title: title, columns: columns, rows: rows)
        for (row, line) in lines.prefix(rows).enumerated() {
            for (column, scalar) in line.unicodeScalars.prefix(columns).enumerated() {
                cells[row * columns + column].scalar = scalar
            }
        }
    }

    public subscript(row: Int, column: Int) -> TerminalCell {
        get { cells[row * columns + column] }
        set { cells[row * columns + column] = newValue }
    }

    /// Each row as text, without the spaces at its end.
    public var lines: [String] {
        (0..<rows).map { row in
            var scalars = String.UnicodeScalarView()
            scalars.append(contentsOf: cells[(row * columns)..<((row + 1) * columns)].map(\.scalar))
            return String(scalars).trimmingTrailingSpaces()
        }
    }

    /// The last row with a character other than a space, found on the
    /// cells themselves: the renderer asks on every frame, and building
    /// `lines` costs a String per row.
    public var lastRowWithText: Int? {
        var index = cells.count - 1
        while index >= 0 {
            if cells[index].scalar != " " { return index / columns }
            index -= 1
        }
        return nil
    }

    public static func == (lhs: TerminalSnapshot, rhs: TerminalSnapshot) -> Bool {
        lhs.id == rhs.id && lhs.title == rhs.title && lhs.columns == rhs.columns && lhs.rows == rhs.rows
            && lhs.cells == rhs.cells && lhs.cursor?.row == rhs.cursor?.row && lhs.cursor?.column == rhs.cursor?.column
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var text = Substring(self)
        while text.last == " " { text = text.dropLast() }
        return String(text)
    }
}

/// The xterm 256-colour palette, with the first 16 chosen to sit in the
/// HUD's palette (readable on its dark background) rather than xterm's
/// saturated defaults.
public enum TerminalPalette {
    static let ansi: [UInt32] = [
        0x1B2430, 0xE76F51, 0x8AB17D, 0xE9C46A, 0x4F8FD6, 0xB07CC6, 0x2A9D8F, 0xD8DEE9,
        0x4C5A6A, 0xF4A261, 0xA7D49B, 0xF2D98B, 0x7FB3F0, 0xCFA2E0, 0x56C7B8, 0xFFFFFF,
    ]

    public static func color(_ index: UInt8) -> Color {
        switch index {
        case 0..<16:
            return Color(ansi[Int(index)])
        case 16..<232:
            // The 6×6×6 cube: 0, 95, 135, 175, 215, 255.
            let steps: [UInt8] = [0, 95, 135, 175, 215, 255]
            let cube = Int(index) - 16
            return Color(red: steps[cube / 36], green: steps[(cube / 6) % 6], blue: steps[cube % 6])
        default:
            let level = UInt8(8 + (Int(index) - 232) * 10)
            return Color(red: level, green: level, blue: level)
        }
    }

    /// A cell's colours on screen: default colours from the HUD's palette,
    /// bold making the eight basic colours bright (as the Linux console
    /// does), reverse swapping the two.
    public static func colors(of cell: TerminalCell, palette: Palette) -> (foreground: Color, background: Color) {
        var foreground: Color
        switch cell.foreground {
        case .default: foreground = cell.bold ? Color.white : palette.text
        case .indexed(let index): foreground = color(cell.bold && index < 8 ? index + 8 : index)
        case .rgb(let rgb): foreground = Color(rgb)
        }
        var background: Color
        switch cell.background {
        case .default: background = palette.background
        case .indexed(let index): background = color(index)
        case .rgb(let rgb): background = Color(rgb)
        }
        if cell.reverse { swap(&foreground, &background) }
        return (foreground, background)
    }
}
