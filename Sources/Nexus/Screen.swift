import SpiritCore

/// The bubble's numbers.
public struct BubbleContent: Sendable, Equatable {
    public var clock: String
    public var cpu: Double
    public var memory: Double
    public var alerts: Int

    public init(clock: String = "--:--", cpu: Double = 0, memory: Double = 0, alerts: Int = 0) {
        self.clock = clock
        self.cpu = cpu
        self.memory = memory
        self.alerts = alerts
    }
}

/// Everything on screen, as data: the mode, the status bar, each widget's
/// content, the terminals and which has focus. The renderer draws it; the
/// dump prints it; key chords change it. No I/O: the shell feeds it
/// readings and terminal snapshots, and starts or ends a PTY when the
/// terminals' ids change.
public struct Screen: Sendable {
    public var mode: Mode
    public let layout: Layout
    public let geometry: ScreenGeometry
    /// Left and right of the status bar.
    public var status: (left: String, right: String) = ("SPIRIT", "")
    /// The Sentinel's firing incidents on the status bar; nil: none (or no Sentinel).
    public var badge: IncidentBadge?
    /// One for each of `layout.widgets`, in its order.
    public private(set) var widgets: [WidgetContent]
    public var bubble = BubbleContent()
    public private(set) var terminals: [TerminalSnapshot] = []
    public private(set) var focus = 0
    public private(set) var zoomed = false
    var nextTerminalID = 1
    /// At most this many terminals in the grid: beyond 9 tiles a terminal
    /// at 800×600 is too small to use.
    public static let maximumTerminals = 9

    public init(width: Int, height: Int, layout: Layout = .standard) {
        self.layout = layout
        geometry = ScreenGeometry(width: width, height: height)
        mode = layout.mode
        widgets = Array(repeating: .waiting, count: layout.widgets.count)
        addTerminal()
    }

    /// Sets the content of the widget called `name`; returns its index (for
    /// `ScreenRenderer.renderWidget`), nil if the layout has no such widget.
    @discardableResult
    public mutating func update(widget name: String, _ content: WidgetContent) -> Int? {
        guard let index = layout.widgets.firstIndex(where: { $0.name == name }) else { return nil }
        widgets[index] = content
        return index
    }

    /// Replaces the snapshot of the terminal with the same id, and returns
    /// the cells that now look different (a moved cursor included), in cell
    /// coordinates — what a partial redraw must cover. The whole grid when
    /// the size changed or the rows shown in a small tile moved.
    @discardableResult
    public mutating func update(terminal snapshot: TerminalSnapshot) -> Damage {
        guard let index = terminals.firstIndex(where: { $0.id == snapshot.id }) else { return Damage() }
        let old = terminals[index]
        terminals[index] = snapshot
        let whole = Damage([Rect(x: 0, y: 0, width: snapshot.columns, height: snapshot.rows)])
        guard old.columns == snapshot.columns, old.rows == snapshot.rows else { return whole }
        if let (_, frame) = visibleTerminals.first(where: { $0.index == index }) {
            let area = terminalArea(in: frame)
            if visibleRows(of: old, in: area) != visibleRows(of: snapshot, in: area) { return whole }
        }
        var damage = Damage()
        for row in 0..<snapshot.rows {
            // One rect a row, from the first to the last changed cell.
            let start = row * snapshot.columns
            guard let first = (0..<snapshot.columns).first(where: { old.cells[start + $0] != snapshot.cells[start + $0] }) else { continue }
            let last = (0..<snapshot.columns).last { old.cells[start + $0] != snapshot.cells[start + $0] }!
            damage.add(Rect(x: first, y: row, width: last - first + 1, height: 1))
        }
        let cursorMoved = old.cursor?.row != snapshot.cursor?.row || old.cursor?.column != snapshot.cursor?.column
        if cursorMoved {
            for cursor in [old.cursor, snapshot.cursor].compactMap({ $0 }) {
                damage.add(Rect(x: cursor.column, y: cursor.row, width: 1, height: 1))
            }
        }
        return damage
    }

    // MARK: Commands

    /// Applies a chord's command; false when it changed nothing (a split
    /// beyond `maximumTerminals`, a zoom outside the terminal grid). The
    /// shell compares the terminals' ids before and after to start or end
    /// PTYs, and resizes each PTY to its snapshot's grid.
    @discardableResult
    public mutating func apply(_ command: HUDCommand) -> Bool {
        switch command {
        case .mode(let next):
            guard next != mode else { return false }
            mode = next
            resizeTerminals()
        case .split:
            guard terminals.count < Self.maximumTerminals else { return false }
            zoomed = false
            addTerminal()
            focus = terminals.count - 1
            if mode != .terminals { mode = .terminals }
            resizeTerminals()
        case .focusNext, .focusPrevious:
            guard terminals.count > 1 else { return false }
            focus = (focus + (command == .focusNext ? 1 : terminals.count - 1)) % terminals.count
        case .close:
            // The grid always keeps a terminal: closing the last one gives a fresh one.
            terminals.remove(at: focus)
            if terminals.isEmpty { addTerminal() }
            focus = min(focus, terminals.count - 1)
            zoomed = false
            resizeTerminals()
        case .zoom:
            guard mode == .terminals, terminals.count > 1 else { return false }
            zoomed.toggle()
            resizeTerminals()
        }
        return true
    }

    mutating func addTerminal() {
        terminals.append(TerminalSnapshot(id: nextTerminalID, columns: 80, rows: 24))
        nextTerminalID += 1
        resizeTerminals()
    }

    /// Gives each terminal the grid of its tile in the terminal mode (what
    /// TIOCSWINSZ will say); the emulator fills the cells again.
    mutating func resizeTerminals() {
        var tiles = geometry.terminalTiles(count: terminals.count, zoomed: zoomed ? focus : nil)
        // The bubble shows the focused terminal over the whole screen: its
        // shell gets the whole width, not its tile's.
        if mode == .bubble, tiles.indices.contains(focus) { tiles[focus] = geometry.content }
        for index in terminals.indices {
            let size = terminalGrid(in: tiles[index].isEmpty ? geometry.content : tiles[index])
            if terminals[index].columns != size.columns || terminals[index].rows != size.rows {
                let old = terminals[index]
                var resized = TerminalSnapshot(id: old.id, title: old.title, columns: size.columns, rows: size.rows)
                for row in 0..<min(old.rows, size.rows) {
                    for column in 0..<min(old.columns, size.columns) { resized[row, column] = old[row, column] }
                }
                terminals[index] = resized
            }
        }
    }

    /// Where a terminal's cells go in `frame`: below a title line in the
    /// dashboard's panel, else inside a one-unit margin.
    public func terminalArea(in frame: Rect) -> Rect {
        mode == .dashboard ? geometry.body(of: frame) : frame.insetBy(geometry.unit, geometry.unit)
    }

    /// The rows of `terminal` that fit `area`: all of them when they fit,
    /// else the last ones up to the cursor (or the last line with text),
    /// which is where the prompt is.
    public func visibleRows(of terminal: TerminalSnapshot, in area: Rect) -> Range<Int> {
        let fitting = max(0, area.height / geometry.lineHeight)
        guard terminal.rows > fitting else { return 0..<terminal.rows }
        let anchor = max(terminal.cursor?.row ?? 0, terminal.lastRowWithText ?? 0)
        let first = max(0, min(terminal.rows - fitting, anchor - fitting + 1))
        return first..<(first + fitting)
    }

    /// The text grid inside a terminal's frame: its 1-unit border and padding taken off.
    public func terminalGrid(in frame: Rect) -> (columns: Int, rows: Int) {
        let inner = frame.insetBy(geometry.unit, geometry.unit)
        return (max(1, inner.width / geometry.unit), max(1, inner.height / geometry.lineHeight))
    }

    // MARK: Where things are

    /// The terminals drawn in the current mode and their frames: in the
    /// grid, each tile (or the zoomed one); in the bubble, the focused one
    /// full size; in the dashboard, the focused one in the terminal widget.
    public var visibleTerminals: [(index: Int, frame: Rect)] {
        switch mode {
        case .terminals:
            let tiles = geometry.terminalTiles(count: terminals.count, zoomed: zoomed ? focus : nil)
            return terminals.indices.filter { !tiles[$0].isEmpty }.map { ($0, tiles[$0]) }
        case .bubble:
            return [(focus, geometry.content)]
        case .dashboard:
            let frames = geometry.frames(layout)
            guard let widget = layout.widgets.firstIndex(where: { $0.kind == .terminal }) else { return [] }
            return [(focus, frames[widget])]
        }
    }

    // MARK: The dump

    /// What is on screen as text, for `spirit nexus dump` and the tests:
    /// the mode, the status bar (and its badge), then each widget's title and lines (in the
    /// dashboard), the bubble (in bubble mode), and each visible terminal's
    /// rows up to its last non-empty one.
    public func dump() -> String {
        var out = ["mode \(mode.rawValue) \(geometry.width)x\(geometry.height)",
                   "status \(status.left) | \(status.right)"]
        if let badge { out.append("badge \(badge.count) \(badge.worst.rawValue)") }
        if mode == .dashboard {
            for (index, placement) in layout.widgets.enumerated() where placement.kind != .terminal {
                out.append("widget \(placement.name) \"\(placement.title)\"")
                out += widgets[index].lines.map { "  " + $0.text }
            }
        }
        if mode == .bubble {
            out.append("bubble \(bubble.clock) cpu \(formatPercent(bubble.cpu).trimmed) ram \(formatPercent(bubble.memory).trimmed) alerts \(bubble.alerts)")
        }
        for (index, frame) in visibleTerminals {
            let terminal = terminals[index]
            out.append("terminal \(terminal.id) \"\(terminal.title)\" \(terminal.columns)x\(terminal.rows)" + (index == focus ? " focused" : ""))
            let lines = Array(terminal.lines[visibleRows(of: terminal, in: terminalArea(in: frame))])
            let last = lines.lastIndex { !$0.isEmpty } ?? -1
            out += lines.prefix(last + 1).map { "  |" + $0 }
        }
        return out.joined(separator: "\n") + "\n"
    }
}
