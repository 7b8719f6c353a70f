import Nexus
import SpiritCore
import Testing

let screens = [(800, 600), (1024, 768), (1280, 720), (1280, 800), (1366, 768), (1440, 900), (1600, 900), (1920, 1080), (2560, 1440)]

@Suite struct LayoutFileTests {
    @Test func theDefaultLayoutIsAValidFile() {
        let layout = Layout.standard
        #expect(layout.mode == .dashboard && layout.columns == 12 && layout.rows == 6)
        #expect(layout.widgets.map(\.name) == ["cpu", "memory", "network", "services", "timeline", "nodus", "terminal", "sentinel", "kernel-log"])
        #expect(Set(layout.widgets.map(\.kind)).count == 9)
        #expect(layout.widgets[0].title == "CPU" && layout.widgets[0].refreshMillis == 1000)
        // Every cell of the grid is used exactly once.
        #expect(layout.widgets.map(\.cells.area).reduce(0, +) == 12 * 6)
    }

    @Test func readsEveryField() throws {
        let layout = try Layout.parse("""
            mode = "terminals"
            columns = 4
            rows = 3
            [load]
            widget = "cpu"
            title = "Load"
            column = 1
            row = 2
            width = 3
            height = 1
            refresh-ms = 250
            """, path: "nexus.toml")
        #expect(layout == Layout(mode: .terminals, columns: 4, rows: 3, widgets: [
            WidgetPlacement(name: "load", kind: .cpu, column: 1, row: 2, columns: 3, rows: 1, title: "Load", refreshMillis: 250),
        ]))
    }

    func error(_ text: String) -> String {
        do { _ = try Layout.parse(text, path: "/etc/spirit/nexus.toml"); return "no error" } catch { return error.description }
    }

    @Test func errorsNameTheFileTheLineAndTheField() {
        let cpu = "[cpu]\nwidget = \"cpu\"\ncolumn = 0\nrow = 0\nwidth = 4\nheight = 2\n"
        #expect(error("mdoe = \"bubble\"\n").hasPrefix("/etc/spirit/nexus.toml:1: mdoe: unknown field (known at the top: columns, mode, rows"))
        #expect(error("mode = \"fancy\"\n") == "/etc/spirit/nexus.toml:1: mode: 'fancy' is not one of bubble, dashboard, terminals")
        #expect(error("columns = 0\n") == "/etc/spirit/nexus.toml:1: columns: 0 is out of range (1–48)")
        #expect(error("rows = \"six\"\n") == "/etc/spirit/nexus.toml:1: rows: expected an integer, found a string")
        #expect(error(cpu + "colour = \"red\"\n").hasPrefix("/etc/spirit/nexus.toml:7: cpu.colour: unknown field (known in a widget: column, height,"))
        #expect(error("[cpu]\ncolumn = 0\n") == "/etc/spirit/nexus.toml:1: cpu.widget: missing: every widget needs widget = \"cpu\" (one of cpu, memory, network, services, timeline, nodus, terminal, clock, vms, sentinel, kernel-log, script)")
        #expect(error("\n[gpu]\nwidget = \"gpu\"\n").hasPrefix("/etc/spirit/nexus.toml:3: gpu.widget: 'gpu' is not one of cpu, memory"))
        #expect(error("[cpu]\nwidget = \"cpu\"\ncolumn = 0\nrow = 0\nwidth = 4\n") == "/etc/spirit/nexus.toml:1: cpu.height: missing: every widget needs height = a number of grid cells")
        #expect(error("[cpu]\nwidget = \"cpu\"\ncolumn = 12\n") == "/etc/spirit/nexus.toml:3: cpu.column: 12 is out of range (0–11)")
        #expect(error("[cpu]\nwidget = \"cpu\"\ncolumn = 10\nrow = 0\nwidth = 4\nheight = 1\n")
                == "/etc/spirit/nexus.toml:5: cpu.width: column 10 + width 4 goes past the grid's 12 columns")
        #expect(error("rows = 2\n[cpu]\nwidget = \"cpu\"\ncolumn = 0\nrow = 1\nwidth = 4\nheight = 2\n")
                == "/etc/spirit/nexus.toml:7: cpu.height: row 1 + height 2 goes past the grid's 2 rows")
        #expect(error(cpu + "[ram]\nwidget = \"memory\"\ncolumn = 3\nrow = 1\nwidth = 2\nheight = 1\n")
                == "/etc/spirit/nexus.toml:7: ram: covers cells of [cpu] (line 1); widgets may not overlap")
        #expect(error(cpu + "refresh-ms = 5\n") == "/etc/spirit/nexus.toml:7: cpu.refresh-ms: 5 is out of range (100–3600000)")
        #expect(error(cpu + "title = \"\"\n") == "/etc/spirit/nexus.toml:7: cpu.title: a title is one line of 1–40 characters")
        #expect(error(cpu + "[cpu]\n") == "/etc/spirit/nexus.toml:7: cpu: the table is defined twice")
        #expect(error(cpu + "width = 5\n") == "/etc/spirit/nexus.toml:7: cpu.width: set twice")
    }
}

@Suite struct ScreenGeometryTests {
    func isOnGrid(_ rect: Rect, _ unit: Int) -> Bool {
        rect.x % unit == 0 && rect.y % unit == 0 && rect.width % unit == 0 && rect.height % unit == 0
    }

    @Test(arguments: screens)
    func theDashboardFitsEveryScreen(_ width: Int, _ height: Int) {
        let geometry = ScreenGeometry(width: width, height: height)
        let screen = Rect(x: 0, y: 0, width: width, height: height)
        let frames = geometry.frames(.standard)
        #expect(frames.count == 9)
        for (index, frame) in frames.enumerated() {
            #expect(screen.contains(frame) && geometry.content.contains(frame), "\(frame) at \(width)x\(height)")
            #expect(!frame.intersects(geometry.statusBar))
            #expect(isOnGrid(frame, geometry.unit), "\(frame) is off the \(geometry.unit) px grid")
            for other in frames[(index + 1)...] { #expect(!frame.intersects(other), "\(frame) overlaps \(other)") }
            // Room for a title and a few lines of ~28 columns: no widget is too small to read.
            let capacity = geometry.textCapacity(of: frame)
            #expect(capacity.columns >= 28 && capacity.lines >= 6, "\(capacity) at \(width)x\(height)")
        }
        // Panels in one grid row share their top edge, so their text baselines line up.
        #expect(frames[0].y == frames[1].y && frames[1].y == frames[2].y && frames[3].y == frames[5].y)
        // The grid fills the content to within one unit on the right and bottom.
        let bounds = frames.reduce(Rect.zero) { $0.union($1) }
        #expect(bounds.x == geometry.content.x && bounds.y == geometry.content.y)
        #expect(geometry.content.maxX - bounds.maxX < geometry.unit && geometry.content.maxY - bounds.maxY < geometry.unit)
        #expect(isOnGrid(geometry.bubble, geometry.unit) && geometry.content.contains(geometry.bubble))
    }

    @Test func largeScreensGetTheLargeFont() {
        #expect(ScreenGeometry(width: 1920, height: 1080).fontScale == 1)
        #expect(ScreenGeometry(width: 2560, height: 1440).fontScale == 2)
        #expect(ScreenGeometry(width: 3840, height: 2160).unit == 16)
    }

    @Test(arguments: 1...9)
    func terminalTilesCoverTheContentWithoutOverlap(_ count: Int) {
        for (width, height) in screens {
            let geometry = ScreenGeometry(width: width, height: height)
            let tiles = geometry.terminalTiles(count: count)
            #expect(tiles.count == count)
            for (index, tile) in tiles.enumerated() {
                #expect(geometry.content.contains(tile) && isOnGrid(tile, geometry.unit) && !tile.isEmpty)
                for other in tiles[(index + 1)...] { #expect(!tile.intersects(other)) }
            }
            // Within a gutter and a unit per track, the tiles use the whole area.
            let used = tiles.map(\.area).reduce(0, +)
            #expect(Double(used) > Double(geometry.content.area) * 0.85, "\(count) tiles at \(width)x\(height) use \(used) of \(geometry.content.area)")
        }
    }

    @Test func tilesAreSideBySideThenAGrid() {
        let geometry = ScreenGeometry(width: 1024, height: 768)
        let two = geometry.terminalTiles(count: 2)
        #expect(two[0].y == two[1].y && two[0].maxX + geometry.gutter == two[1].x)
        let three = geometry.terminalTiles(count: 3)
        // 2 on top, the third alone and full width below.
        #expect(three[0].y == three[1].y && three[2].width == geometry.content.width / geometry.unit * geometry.unit)
        let zoomed = geometry.terminalTiles(count: 3, zoomed: 1)
        #expect(zoomed == [.zero, geometry.content, .zero])
        #expect(geometry.terminalTiles(count: 0).isEmpty)
    }
}
