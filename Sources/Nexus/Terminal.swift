import CVTerm
import SpiritCore

/// A terminal emulator over libvterm (Debian's libvterm-dev, statically
/// linked): bytes from a PTY go in, a grid of cells comes out, with the
/// cursor, the title, scrollback, and the cells that changed. No I/O: the
/// shell writes the PTY's output here and sends `takeOutput()` (the
/// terminal's answers, such as a cursor position report) back to the PTY.
///
/// libvterm rather than a parser of our own: it is the VT220/xterm state
/// machine vim, neovim and emacs use, 48 KB of code, and it brings UTF-8,
/// scroll regions, the alternate screen and SGR colours (hud.md §5.4).
/// Debian 12's 0.1.4 has no reflow on resize, which is where neovim's
/// crashes with it were; lines are cut or padded instead.
public final class Terminal {
    public let id: Int
    public private(set) var columns: Int
    public private(set) var rows: Int
    /// Set by the program (OSC 0 or 2), else `terminal <id>`.
    public private(set) var title: String
    public private(set) var cursor = (row: 0, column: 0)
    public private(set) var cursorVisible = true
    /// BEL characters received: the HUD may flash the tile.
    public private(set) var bells = 0
    /// Lines scrolled off the top, oldest first, at most `scrollbackLimit`.
    public private(set) var scrollback: [[TerminalCell]] = []
    public let scrollbackLimit: Int

    let vt: OpaquePointer
    let screen: OpaquePointer
    /// libvterm keeps the pointer to its callbacks: they live as long as the terminal.
    let callbacks: UnsafeMutablePointer<VTermScreenCallbacks>
    /// Changed cells since `takeDamage()`, in cell coordinates.
    var damage = Damage()
    var output: [UInt8] = []
    /// Raw cells of the scrollback, for libvterm to take back when the terminal grows.
    var rawScrollback: [[VTermScreenCell]] = []

    public init(id: Int, columns: Int, rows: Int, scrollbackLimit: Int = 1000) {
        precondition(columns > 0 && rows > 0, "a terminal has at least one cell")
        self.id = id
        self.columns = columns
        self.rows = rows
        self.scrollbackLimit = scrollbackLimit
        title = "terminal \(id)"
        vt = vterm_new(Int32(rows), Int32(columns))
        vterm_set_utf8(vt, 1)
        screen = vterm_obtain_screen(vt)
        callbacks = .allocate(capacity: 1)
        callbacks.initialize(to: VTermScreenCallbacks())
        callbacks.pointee.damage = { rect, user in
            Terminal.from(user).damage.add(Rect(x: Int(rect.start_col), y: Int(rect.start_row),
                                                width: Int(rect.end_col - rect.start_col), height: Int(rect.end_row - rect.start_row)))
            return 1
        }
        callbacks.pointee.movecursor = { position, _, visible, user in
            let terminal = Terminal.from(user)
            terminal.cursor = (Int(position.row), Int(position.col))
            terminal.cursorVisible = visible != 0
            return 1
        }
        callbacks.pointee.settermprop = { property, value, user in
            let terminal = Terminal.from(user)
            guard let value else { return 1 }
            switch property {
            case VTERM_PROP_CURSORVISIBLE: terminal.cursorVisible = value.pointee.boolean != 0
            case VTERM_PROP_TITLE: if let text = value.pointee.string { terminal.title = String(cString: text) }
            default: break
            }
            return 1
        }
        callbacks.pointee.bell = { user in
            Terminal.from(user).bells += 1
            return 1
        }
        callbacks.pointee.sb_pushline = { count, cells, user in
            let terminal = Terminal.from(user)
            guard let cells else { return 0 }
            let line = Array(UnsafeBufferPointer(start: cells, count: Int(count)))
            terminal.rawScrollback.append(line)
            terminal.scrollback.append(line.map(Terminal.cell))
            if terminal.rawScrollback.count > terminal.scrollbackLimit {
                terminal.rawScrollback.removeFirst()
                terminal.scrollback.removeFirst()
            }
            return 1
        }
        callbacks.pointee.sb_popline = { count, cells, user in
            // The terminal grew taller: the newest scrolled-off line comes back.
            let terminal = Terminal.from(user)
            guard let cells, let line = terminal.rawScrollback.popLast() else { return 0 }
            terminal.scrollback.removeLast()
            for column in 0..<Int(count) {
                cells[column] = column < line.count ? line[column] : Terminal.blankCell(like: line.last)
            }
            return 1
        }
        let user = Unmanaged.passUnretained(self).toOpaque()
        vterm_screen_set_callbacks(screen, callbacks, user)
        vterm_output_set_callback(vt, { bytes, length, user in
            guard let bytes else { return }
            Terminal.from(user).output += UnsafeRawBufferPointer(start: bytes, count: length)
        }, user)
        vterm_screen_set_damage_merge(screen, VTERM_DAMAGE_ROW)
        vterm_screen_enable_altscreen(screen, 1)
        vterm_screen_reset(screen, 1)
        damage = Damage()
    }

    deinit {
        vterm_free(vt)
        callbacks.deinitialize(count: 1)
        callbacks.deallocate()
    }

    static func from(_ user: UnsafeMutableRawPointer?) -> Terminal {
        Unmanaged<Terminal>.fromOpaque(user!).takeUnretainedValue()
    }

    /// Feeds what the program wrote.
    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                _ = vterm_input_write(vt, chars.baseAddress, chars.count)
            }
        }
        vterm_screen_flush_damage(screen)
    }

    public func write(_ text: String) { write(Array(text.utf8)) }

    /// A new size (the tile changed): what TIOCSWINSZ tells the program.
    public func resize(columns: Int, rows: Int) {
        precondition(columns > 0 && rows > 0, "a terminal has at least one cell")
        self.columns = columns
        self.rows = rows
        vterm_set_size(vt, Int32(rows), Int32(columns))
        vterm_screen_flush_damage(screen)
        damage.add(Rect(x: 0, y: 0, width: columns, height: rows))
    }

    /// The changed cells since the last call.
    public func takeDamage() -> Damage {
        defer { damage = Damage() }
        return damage
    }

    /// What the terminal answers the program (device attributes, cursor
    /// reports): bytes for the PTY.
    public func takeOutput() -> [UInt8] {
        defer { output = [] }
        return output
    }

    /// DECCKM, set by vi and less: arrows then send `ESC O x`. libvterm
    /// keeps the mode to itself, so ask its key encoder how it sends Up.
    public var applicationCursor: Bool {
        let saved = output
        output = []
        vterm_keyboard_key(vt, VTERM_KEY_UP, VTERM_MOD_NONE)
        let probe = output
        output = saved
        return probe == [0x1B, 0x4F, 0x41]
    }

    public func cell(row: Int, column: Int) -> TerminalCell {
        var raw = VTermScreenCell()
        _ = vterm_screen_get_cell(screen, VTermPos(row: Int32(row), col: Int32(column)), &raw)
        return Self.cell(raw)
    }

    /// The screen now, or `scrolledBack` lines up into the scrollback.
    public func snapshot(scrolledBack: Int = 0) -> TerminalSnapshot {
        let back = max(0, min(scrolledBack, scrollback.count))
        var snapshot = TerminalSnapshot(id: id, title: title, columns: columns, rows: rows)
        for row in 0..<rows {
            let source = row - back
            for column in 0..<columns {
                if source >= 0 {
                    snapshot[row, column] = cell(row: source, column: column)
                } else {
                    let line = scrollback[scrollback.count + source]
                    snapshot[row, column] = column < line.count ? line[column] : .blank
                }
            }
        }
        // The cursor shows only on the live screen.
        snapshot.cursor = back == 0 && cursorVisible ? cursor : nil
        return snapshot
    }

    static func cell(_ raw: VTermScreenCell) -> TerminalCell {
        // 0 is an empty cell, 0xFFFFFFFF the right half of a wide character.
        let code = raw.chars.0
        let scalar = code == 0 || code == UInt32.max ? " " : Unicode.Scalar(code) ?? "\u{FFFD}"
        return TerminalCell(scalar, foreground: color(raw.fg, defaultFlag: UInt8(VTERM_COLOR_DEFAULT_FG.rawValue)),
                            background: color(raw.bg, defaultFlag: UInt8(VTERM_COLOR_DEFAULT_BG.rawValue)),
                            bold: raw.attrs.bold != 0, reverse: raw.attrs.reverse != 0)
    }

    static func color(_ color: VTermColor, defaultFlag: UInt8) -> TerminalColor {
        if color.type & defaultFlag != 0 { return .default }
        if color.type & UInt8(VTERM_COLOR_TYPE_MASK.rawValue) == UInt8(VTERM_COLOR_INDEXED.rawValue) {
            return .indexed(color.indexed.idx)
        }
        return .rgb(UInt32(color.rgb.red) << 16 | UInt32(color.rgb.green) << 8 | UInt32(color.rgb.blue))
    }

    /// An empty cell with the colours of `model` (the padding of a line
    /// that comes back from the scrollback into a wider terminal).
    static func blankCell(like model: VTermScreenCell?) -> VTermScreenCell {
        var cell = VTermScreenCell()
        cell.width = 1
        if let model {
            cell.fg = model.fg
            cell.bg = model.bg
        } else {
            // Zeroed colours would be RGB black: mark them the defaults.
            cell.fg.type = UInt8(VTERM_COLOR_DEFAULT_FG.rawValue)
            cell.bg.type = UInt8(VTERM_COLOR_DEFAULT_BG.rawValue)
        }
        return cell
    }
}
