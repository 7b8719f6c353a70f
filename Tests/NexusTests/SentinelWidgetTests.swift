@testable import Nexus
import Glibc
import SpiritCore
import Testing

/// The Sentinel's `list json` answer as SentinelDaemon writes it (objects
/// joined by ",\n", as IncidentJSON encodes them): an OOM kill that fired
/// 12 s ago, a failed service 3 s ago, a resolved one, and a warning
/// about the system.
let sentinelAnswer = """
    {"now_ms":60000,"incidents":[{"id":1,"rule":"service-failed","severity":"critical","service":"crashy","state":"resolved",\
    "condition":"failed >= 1","pending_ms":1000,"firing_ms":1000,"resolved_ms":5000,"value":1,"peak":1,"evidence":[],\
    "decision":"advise","explanation":"service-failed (critical) on service crashy: failed >= 1, value 1."},
    {"id":2,"rule":"oom-kill","severity":"critical","service":"leaky","state":"firing","condition":"oom-kills >= 1",\
    "pending_ms":48000,"firing_ms":48000,"resolved_ms":null,"value":1,"peak":1,"evidence":["Memory cgroup out of memory"],\
    "decision":"advise","explanation":"oom-kill (critical) on service leaky: oom-kills >= 1, value 1. Raise its memory-max.\\nsecond line"},
    {"id":3,"rule":"memory-pressure","severity":"warning","service":null,"state":"firing","condition":"memory.some-avg10 > 20",\
    "pending_ms":50000,"firing_ms":57000,"resolved_ms":null,"value":31.5,"peak":40,"evidence":[],\
    "decision":"advise","explanation":"memory-pressure (warning) on the system: memory.some-avg10 > 20 for 5 s, value 31.5."}]}

    """

@Suite struct SentinelWidgetTests {
    @Test func theAnswerGivesTheFiringIncidentsNewestFirst() throws {
        let report = try SentinelReport.parse(Array(sentinelAnswer.utf8))
        #expect(report.nowMillis == 60000 && report.incidents.count == 3)
        #expect(report.firing.map(\.id) == [3, 2])
        #expect(report.firing[1] == SentinelIncident(id: 2, rule: "oom-kill", severity: .critical, service: "leaky", firingMillis: 48000,
                                                     explanation: "oom-kill (critical) on service leaky: oom-kills >= 1, value 1. Raise its memory-max.\nsecond line"))
        #expect(report.firing[0].service == nil && report.firing[0].severity == .warning)
        // The template's prefix repeats the line above it: left out, and only the first line.
        #expect(report.firing[1].summary == "oom-kills >= 1, value 1. Raise its memory-max.")
        #expect(SentinelIncident(id: 9, rule: "r", severity: .info, service: nil, firingMillis: 0, explanation: "a model's words").summary
                == "a model's words")
    }

    @Test func theBadgeCountsTheFiringInTheWorstColourAndIsHiddenAtZero() throws {
        let report = try SentinelReport.parse(Array(sentinelAnswer.utf8))
        #expect(report.badge == IncidentBadge(count: 2, worst: .critical))
        #expect(SentinelReport(nowMillis: 0, incidents: report.incidents.filter { $0.severity == .warning }).badge
                == IncidentBadge(count: 1, worst: .warning))
        #expect(SentinelReport(nowMillis: 0, incidents: report.incidents.filter(\.resolved)).badge == nil)
        #expect(SentinelReport(nowMillis: 0, incidents: []).badge == nil)
        #expect(IncidentBadge(count: 120, worst: .info).text == "99+")
        #expect(SentinelIncident.Severity.info < .warning && SentinelIncident.Severity.warning < .critical)
        #expect([SentinelIncident.Severity.info, .warning, .critical].map(\.tone) == [.accent, .warning, .failure])
    }

    @Test func anAnswerThatIsNotTheListSaysSo() {
        #expect(throws: SampleError.self) { try SentinelReport.parse(Array("{\"now_ms\":1}".utf8)) }
        #expect(throws: SampleError.self) { try SentinelReport.parse(Array("no incidents".utf8)) }
        // An entry without an id or a rule is skipped; an unknown severity reads as warning.
        let report = try? SentinelReport.parse(Array("{\"incidents\":[{\"rule\":\"x\"},{\"id\":4,\"rule\":\"y\",\"severity\":\"dire\"}]}".utf8))
        #expect(report?.incidents.map(\.id) == [4] && report?.incidents.first?.severity == .warning)
    }

    @Test func theWidgetsLines() throws {
        let report = try SentinelReport.parse(Array(sentinelAnswer.utf8))
        #expect(Widgets.sentinel(.answered(report), lines: 10).lines == [
            TextLine("warning  memory-pressure  system  3 s", .warning),
            TextLine("  memory.some-avg10 > 20 for 5 s, value 31.5.", .dim),
            TextLine("critical oom-kill  leaky  12 s", .failure),
            TextLine("  oom-kills >= 1, value 1. Raise its memory-max.", .dim),
        ])
        // Too many to fit: the newest, then how many more.
        #expect(Widgets.sentinel(.answered(report), lines: 3).lines.map(\.text)
                == ["warning  memory-pressure  system  3 s", "  memory.some-avg10 > 20 for 5 s, value 31.5.", "+1 more (spiritctl sentinel)"])
        #expect(Widgets.sentinel(.answered(report), lines: 1).lines.count == 3) // one incident at least; the renderer cuts
        let quiet = SentinelReport(nowMillis: 0, incidents: report.incidents.filter(\.resolved))
        #expect(Widgets.sentinel(.answered(quiet), lines: 5).lines == [TextLine("no incidents", .dim), TextLine("1 resolved", .dim)])
        #expect(Widgets.sentinel(.answered(SentinelReport(nowMillis: 0, incidents: [])), lines: 5).lines == [TextLine("no incidents", .dim)])
        #expect(Widgets.sentinel(.notRunning("no /run/spirit/sentinel.sock"), lines: 5).lines
                == [TextLine("sentinel not running", .warning), TextLine("no /run/spirit/sentinel.sock", .dim)])
        #expect([0, 59_999, 60_000, 7_200_000, 200_000_000, -5].map { formatAge(milliseconds: $0) } == ["0 s", "59 s", "1 min", "2 h", "2 d", "0 s"])
    }

    /// The reading against a fixture tree: no socket, a socket nobody
    /// listens on (a Sentinel that died), and one that answers.
    @Test func readingTheSocket() throws {
        let root = "/tmp/spirit-sentinel-widget-\(Kernel.pid)-\(UInt32.random(in: 0...UInt32.max))"
        try Kernel.makeDirectory(root, parents: true)
        defer { Kernel.remove(root + "/sentinel.sock"); _ = rmdir(root) }
        var paths = ReadingPaths()
        paths.sentinelControl = root + "/sentinel.sock"
        let readings = Readings(paths: paths)

        #expect(readings.read(.sentinel, lines: 6).lines
                == [TextLine("sentinel not running", .warning), TextLine("no \(root)/sentinel.sock", .dim)])
        #expect(readings.incidentBadge == nil)

        let stale = try Socket.listenUnix(paths.sentinelControl)
        stale.close() // the file stays, nobody answers
        let refused = readings.read(.sentinel, lines: 6).lines
        #expect(refused.first == TextLine("sentinel not running", .warning))
        #expect(refused.last?.text.contains("is the sentinel running?") == true, "\(refused)")

        Kernel.remove(paths.sentinelControl)
        let listener = try Socket.listenUnix(paths.sentinelControl)
        defer { listener.close() }
        try Threads.start {
            // The listener is non-blocking: an accept before the reading
            // below connects would find no one and end this thread, and the
            // reading would wait for an answer for ever.
            _ = try? listener.waitReadable(milliseconds: 30_000)
            guard let (connection, request, _) = ControlChannel.accept(on: listener) else { return }
            let reply = request == "list json" ? ControlChannel.ok(sentinelAnswer.trimmed) : ControlChannel.error(code: 100, "unknown request")
            _ = try? Kernel.write(connection.fd, reply, socket: true, "a test connection")
            connection.close()
        }
        let content = readings.read(.sentinel, lines: 6)
        #expect(content.lines.first == TextLine("warning  memory-pressure  system  3 s", .warning), "\(content.lines)")
        #expect(readings.incidentBadge == IncidentBadge(count: 2, worst: .critical))
    }

    @Test func theBuiltInLayoutShowsTheSentinel() {
        let widget = Layout.standard.widgets.first { $0.kind == .sentinel }
        #expect(widget?.title == "SENTINEL" && widget?.refreshMillis == 2000)
        #expect(widget.map { $0.columns * $0.rows } == 8)
    }
}

@Suite struct IncidentBadgeRenderingTests {
    @Test func theBadgeIsOnTheStatusBarInTheWorstColour() throws {
        var screen = try sampleScreen()
        let renderer = ScreenRenderer(geometry: screen.geometry)
        let palette = Palette.standard
        var plain = PixelBuffer(width: 1024, height: 768)
        renderer.render(screen, into: &plain)
        #expect(!plain.pixels.prefix(1024 * screen.geometry.statusBar.height).contains(palette.failure.pixel))

        screen.badge = IncidentBadge(count: 2, worst: .critical)
        #expect(screen.dump().split(separator: "\n")[2] == "badge 2 critical")
        var buffer = PixelBuffer(width: 1024, height: 768)
        renderer.render(screen, into: &buffer)
        // "up 12 s  dashboard" ends one cell from the right edge; the badge
        // (" 2 ") ends two cells left of it.
        let rightColumn = 1024 / 8 - 1 - "up 12 s  dashboard".count
        let frame = try #require(renderer.badgeFrame(3, rightColumn: rightColumn, geometry: screen.geometry))
        #expect(frame == Rect(x: (rightColumn - 5) * 8, y: 8, width: 24, height: 16))
        #expect(buffer[frame.x, frame.y] == palette.failure && buffer[frame.maxX - 1, frame.maxY - 1] == palette.failure)
        #expect(ScreenRendererTests().shows(buffer, "2", x: frame.x + 8, y: frame.y, palette.background, font: renderer.font))
        #expect(screen.geometry.statusBar.contains(frame))
        // Only the status bar changed, and redrawing it alone gives the full frame.
        #expect(screen.geometry.statusBar.contains(buffer.changes(since: plain, tile: 1).bounds))
        var partial = plain
        #expect(renderer.renderStatusBar(screen, into: &partial) == screen.geometry.statusBar)
        #expect(partial.pixels == buffer.pixels)
        // A warning is amber; no badge again is the plain bar.
        screen.badge = IncidentBadge(count: 1, worst: .warning)
        renderer.renderStatusBar(screen, into: &partial)
        #expect(partial[frame.x + 8, frame.y] == palette.warning)
        screen.badge = nil
        renderer.renderStatusBar(screen, into: &partial)
        #expect(partial.pixels == plain.pixels)
    }

    @Test(arguments: [(320, 200), (64, 48), (8, 8)])
    func aNarrowBarLeavesTheBadgeOut(_ width: Int, _ height: Int) throws {
        var screen = try sampleScreen(width: width, height: height)
        screen.badge = IncidentBadge(count: 3, worst: .critical)
        let renderer = ScreenRenderer(geometry: screen.geometry)
        var buffer = PixelBuffer(width: width, height: height)
        renderer.render(screen, into: &buffer)
        #expect(buffer[0, 0] == Palette.standard.panel)
    }
}
