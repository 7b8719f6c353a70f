import SpiritCore

/// Where things go on a screen of a given size, computed once per mode
/// set: the font, the one grid every edge is aligned to, the status bar,
/// and the frames of the dashboard's widgets, the bubble and the terminal
/// tiles. Pure, so each screen size is a unit test.
///
/// The grid unit is one text cell's width (8 px, or 16 with the large
/// font): every panel edge falls on it, panels in a grid row start on the
/// same line, and text sits in each panel at the same inset — so the
/// baselines of neighbouring widgets line up.
public struct ScreenGeometry: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// 1: Terminus 8×16. 2: Terminus 16×32, for screens where 8×16 is too
    /// small to read from a chair (about 1440 lines and up).
    public let fontScale: Int
    /// The grid: every edge is a multiple of this.
    public let unit: Int
    public var lineHeight: Int { 2 * unit }
    /// The bar at the top: host, address, uptime, the mode.
    public let statusBar: Rect
    /// Below the bar, inside the margins: where widgets and terminals go.
    public let content: Rect

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
        fontScale = width >= 2000 && height >= 1400 ? 2 : 1
        unit = 8 * fontScale
        // One text line with half a line of air above and below.
        statusBar = Rect(x: 0, y: 0, width: width, height: 4 * unit)
        let top = statusBar.maxY + unit
        content = Rect(x: unit, y: top, width: (width - 2 * unit) / unit * unit, height: (height - top - unit) / unit * unit)
    }

    /// The space between panels.
    public var gutter: Int { unit }
    /// From a panel's edge to its text.
    public var padding: Int { unit }

    /// Splits `length` pixels (from `origin`) into `count` tracks with a
    /// gutter between them, every edge on the grid. The units left over
    /// after an even split go one each to the first tracks, so the tracks
    /// fill the length to within one unit.
    func tracks(origin: Int, length: Int, count: Int) -> [(start: Int, size: Int)] {
        let units = (length - (count - 1) * gutter) / unit
        let base = units / count, extra = units % count
        var out: [(Int, Int)] = []
        var position = origin
        for index in 0..<count {
            let size = (base + (index < extra ? 1 : 0)) * unit
            out.append((position, size))
            position += size + gutter
        }
        return out
    }

    /// The pixel frame of each widget of `layout`, in its order.
    public func frames(_ layout: Layout) -> [Rect] {
        let columns = tracks(origin: content.x, length: content.width, count: layout.columns)
        let rows = tracks(origin: content.y, length: content.height, count: layout.rows)
        return layout.widgets.map { widget in
            let first = columns[widget.column], last = columns[widget.column + widget.columns - 1]
            let top = rows[widget.row], bottom = rows[widget.row + widget.rows - 1]
            return Rect(x: first.start, y: top.start, width: last.start + last.size - first.start, height: bottom.start + bottom.size - top.start)
        }
    }

    /// The bubble: a panel in the top-right corner of the content, over
    /// the full-screen terminal, wide enough for a clock, two rings and
    /// their labels (30 cells × 6 lines).
    public var bubble: Rect {
        let size = Rect(x: 0, y: 0, width: 30 * unit, height: 6 * lineHeight + 2 * padding)
        return Rect(x: content.maxX - size.width, y: content.y, width: size.width, height: size.height)
    }

    /// The tiles of `count` terminals in the content area: as square a grid
    /// as fits (1, 2 side by side, 2×2, 3×2 …), the last row's tiles
    /// widened to fill it. With `zoomed`, that one tile takes it all.
    public func terminalTiles(count: Int, zoomed: Int? = nil) -> [Rect] {
        guard count > 0 else { return [] }
        if let zoomed, (0..<count).contains(zoomed) {
            return (0..<count).map { $0 == zoomed ? content : .zero }
        }
        var columns = 1
        while columns * columns < count { columns += 1 }
        let rowCount = (count + columns - 1) / columns
        let rows = tracks(origin: content.y, length: content.height, count: rowCount)
        var tiles: [Rect] = []
        for (rowIndex, row) in rows.enumerated() {
            let inRow = min(columns, count - rowIndex * columns)
            for column in tracks(origin: content.x, length: content.width, count: inRow) {
                tiles.append(Rect(x: column.start, y: row.start, width: column.size, height: row.size))
            }
        }
        return tiles
    }

    /// The text area of a panel: inside its padding, below its title line.
    public func body(of panel: Rect) -> Rect {
        Rect(x: panel.x + padding, y: panel.y + padding + lineHeight, width: panel.width - 2 * padding,
             height: panel.height - 2 * padding - lineHeight)
    }

    /// Whole text lines and columns that fit a panel's body.
    public func textCapacity(of panel: Rect) -> (columns: Int, lines: Int) {
        let area = body(of: panel)
        return (max(0, area.width / unit), max(0, area.height / lineHeight))
    }
}
