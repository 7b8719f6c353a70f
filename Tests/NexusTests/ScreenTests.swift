@testable import Nexus
import SpiritCore
import Testing

/// A dashboard with every widget filled from the fixtures of WidgetDataTests.
func sampleScreen(width: Int = 1024, height: Int = 768) throws -> Screen {
    var screen = Screen(width: width, height: height)
    screen.status = ("SPIRIT  spirit-vm  10.0.2.15", "up 12 s  dashboard")
    let first = try CPUSample.parse(procStat1), second = try CPUSample.parse(procStat2)
    let usage = second.usage(since: first)
    screen.update(widget: "cpu", Widgets.cpu(all: usage.all, cores: usage.cores, history: [0.1, 0.5, 0.3, usage.all]))
    screen.update(widget: "memory", Widgets.memory(try MemoryInfo.parse(meminfo),
                                                   zram: ZramStats(original: 104_857_600, compressed: 31_457_280, memoryUsed: 33_554_432)))
    screen.update(widget: "network", Widgets.network([
        .init(name: "lo", up: true, address: "127.0.0.1", rxPerSecond: 0, txPerSecond: 0),
        .init(name: "eth0", up: true, address: "10.0.2.15/24", rxPerSecond: 1536, txPerSecond: 200),
    ]))
    screen.update(widget: "services", Widgets.services([
        ServiceSummary(name: "network", state: "running", pid: 212, ready: true),
        ServiceSummary(name: "sshd", state: "failed", restarts: 5, why: "crash loop"),
    ]))
    screen.update(widget: "timeline", Widgets.timeline([
        TimelineStep(step: "kernel", process: "kernel", pid: 0, startMicros: 0, endMicros: 3_000_000, ok: true),
        TimelineStep(step: "modules", process: "init", pid: 1, startMicros: 3_000_000, endMicros: 4_000_000, ok: true),
    ], limit: 6))
    screen.update(widget: "nodus", Widgets.nodus(peers: []))
    screen.update(widget: "sentinel", Widgets.sentinel(.answered(SentinelReport(nowMillis: 0, incidents: [])), lines: 8))
    var tail = KernelLogTail(capacity: 4)
    tail.append(KernelLogLine(level: 6, sequence: 1, micros: 5_140_900, message: "NET: Registered PF_INET6 protocol family"))
    screen.update(widget: "kernel-log", Widgets.kernelLog(tail))
    return screen
}

@Suite struct WidgetContentTests {
    @Test func linesOfEachWidget() throws {
        #expect(Widgets.cpu(all: 0.5, cores: [0.75, 0.25, 1], history: []).lines.map(\.text)
                == ["all   50%", "cpu0   75%    cpu1   25%", "cpu2  100%"])
        #expect(Widgets.cpu(all: 0.95, cores: [], history: []).lines[0].tone == .warning)
        let memory = Widgets.memory(try MemoryInfo.parse(meminfo), zram: ZramStats(original: 104_857_600, compressed: 1, memoryUsed: 33_554_432))
        #expect(memory.lines.map(\.text) == ["RAM   496 MiB of 1.9 GiB  25%", "zram  100 MiB → 32 MiB  3.1x", "tmpfs 400 MiB"])
        #expect(memory.graph == .meter(0.25))
        #expect(Widgets.memory(try MemoryInfo.parse(meminfo), zram: nil).lines[1] == TextLine("zram  not in use", .dim))
        // The RAM root's writable layer: what was written, of its size.
        #expect(Widgets.memory(try MemoryInfo.parse(meminfo), zram: nil, root: (used: 12 << 20, total: 1 << 30)).lines[2]
                == TextLine("root  12 MiB of 1.0 GiB written", .dim))
        #expect(Widgets.network([.init(name: "eth0", up: false, address: nil, rxPerSecond: 2048, txPerSecond: 0)]).lines
                == [TextLine("eth0    down  no address", .dim), TextLine("  ↓ 2.0 KiB/s  ↑ 0 B/s", .dim)])
        #expect(Widgets.network([]).lines.map(\.text) == ["no interfaces"])
        let services = Widgets.services([
            ServiceSummary(name: "network", state: "running", pid: 1, restarts: 1, ready: true, why: "ignored while running"),
            ServiceSummary(name: "nodus", state: "backoff", restarts: 3, why: "exited with status 1"),
            ServiceSummary(name: "extra", state: "stopped", enabled: false),
        ])
        #expect(services.lines == [TextLine("nodus    backoff ×3  exited with status 1", .warning),
                                   TextLine("network  running ×1"), TextLine("extra    stopped", .dim)])
        let timeline = Widgets.timeline([
            TimelineStep(step: "kernel", process: "kernel", pid: 0, startMicros: 0, endMicros: 3_000_000, ok: true),
            TimelineStep(step: "cascade", process: "init", pid: 1, startMicros: 3_000_000, endMicros: 3_500_000, ok: false),
            TimelineStep(step: "modules", process: "init", pid: 1, startMicros: 3_500_000, endMicros: 4_000_000, ok: true),
        ], limit: 3)
        #expect(timeline.lines == [TextLine("kernel    3000 ms"), TextLine("cascade    500 ms", .failure), TextLine("ready at 4000 ms", .accent)])
        #expect(Widgets.nodus(peers: []).lines.map(\.text) == ["no peers seen"])
        #expect(WidgetContent.problem(SampleError("/proc/stat", "no 'cpu' line")).lines == [TextLine("/proc/stat: no 'cpu' line", .warning)])
    }

    @Test func historyKeepsTheLastSamples() {
        var history = History(capacity: 3)
        for value in [0.1, 0.2, 0.3, 0.4] { history.append(value) }
        #expect(history.values == [0.2, 0.3, 0.4])
        #expect(History().capacity == 240)
    }

    @Test func truncationEndsInAnEllipsis() {
        #expect(truncated("NEXUS-42", 8) == "NEXUS-42")
        #expect(truncated("NEXUS-42", 5) == "NEXU…")
        #expect(truncated("NEXUS-42", 0) == "")
    }
}

@Suite struct ScreenModelTests {
    @Test func startsInTheLayoutsModeWithOneTerminalSizedToItsTile() {
        let screen = Screen(width: 1024, height: 768)
        #expect(screen.mode == .dashboard && screen.terminals.count == 1 && screen.focus == 0)
        // 1024×768: content 1008×720 at (8, 40); less a unit each side: 124 columns, 44 rows.
        #expect(screen.terminals[0].columns == 124 && screen.terminals[0].rows == 44)
        #expect(screen.widgets.count == 9 && screen.widgets.allSatisfy { $0 == .waiting })
    }

    @Test func theBubbleGivesTheFocusedTerminalTheWholeScreen() {
        var screen = Screen(width: 1024, height: 768)
        screen.apply(.mode(.terminals))
        screen.apply(.split)
        #expect(screen.terminals[1].columns < 124)
        screen.apply(.mode(.bubble))
        #expect(screen.terminals[1].columns == 124 && screen.terminals[1].rows == 44)
        #expect(screen.terminals[0].columns < 124)
    }

    @Test func chordsSplitFocusZoomAndClose() {
        var screen = Screen(width: 1024, height: 768)
        func apply(_ command: HUDCommand) -> Bool { screen.apply(command) }
        #expect(apply(.mode(.bubble)))
        #expect(screen.mode == .bubble)
        #expect(!apply(.mode(.bubble)))
        #expect(!apply(.zoom))            // zoom is for the terminal grid
        #expect(apply(.split))
        #expect(screen.mode == .terminals && screen.terminals.map(\.id) == [1, 2] && screen.focus == 1)
        // Side by side now: each terminal about half as wide.
        #expect(screen.terminals.map(\.columns) == [61, 60] && screen.terminals.map(\.rows) == [44, 44])
        #expect(apply(.focusNext))
        #expect(screen.focus == 0)
        #expect(apply(.focusPrevious))
        #expect(screen.focus == 1)
        #expect(apply(.zoom))
        #expect(screen.zoomed && screen.terminals[1].columns == 124)
        #expect(screen.visibleTerminals.map(\.index) == [1])
        #expect(apply(.zoom))
        #expect(!screen.zoomed && screen.visibleTerminals.map(\.index) == [0, 1])
        #expect(apply(.close))
        #expect(screen.terminals.map(\.id) == [1] && screen.focus == 0 && screen.terminals[0].columns == 124)
        // Closing the last terminal gives a fresh one.
        #expect(apply(.close))
        #expect(screen.terminals.map(\.id) == [3])
        #expect(!apply(.focusNext))
        for _ in 0..<20 { screen.apply(.split) }
        #expect(screen.terminals.count == Screen.maximumTerminals)
        #expect(!apply(.split))
    }

    @Test func terminalsKeepTheirTextWhenResized() {
        var screen = Screen(width: 1024, height: 768)
        screen.update(terminal: TerminalSnapshot(id: 1, columns: 124, rows: 44, lines: ["$ echo NEXUS-$((6*7))", "NEXUS-42"]))
        screen.apply(.split)
        #expect(screen.terminals[0].lines.prefix(2) == ["$ echo NEXUS-$((6*7))", "NEXUS-42"])
        // A snapshot for a terminal that is gone is ignored.
        screen.update(terminal: TerminalSnapshot(id: 99, columns: 2, rows: 1))
        #expect(screen.terminals.map(\.id) == [1, 2])
    }

    @Test func theDumpSaysWhatIsOnScreen() throws {
        var screen = try sampleScreen()
        screen.update(terminal: TerminalSnapshot(id: 1, columns: 124, rows: 44, lines: ["$ echo NEXUS-$((6*7))", "NEXUS-42", "$"]))
        #expect(screen.dump() == """
            mode dashboard 1024x768
            status SPIRIT  spirit-vm  10.0.2.15 | up 12 s  dashboard
            widget cpu "CPU"
              all   50%
              cpu0   75%    cpu1   25%
            widget memory "MEMORY"
              RAM   496 MiB of 1.9 GiB  25%
              zram  100 MiB → 32 MiB  3.1x
              tmpfs 400 MiB
            widget network "NETWORK"
              eth0    up    10.0.2.15/24
                ↓ 1.5 KiB/s  ↑ 200 B/s
            widget services "SERVICES"
              sshd     failed ×5  crash loop
              network  running
            widget timeline "BOOT"
              kernel    3000 ms
              modules   1000 ms
              ready at 4000 ms
            widget nodus "NODUS PEERS"
              no peers seen
            widget sentinel "SENTINEL"
              no incidents
            widget kernel-log "KERNEL LOG"
              [    5.140900] NET: Registered PF_INET6 protocol family
            terminal 1 "terminal 1" 124x44 focused
              |$ echo NEXUS-$((6*7))
              |NEXUS-42
              |$

            """)
        screen.apply(.mode(.bubble))
        screen.bubble = BubbleContent(clock: "21:30", cpu: 0.5, memory: 0.25, alerts: 1)
        #expect(screen.dump() == """
            mode bubble 1024x768
            status SPIRIT  spirit-vm  10.0.2.15 | up 12 s  dashboard
            bubble 21:30 cpu 50% ram 25% alerts 1
            terminal 1 "terminal 1" 124x44 focused
              |$ echo NEXUS-$((6*7))
              |NEXUS-42
              |$

            """)
    }

    @Test func aSmallTerminalWidgetShowsTheRowsAtTheCursor() {
        var screen = Screen(width: 1024, height: 768)
        var snapshot = TerminalSnapshot(id: 1, columns: 124, rows: 44, lines: (0..<30).map { "line \($0)" })
        snapshot.cursor = (30, 0)
        screen.update(terminal: snapshot)
        let (_, frame) = screen.visibleTerminals[0]
        let area = screen.terminalArea(in: frame)
        let rows = screen.visibleRows(of: screen.terminals[0], in: area)
        #expect(rows.count == area.height / 16 && rows.upperBound == 31)
        #expect(screen.dump().hasSuffix("  |line 29\n"))
        #expect(snapshot.lastRowWithText == 29 && TerminalSnapshot(id: 2, columns: 3, rows: 2).lastRowWithText == nil)
    }
}

@Suite struct ScreenRendererTests {
    /// Whether the text at (`x`, `y`) in the buffer is `text` in `color`, glyph for glyph.
    func shows(_ buffer: PixelBuffer, _ text: String, x: Int, y: Int, _ color: Color, font: GlyphCache) -> Bool {
        for (index, scalar) in text.unicodeScalars.enumerated() {
            let glyph = font.font.glyph(for: scalar)
            for row in 0..<font.cellHeight {
                for column in 0..<font.cellWidth {
                    let inked = font.font.isSet(glyph: glyph, x: column / font.scale, y: row / font.scale)
                    if inked != (buffer[x + index * font.cellWidth + column, y + row] == color) { return false }
                }
            }
        }
        return true
    }

    @Test func aFullFrameDrawsTheBarThePanelsAndTheirText() throws {
        let screen = try sampleScreen()
        let renderer = ScreenRenderer(geometry: screen.geometry)
        var buffer = PixelBuffer(width: 1024, height: 768, pitch: 4352)
        renderer.render(screen, into: &buffer)
        let palette = Palette.standard
        let frames = screen.geometry.frames(screen.layout)
        // The CPU panel: its border, its title in the accent, its first line.
        #expect(buffer[frames[0].x, frames[0].y] == palette.border && buffer[frames[0].x + 1, frames[0].y + 1] == palette.panel)
        #expect(shows(buffer, "CPU", x: frames[0].x + 8, y: frames[0].y + 8, palette.accent, font: renderer.font))
        #expect(shows(buffer, "all   50%", x: frames[0].x + 8, y: frames[0].y + 24, palette.accent, font: renderer.font))
        // The failed service in the failure colour, the status bar's left text.
        #expect(shows(buffer, "sshd", x: frames[3].x + 8, y: frames[3].y + 24, palette.failure, font: renderer.font))
        #expect(shows(buffer, "SPIRIT", x: 8, y: 8, palette.accent, font: renderer.font))
        // Widgets in one row: the same baseline.
        #expect(shows(buffer, "MEMORY", x: frames[1].x + 8, y: frames[0].y + 8, palette.accent, font: renderer.font))
        // The background shows only between panels; the pitch's padding stays untouched.
        #expect(buffer[4, 700] == palette.background && padding(buffer).allSatisfy { $0 == 0 })
        // Many colours, and most of the screen is not the background.
        #expect(Set(buffer.pixels).count >= 8)
        #expect(buffer.pixels.filter { $0 == palette.background.pixel }.count < buffer.pixels.count / 4)
    }

    @Test func aPartialUpdateDrawsWhatAFullFrameWould() throws {
        var screen = try sampleScreen()
        let renderer = ScreenRenderer(geometry: screen.geometry)
        var buffer = PixelBuffer(width: 1024, height: 768)
        renderer.render(screen, into: &buffer)
        let before = buffer
        let index = screen.update(widget: "cpu", Widgets.cpu(all: 0.97, cores: [1, 0.94], history: [0.2, 0.9, 0.97]))
        #expect(index == 0 && screen.update(widget: "gpu", .waiting) == nil)
        let damaged = renderer.renderWidget(0, of: screen, into: &buffer)
        var full = PixelBuffer(width: 1024, height: 768)
        renderer.render(screen, into: &full)
        #expect(buffer.pixels == full.pixels)
        // Only the CPU panel changed.
        #expect(damaged == screen.geometry.frames(screen.layout)[0])
        #expect(damaged.contains(buffer.changes(since: before).bounds))
        #expect(!buffer.changes(since: before).isEmpty)
        // The terminal widget is the focused terminal; outside the dashboard no widget draws.
        let terminalWidget = screen.layout.widgets.firstIndex { $0.kind == .terminal }!
        #expect(renderer.renderWidget(terminalWidget, of: screen, into: &buffer) == screen.visibleTerminals[0].frame)
        screen.apply(.mode(.bubble))
        let shown = buffer.pixels
        #expect(renderer.renderWidget(0, of: screen, into: &buffer) == .zero && buffer.pixels == shown)
    }

    @Test func terminalsDrawTheirCellsAndCursor() throws {
        var screen = Screen(width: 800, height: 600)
        screen.apply(.mode(.terminals))
        var snapshot = TerminalSnapshot(id: 1, columns: screen.terminals[0].columns, rows: screen.terminals[0].rows, lines: ["NEXUS-42"])
        snapshot[0, 0].foreground = .indexed(1)
        snapshot[0, 1].background = .indexed(21)
        snapshot[0, 2].bold = true
        snapshot.cursor = (0, 8)
        screen.update(terminal: snapshot)
        let renderer = ScreenRenderer(geometry: screen.geometry)
        var buffer = PixelBuffer(width: 800, height: 600)
        renderer.render(screen, into: &buffer)
        let area = screen.terminalArea(in: screen.visibleTerminals[0].frame)
        let palette = Palette.standard
        #expect(shows(buffer, "N", x: area.x, y: area.y, TerminalPalette.color(1), font: renderer.font))
        #expect(shows(buffer, "US-42", x: area.x + 24, y: area.y, palette.text, font: renderer.font))
        #expect(shows(buffer, "X", x: area.x + 16, y: area.y, .white, font: renderer.font)) // bold default: bright
        #expect(buffer[area.x + 8, area.y] == TerminalPalette.color(21))                  // the 'E' cell's background
        #expect(buffer[area.x + 64, area.y] == palette.accent)                            // the cursor cell
        #expect(TerminalPalette.color(21) == Color(0x0000FF) && TerminalPalette.color(244) == Color(0x808080))
        #expect(TerminalPalette.color(196) == Color(0xFF0000))
    }

    @Test(arguments: screens)
    func everyModeRendersAtEveryScreenSize(_ width: Int, _ height: Int) throws {
        var screen = try sampleScreen(width: width, height: height)
        let renderer = ScreenRenderer(geometry: screen.geometry)
        #expect(renderer.font.cellWidth == screen.geometry.unit && renderer.font.cellHeight == screen.geometry.lineHeight)
        var buffer = PixelBuffer(width: width, height: height)
        for mode in [Mode.dashboard, .bubble, .terminals] {
            screen.apply(.mode(mode))
            renderer.render(screen, into: &buffer)
            #expect(buffer.pixels.filter { $0 == Palette.standard.background.pixel }.count < buffer.pixels.count, "\(mode)")
        }
        // The bubble's rings and labels stay inside its panel.
        screen.apply(.mode(.bubble))
        screen.bubble = BubbleContent(clock: "23:59", cpu: 0.5, memory: 0.95, alerts: 2)
        var bubbleOnly = PixelBuffer(width: width, height: height, fill: Color(0x123456))
        renderer.renderBubble(screen, into: &bubbleOnly)
        let touched = bubbleOnly.changes(since: PixelBuffer(width: width, height: height, fill: Color(0x123456)), tile: 1).bounds
        #expect(screen.geometry.bubble.contains(touched))
        #expect(bubbleOnly.pixels.contains(Palette.standard.warning.pixel)) // RAM at 95% and the alerts
    }

    /// A screen smaller than any the layout is made for (a serial console's
    /// fbdev, a broken mode) still draws: widgets too small are empty, not a crash.
    @Test(arguments: [(320, 200), (64, 48), (8, 8)])
    func tinyScreensStillDraw(_ width: Int, _ height: Int) throws {
        var screen = try sampleScreen(width: width, height: height)
        let renderer = ScreenRenderer(geometry: screen.geometry)
        var buffer = PixelBuffer(width: width, height: height)
        for mode in Mode.allCases {
            screen.apply(.mode(mode))
            renderer.render(screen, into: &buffer)
            #expect(buffer[0, 0] == Palette.standard.panel, "the status bar at \(width)x\(height) in \(mode)")
        }
        screen.apply(.split)
        #expect(screen.terminals.allSatisfy { $0.columns >= 1 && $0.rows >= 1 })
        let terminal = Terminal(id: 2, columns: screen.terminals[1].columns, rows: screen.terminals[1].rows)
        terminal.write("NEXUS-42")
        let cells = screen.update(terminal: terminal.snapshot())
        renderer.renderTerminalCells(1, cells, of: screen, into: &buffer)
    }
}
