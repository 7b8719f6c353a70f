import SpiritCore

/// Draws a `Screen` into a pixel buffer: the whole frame, or one widget or
/// one terminal (a partial update), returning what it touched so the shell
/// copies only that. Flat panels with a 1 px border, the accent for titles
/// and focus — rio's few rules rather than a theme.
public struct ScreenRenderer: Sendable {
    public let palette: Palette
    public let font: GlyphCache

    public init(geometry: ScreenGeometry, palette: Palette = .standard) {
        self.palette = palette
        // The 16×32 design for large screens; it is drawn, not scaled, so
        // the grid unit (8 px × the scale) is its cell width either way.
        font = GlyphCache(font: (geometry.fontScale == 2 ? BuiltInFont.terminus16x32 : .terminus8x16).load())
    }

    func color(_ tone: Tone) -> Color {
        switch tone {
        case .normal: palette.text
        case .dim: palette.dimText
        case .accent: palette.accent
        case .warning: palette.warning
        case .failure: palette.failure
        }
    }

    /// Everything: the whole buffer is damaged.
    public func render(_ screen: Screen, into buffer: inout PixelBuffer) {
        buffer.clip = buffer.bounds
        buffer.fill(buffer.bounds, palette.background)
        renderStatusBar(screen, into: &buffer)
        if screen.mode == .dashboard {
            for index in screen.layout.widgets.indices where screen.layout.widgets[index].kind != .terminal {
                renderWidget(index, of: screen, into: &buffer)
            }
        }
        for (index, _) in screen.visibleTerminals { renderTerminal(index, of: screen, into: &buffer) }
        if screen.mode == .bubble { renderBubble(screen, into: &buffer) }
    }

    @discardableResult
    public func renderStatusBar(_ screen: Screen, into buffer: inout PixelBuffer) -> Rect {
        let geometry = screen.geometry, bar = geometry.statusBar
        buffer.fill(bar, palette.panel)
        buffer.horizontalLine(x: bar.x, y: bar.maxY - 1, length: bar.width, palette.border)
        let y = bar.y + (bar.height - geometry.lineHeight) / 2
        let columns = geometry.width / geometry.unit - 2
        let right = truncated(screen.status.right, columns / 2)
        let rightColumn = geometry.width / geometry.unit - 1 - right.unicodeScalars.count
        // The badge sits left of the right text, two cells apart: its count
        // with a cell of colour either side.
        let badgeColumns = screen.badge.map { $0.text.count + 2 } ?? 0
        let left = truncated(screen.status.left, columns - right.unicodeScalars.count - 2 - (badgeColumns > 0 ? badgeColumns + 2 : 0))
        buffer.drawText(left, x: geometry.unit, y: y, palette.accent, font: font)
        buffer.drawText(right, x: rightColumn * geometry.unit, y: y, palette.dimText, font: font)
        if let badge = screen.badge, let frame = badgeFrame(badgeColumns, rightColumn: rightColumn, geometry: geometry) {
            buffer.fill(frame, color(badge.worst.tone))
            buffer.drawText(badge.text, x: frame.x + geometry.unit, y: y, palette.background, font: font)
        }
        return bar
    }

    /// Where a badge of `columns` cells goes on the status bar, two cells
    /// left of the right text; nil when the bar is too narrow for it.
    func badgeFrame(_ columns: Int, rightColumn: Int, geometry: ScreenGeometry) -> Rect? {
        let column = rightColumn - 2 - columns
        guard columns > 0, column >= 1 else { return nil }
        let bar = geometry.statusBar
        return Rect(x: column * geometry.unit, y: bar.y + (bar.height - geometry.lineHeight) / 2,
                    width: columns * geometry.unit, height: geometry.lineHeight)
    }

    /// One dashboard widget: its panel, title, lines and graph (the
    /// terminal widget is the focused terminal). `.zero` outside the
    /// dashboard, where widgets are not shown.
    @discardableResult
    public func renderWidget(_ index: Int, of screen: Screen, into buffer: inout PixelBuffer) -> Rect {
        guard screen.mode == .dashboard else { return .zero }
        let placement = screen.layout.widgets[index], content = screen.widgets[index]
        if placement.kind == .terminal { return renderTerminal(screen.focus, of: screen, into: &buffer) }
        let geometry = screen.geometry
        let frame = geometry.frames(screen.layout)[index]
        panel(frame, title: placement.title, focused: false, geometry: geometry, into: &buffer)
        let body = geometry.body(of: frame)
        let capacity = geometry.textCapacity(of: frame)
        buffer.clipped(to: body) { buffer in
            let shown = content.lines.prefix(capacity.lines)
            for (row, line) in shown.enumerated() {
                buffer.drawText(truncated(line.text, capacity.columns), x: body.x, y: body.y + row * geometry.lineHeight,
                                color(line.tone), font: font)
            }
            guard let graph = content.graph else { return }
            // Graphs go under the text, from the next whole line down.
            let below = Rect(x: body.x, y: body.y + shown.count * geometry.lineHeight + geometry.unit / 2, width: body.width,
                             height: body.maxY - body.y - shown.count * geometry.lineHeight - geometry.unit / 2)
            switch graph {
            case .history(let values) where below.height >= geometry.lineHeight:
                buffer.horizontalLine(x: below.x, y: below.maxY - 1, length: below.width, palette.border)
                buffer.lineGraph(values, in: below, step: geometry.unit / 2, palette.accent, area: palette.accent.mixed(with: palette.panel, 170))
            case .meter(let fraction) where below.height >= geometry.unit:
                let bar = Rect(x: below.x, y: below.y, width: below.width, height: geometry.unit / 2)
                buffer.progressBar(fraction, in: bar, fraction >= 0.9 ? palette.warning : palette.accent, track: palette.border)
            case .spans(let bars, let textColumns):
                let left = body.x + textColumns * geometry.unit
                let width = body.maxX - left
                guard width >= 4 * geometry.unit else { break }
                for (row, bar) in bars.prefix(capacity.lines).enumerated() {
                    let y = body.y + row * geometry.lineHeight + geometry.unit / 2
                    buffer.fill(Rect(x: left, y: y, width: width, height: geometry.unit), palette.border)
                    buffer.fill(Rect(x: left + Int((bar.start * Double(width)).rounded()), y: y,
                                     width: max(1, Int((bar.length * Double(width)).rounded())), height: geometry.unit),
                                bar.ok ? palette.accent : palette.failure)
                }
            default:
                break
            }
        }
        return frame
    }

    /// One terminal where the mode shows it; `.zero` when it is not shown.
    @discardableResult
    public func renderTerminal(_ index: Int, of screen: Screen, into buffer: inout PixelBuffer) -> Rect {
        guard let (_, frame) = screen.visibleTerminals.first(where: { $0.index == index }) else { return .zero }
        let geometry = screen.geometry
        let terminal = screen.terminals[index]
        let focused = index == screen.focus && screen.mode == .terminals && screen.terminals.count > 1
        if screen.mode == .dashboard {
            panel(frame, title: screen.layout.widgets.first { $0.kind == .terminal }?.title ?? "TERMINAL", focused: false,
                  geometry: geometry, into: &buffer)
        } else {
            buffer.fill(frame, palette.background)
            buffer.border(frame, focused ? palette.accent : palette.border)
        }
        let area = screen.terminalArea(in: frame)
        drawCells(index, of: screen, area: area, columns: 0..<terminal.columns, rows: screen.visibleRows(of: terminal, in: area),
                  into: &buffer)
        return frame
    }

    /// Redraws only `cells` of terminal `index` (what `Screen.update(terminal:)`
    /// returned): a keystroke's echo costs a few glyphs, not a frame.
    /// Returns the pixels touched; in bubble mode the bubble over the
    /// terminal is drawn again where they meet.
    @discardableResult
    public func renderTerminalCells(_ index: Int, _ cells: Damage, of screen: Screen, into buffer: inout PixelBuffer) -> Damage {
        guard let (_, frame) = screen.visibleTerminals.first(where: { $0.index == index }) else { return Damage() }
        let geometry = screen.geometry, terminal = screen.terminals[index]
        let area = screen.terminalArea(in: frame)
        let shown = screen.visibleRows(of: terminal, in: area)
        var touched = Damage()
        for rect in cells.rects {
            let rows = max(rect.y, shown.lowerBound)..<min(rect.maxY, shown.upperBound)
            let columns = max(rect.x, 0)..<min(rect.maxX, terminal.columns)
            guard !rows.isEmpty, !columns.isEmpty else { continue }
            drawCells(index, of: screen, area: area, columns: columns, rows: rows, into: &buffer)
            touched.add(Rect(x: area.x + columns.lowerBound * font.cellWidth,
                             y: area.y + (rows.lowerBound - shown.lowerBound) * geometry.lineHeight,
                             width: columns.count * font.cellWidth, height: rows.count * geometry.lineHeight).intersection(area))
        }
        if screen.mode == .bubble, touched.rects.contains(where: { $0.intersects(geometry.bubble) }) {
            touched.add(renderBubble(screen, into: &buffer))
        }
        return touched
    }

    /// The cells of `rows` × `columns` (terminal coordinates) of a terminal
    /// whose shown rows start at `visibleRows(…).lowerBound`.
    func drawCells(_ index: Int, of screen: Screen, area: Rect, columns: Range<Int>, rows: Range<Int>, into buffer: inout PixelBuffer) {
        let geometry = screen.geometry, terminal = screen.terminals[index]
        let first = screen.visibleRows(of: terminal, in: area).lowerBound
        let background = screen.mode == .dashboard ? palette.panel : palette.background
        buffer.clipped(to: area) { buffer in
            for row in rows {
                let y = area.y + (row - first) * geometry.lineHeight
                for column in columns {
                    let cell = terminal[row, column]
                    var (foreground, back) = TerminalPalette.colors(of: cell, palette: palette)
                    if cell.background == .default && !cell.reverse { back = background }
                    if let cursor = terminal.cursor, cursor.row == row, cursor.column == column, index == screen.focus {
                        // The cursor: the cell in reverse, in the accent.
                        foreground = back
                        back = palette.accent
                    }
                    buffer.drawGlyph(cell.scalar, x: area.x + column * font.cellWidth, y: y, foreground, background: back, font: font)
                }
            }
        }
    }

    @discardableResult
    public func renderBubble(_ screen: Screen, into buffer: inout PixelBuffer) -> Rect {
        let geometry = screen.geometry, frame = geometry.bubble, bubble = screen.bubble
        let line = geometry.lineHeight, unit = geometry.unit
        panel(frame, title: "SPIRIT", focused: true, geometry: geometry, into: &buffer)
        let inner = frame.insetBy(geometry.padding, geometry.padding)
        buffer.clipped(to: inner) { buffer in
            buffer.drawText(bubble.clock, x: inner.maxX - font.width(of: bubble.clock), y: inner.y, palette.text, font: font)
            // Two rings over lines 1–4, their labels on lines 2 and 3 beside them.
            let radius = 2 * line - unit / 2
            for (slot, (label, value)) in [("CPU", bubble.cpu), ("RAM", bubble.memory)].enumerated() {
                let left = inner.x + slot * (inner.width / 2)
                let centerY = inner.y + line + 2 * line
                buffer.progressRing(centerX: left + radius, centerY: centerY, radius: radius, thickness: unit, value,
                                    value >= 0.9 ? palette.warning : palette.accent, track: palette.border)
                buffer.drawText(label, x: left + 2 * radius + unit, y: inner.y + 2 * line, palette.dimText, font: font)
                buffer.drawText(formatPercent(value), x: left + 2 * radius + unit, y: inner.y + 3 * line, palette.text, font: font)
            }
            let alerts = bubble.alerts == 1 ? "1 alert" : "\(bubble.alerts) alerts"
            buffer.drawText(alerts, x: inner.x, y: inner.y + 5 * line, bubble.alerts > 0 ? palette.warning : palette.dimText, font: font)
        }
        return frame
    }

    func panel(_ frame: Rect, title: String, focused: Bool, geometry: ScreenGeometry, into buffer: inout PixelBuffer) {
        buffer.fill(frame, palette.panel)
        buffer.border(frame, focused ? palette.accent : palette.border)
        let columns = (frame.width - 2 * geometry.padding) / geometry.unit
        buffer.clipped(to: frame.insetBy(1, 1)) { buffer in
            buffer.drawText(truncated(title, columns), x: frame.x + geometry.padding, y: frame.y + geometry.padding, palette.accent, font: font)
        }
    }
}

/// `text` cut to `columns` cells, with an ellipsis when it had to be cut:
/// text is shortened, never clipped mid-glyph.
public func truncated(_ text: String, _ columns: Int) -> String {
    let scalars = text.unicodeScalars
    guard scalars.count > columns else { return text }
    guard columns > 0 else { return "" }
    var out = String.UnicodeScalarView(scalars.prefix(columns - 1))
    out.append("…")
    return String(out)
}
