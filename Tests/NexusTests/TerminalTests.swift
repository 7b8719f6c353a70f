@testable import Nexus
import Testing
import SpiritCore

@Suite struct TerminalTests {
    @Test func textLandsInCellsAndMovesTheCursor() {
        let terminal = Terminal(id: 1, columns: 20, rows: 4)
        terminal.write("hello\r\nworld")
        #expect(terminal.snapshot().lines == ["hello", "world", "", ""])
        #expect(terminal.cursor == (1, 5))
        #expect(terminal.cell(row: 0, column: 1) == TerminalCell("e"))
    }

    @Test func cursorMovement() {
        let terminal = Terminal(id: 1, columns: 20, rows: 6)
        terminal.write("\u{1B}[5;10HX")          // CUP: row 5, column 10 (1-based)
        #expect(terminal.cell(row: 4, column: 9).scalar == "X" && terminal.cursor == (4, 10))
        terminal.write("\u{1B}[2A\u{1B}[3DY")    // up 2, left 3
        #expect(terminal.cell(row: 2, column: 7).scalar == "Y" && terminal.cursor == (2, 8))
        terminal.write("\u{1B}[H\u{1B}[2BZ\r")   // home, down 2, carriage return
        #expect(terminal.cell(row: 2, column: 0).scalar == "Z" && terminal.cursor == (2, 0))
        terminal.write("\u{1B}[2J")              // erase the screen; the cursor stays
        #expect(terminal.snapshot().lines.allSatisfy(\.isEmpty) && terminal.cursor == (2, 0))
        terminal.write("\u{1B}[?25l")            // hide the cursor
        #expect(!terminal.cursorVisible && terminal.snapshot().cursor == nil)
    }

    @Test func sgrColoursAndBold() {
        let terminal = Terminal(id: 1, columns: 20, rows: 2)
        terminal.write("\u{1B}[31mR\u{1B}[1;38;5;200mB\u{1B}[0;48;2;1;2;3mG\u{1B}[0;7mV\u{1B}[0;94mL\u{1B}[0mN")
        #expect(terminal.cell(row: 0, column: 0) == TerminalCell("R", foreground: .indexed(1)))
        #expect(terminal.cell(row: 0, column: 1) == TerminalCell("B", foreground: .indexed(200), bold: true))
        #expect(terminal.cell(row: 0, column: 2) == TerminalCell("G", background: .rgb(0x010203)))
        #expect(terminal.cell(row: 0, column: 3) == TerminalCell("V", reverse: true))
        #expect(terminal.cell(row: 0, column: 4) == TerminalCell("L", foreground: .indexed(12)))
        #expect(terminal.cell(row: 0, column: 5) == TerminalCell("N"))
        #expect(terminal.cell(row: 1, column: 0) == TerminalCell.blank)
    }

    @Test func linesScrollIntoTheScrollback() {
        let terminal = Terminal(id: 1, columns: 10, rows: 3, scrollbackLimit: 3)
        terminal.write("1\r\n2\r\n3\r\n4\r\n5")
        #expect(terminal.snapshot().lines == ["3", "4", "5"])
        #expect(terminal.scrollback.map { String(String.UnicodeScalarView($0.map(\.scalar))).trimmingTrailingSpaces() } == ["1", "2"])
        let back = terminal.snapshot(scrolledBack: 2)
        #expect(back.lines == ["1", "2", "3"] && back.cursor == nil)
        #expect(terminal.snapshot(scrolledBack: 99).lines == ["1", "2", "3"])
        terminal.write("\r\n6\r\n7\r\n8")
        // At most 3 lines kept: the oldest went.
        #expect(terminal.snapshot(scrolledBack: 3).lines == ["3", "4", "5"])
        // A scroll region (DECSTBM): only rows 2–3 move; row 1 stays.
        let region = Terminal(id: 2, columns: 10, rows: 3)
        region.write("top\u{1B}[2;3r\u{1B}[2;1Ha\r\nb\r\nc")
        #expect(region.snapshot().lines == ["top", "b", "c"])
    }

    @Test func resizeKeepsTheTextAndBringsBackScrolledLines() {
        let terminal = Terminal(id: 1, columns: 10, rows: 3)
        terminal.write("1\r\n2\r\n3\r\n4\r\n5")
        _ = terminal.takeDamage()
        terminal.resize(columns: 12, rows: 5)
        #expect(terminal.columns == 12 && terminal.rows == 5)
        #expect(terminal.snapshot().lines == ["1", "2", "3", "4", "5"])
        #expect(terminal.scrollback.isEmpty)
        #expect(terminal.takeDamage().bounds == Rect(x: 0, y: 0, width: 12, height: 5))
        terminal.resize(columns: 1, rows: 5)
        terminal.write("\u{1B}[1;1Hxyz")
        #expect(terminal.snapshot().columns == 1 && terminal.cell(row: 0, column: 0).scalar != " ")
    }

    @Test func titleBellAndAnswers() {
        let terminal = Terminal(id: 7, columns: 20, rows: 4)
        #expect(terminal.title == "terminal 7")
        terminal.write("\u{1B}]2;vi notes.txt\u{07}")
        #expect(terminal.title == "vi notes.txt" && terminal.snapshot().title == "vi notes.txt")
        terminal.write("\u{07}")
        #expect(terminal.bells == 1)
        terminal.write("\u{1B}[3;4H\u{1B}[6n")                 // where is the cursor?
        #expect(terminal.takeOutput() == Array("\u{1B}[3;4R".utf8))
        #expect(terminal.takeOutput().isEmpty)
    }

    @Test func applicationCursorModeFollowsDECCKM() {
        let terminal = Terminal(id: 1, columns: 20, rows: 4)
        #expect(!terminal.applicationCursor)
        terminal.write("\u{1B}[?1h")
        #expect(terminal.applicationCursor)
        #expect(terminal.takeOutput().isEmpty)                   // asking sends nothing to the program
        terminal.write("\u{1B}[?1l")
        #expect(!terminal.applicationCursor)
        // The keyboard uses it: Up in vi is ESC O A.
        terminal.write("\u{1B}[?1h")
        var keyboard = KeyboardState()
        #expect(keyboard.handle(code: Key.up.rawValue, value: 1, applicationCursor: terminal.applicationCursor) == .bytes([0x1B, 0x4F, 0x41]))
    }

    @Test func theAlternateScreenGivesBackTheShell() {
        let terminal = Terminal(id: 1, columns: 20, rows: 3)
        terminal.write("$ vi\r\n")
        terminal.write("\u{1B}[?1049h\u{1B}[H\u{1B}[2J~ vi screen")
        #expect(terminal.snapshot().lines == ["~ vi screen", "", ""])
        terminal.write("\u{1B}[?1049l")
        #expect(terminal.snapshot().lines == ["$ vi", "", ""])
    }

    @Test func damageIsTheRowsThatChanged() {
        let terminal = Terminal(id: 1, columns: 10, rows: 4)
        _ = terminal.takeDamage()
        terminal.write("\u{1B}[3;1Hab")
        let damage = terminal.takeDamage()
        #expect(!damage.isEmpty && damage.bounds.y == 2 && damage.bounds.height == 1)
        #expect(terminal.takeDamage().isEmpty)
    }

    @Test func wideAndUnicodeCharacters() {
        let terminal = Terminal(id: 1, columns: 10, rows: 2)
        terminal.write("é漢x")
        #expect(terminal.cell(row: 0, column: 0).scalar == "é")
        #expect(terminal.cell(row: 0, column: 1).scalar == "漢")
        #expect(terminal.cell(row: 0, column: 2).scalar == " ")   // the right half of 漢
        #expect(terminal.cell(row: 0, column: 3).scalar == "x")
    }

    @Test func aShellSessionShowsInTheDump() {
        var screen = Screen(width: 1024, height: 768)
        screen.apply(.mode(.terminals))
        let size = screen.terminals[0]
        let terminal = Terminal(id: size.id, columns: size.columns, rows: size.rows)
        terminal.write("root@spirit:~# echo NEXUS-$((6*7))\r\n\u{1B}[1;32mNEXUS-42\u{1B}[0m\r\nroot@spirit:~# ")
        screen.update(terminal: terminal.snapshot())
        #expect(screen.dump().hasSuffix("""
            terminal 1 "terminal 1" 124x44 focused
              |root@spirit:~# echo NEXUS-$((6*7))
              |NEXUS-42
              |root@spirit:~#

            """))
        #expect(screen.terminals[0][1, 0] == TerminalCell("N", foreground: .indexed(2), bold: true))
    }

    @Test(arguments: [Mode.terminals, .bubble, .dashboard])
    func aKeystrokeRedrawsAFewCellsAndMatchesAFullFrame(_ mode: Mode) {
        var screen = Screen(width: 800, height: 600)
        screen.apply(.mode(mode))
        let size = screen.terminals[0]
        let terminal = Terminal(id: size.id, columns: size.columns, rows: size.rows)
        // Long enough to run under the bubble in the top-right corner.
        terminal.write("root@spirit:~# " + String(repeating: "x", count: 80))
        #expect(screen.update(terminal: terminal.snapshot()).bounds == Rect(x: 0, y: 0, width: size.columns, height: 1))
        let renderer = ScreenRenderer(geometry: screen.geometry)
        var buffer = PixelBuffer(width: 800, height: 600)
        renderer.render(screen, into: &buffer)
        let before = buffer

        terminal.write("\r\nNEXUS-42")
        let cells = screen.update(terminal: terminal.snapshot())
        // Row 1's new text, and the cursor's move from row 0 to row 1.
        #expect(cells.rects.map(\.y).sorted() == [0, 1])
        let touched = renderer.renderTerminalCells(0, cells, of: screen, into: &buffer)
        var full = PixelBuffer(width: 800, height: 600)
        renderer.render(screen, into: &full)
        #expect(buffer.pixels == full.pixels)
        let changed = buffer.changes(since: before, tile: 1)
        #expect(!changed.isEmpty && touched.bounds.contains(changed.bounds))
        // A keystroke is a few glyphs, not a frame.
        #expect(touched.area < 800 * 600 / 10)
        #expect(screen.update(terminal: terminal.snapshot()).isEmpty)
    }
}
