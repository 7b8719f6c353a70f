/// The keys the HUD knows, by their evdev codes (linux/input-event-codes.h;
/// a unit test checks every one against the header). Each case is the
/// header's `KEY_` name in lower camel case, digits spelled `digitN`.
public enum Key: UInt16, Sendable, CaseIterable {
    case esc = 1
    case digit1, digit2, digit3, digit4, digit5, digit6, digit7, digit8, digit9, digit0
    case minus, equal, backspace, tab
    case q, w, e, r, t, y, u, i, o, p, leftBrace, rightBrace, enter, leftCtrl
    case a, s, d, f, g, h, j, k, l, semicolon, apostrophe, grave, leftShift, backslash
    case z, x, c, v, b, n, m, comma, dot, slash, rightShift, kpAsterisk, leftAlt, space, capsLock
    case f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, numLock, scrollLock
    case kp7, kp8, kp9, kpMinus, kp4, kp5, kp6, kpPlus, kp1, kp2, kp3, kp0, kpDot
    case key102nd = 86
    case f11 = 87, f12 = 88
    case kpEnter = 96, rightCtrl = 97, kpSlash = 98
    case rightAlt = 100
    case home = 102, up, pageUp, left, right, end, down, pageDown, insert, delete
    case leftMeta = 125, rightMeta = 126

    /// Its name in linux/input-event-codes.h.
    public var headerName: String {
        var name = String(describing: self)
        if name.hasPrefix("digit") { name.removeFirst(5) }
        if name.hasPrefix("key") { name.removeFirst(3) }
        return "KEY_" + name.uppercased()
    }
}

/// Modifier keys held (either side).
public struct Modifiers: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let shift = Modifiers(rawValue: 1)
    public static let alt = Modifiers(rawValue: 2)
    public static let ctrl = Modifiers(rawValue: 4)
    /// The Windows/Command key: the HUD's own chords.
    public static let `super` = Modifiers(rawValue: 8)

    /// xterm's modifier parameter (`ESC [ 1 ; m A`): 1 + shift + 2·alt + 4·ctrl.
    var xtermParameter: Int { 1 + Int(rawValue & 7) }
}

/// A key going down (or repeating) with the modifiers held at that moment.
public struct KeyPress: Sendable, Equatable {
    public var key: Key
    public var modifiers: Modifiers

    public init(_ key: Key, _ modifiers: Modifiers = []) {
        self.key = key
        self.modifiers = modifiers
    }
}

/// What the HUD does itself rather than pass to a terminal.
public enum HUDCommand: Sendable, Equatable {
    case mode(Mode)
    /// A new terminal next to the focused one.
    case split
    case focusNext
    case focusPrevious
    case close
    /// The focused terminal fills the grid, or goes back to its tile.
    case zoom
}

/// What one key press does.
public enum KeyAction: Sendable, Equatable {
    /// Bytes for the focused terminal's PTY.
    case bytes([UInt8])
    case command(HUDCommand)
}

/// The HUD's chords. Super is the HUD's modifier; Ctrl+Alt works too,
/// because a desktop (or the QEMU window) often keeps Super for itself.
///
///     Super+B  bubble        Super+Enter  new terminal (split)
///     Super+D  dashboard     Super+Tab    focus next (Shift: previous)
///     Super+T  terminals     Super+W      close the terminal
///                            Super+Z      zoom
public enum Chords {
    public static func command(for press: KeyPress) -> HUDCommand? {
        let mods = press.modifiers
        let hud = mods.contains(.super) || mods.isSuperset(of: [.ctrl, .alt])
        guard hud else { return nil }
        switch press.key {
        case .b: return .mode(.bubble)
        case .d: return .mode(.dashboard)
        case .t: return .mode(.terminals)
        case .enter, .kpEnter: return .split
        case .tab: return mods.contains(.shift) ? .focusPrevious : .focusNext
        case .w: return .close
        case .z: return .zoom
        default: return nil
        }
    }

    /// The chords as the README and the bubble's hint line list them.
    public static let help = [
        ("Super+B", "bubble"), ("Super+D", "dashboard"), ("Super+T", "terminals"),
        ("Super+Enter", "new terminal"), ("Super+Tab", "next terminal"), ("Super+W", "close terminal"), ("Super+Z", "zoom"),
    ]
}

/// The US layout: each key's character, plain and with Shift.
public enum USKeymap {
    public static func characters(_ key: Key) -> (plain: UInt8, shifted: UInt8)? {
        if let pair = table[key] { return pair }
        return letter(key).map { ($0 | 0x20, $0) }
    }

    /// Each non-letter key with its two characters, as printed on the key.
    static let table: [Key: (plain: UInt8, shifted: UInt8)] = {
        let keys: [(Key, String)] = [
            (.digit1, "1!"), (.digit2, "2@"), (.digit3, "3#"), (.digit4, "4$"), (.digit5, "5%"),
            (.digit6, "6^"), (.digit7, "7&"), (.digit8, "8*"), (.digit9, "9("), (.digit0, "0)"),
            (.minus, "-_"), (.equal, "=+"), (.leftBrace, "[{"), (.rightBrace, "]}"), (.semicolon, ";:"),
            (.apostrophe, "'\""), (.grave, "`~"), (.backslash, "\\|"), (.comma, ",<"), (.dot, ".>"), (.slash, "/?"),
            (.space, "  "),
            // The ISO key left of Z: \ | on a US map.
            (.key102nd, "\\|"),
            // The keypad as with Num Lock on.
            (.kpAsterisk, "**"), (.kpMinus, "--"), (.kpPlus, "++"), (.kpSlash, "//"), (.kpDot, ".."),
            (.kp0, "00"), (.kp1, "11"), (.kp2, "22"), (.kp3, "33"), (.kp4, "44"),
            (.kp5, "55"), (.kp6, "66"), (.kp7, "77"), (.kp8, "88"), (.kp9, "99"),
        ]
        var table: [Key: (plain: UInt8, shifted: UInt8)] = [:]
        for (key, pair) in keys {
            let bytes = Array(pair.utf8)
            table[key] = (bytes[0], bytes[1])
        }
        return table
    }()

    /// The upper-case ASCII letter of a letter key.
    static func letter(_ key: Key) -> UInt8? {
        let letters: [Key] = [.a, .b, .c, .d, .e, .f, .g, .h, .i, .j, .k, .l, .m, .n, .o, .p, .q, .r, .s, .t, .u, .v, .w, .x, .y, .z]
        return letters.firstIndex(of: key).map { 0x41 + UInt8($0) }
    }
}

/// The bytes an xterm-compatible terminal (TERM=xterm-256color) expects
/// for a key press: what busybox vi, top and the shell read.
public enum TerminalInput {
    static let esc: UInt8 = 0x1B

    /// `applicationCursor` is DECCKM (set by vi and less): arrows, Home and
    /// End then send `ESC O x` instead of `ESC [ x`. Empty when the key
    /// sends nothing (a modifier alone, Caps Lock).
    public static func bytes(for press: KeyPress, capsLock: Bool = false, applicationCursor: Bool = false) -> [UInt8] {
        let mods = press.modifiers
        let parameter = mods.xtermParameter
        // Cursor keys and F1–F4: `ESC [ 1 ; m x` with modifiers, else `ESC [ x` or `ESC O x`.
        func final(_ letter: Character, ss3: Bool) -> [UInt8] {
            let byte = UInt8(ascii: letter.unicodeScalars.first!)
            if parameter > 1 { return [esc, 0x5B, 0x31, 0x3B] + Array(String(parameter).utf8) + [byte] }
            return [esc, ss3 ? 0x4F : 0x5B, byte]
        }
        // Editing keys and F5–F12: `ESC [ n ~`, or `ESC [ n ; m ~`.
        func tilde(_ number: Int) -> [UInt8] {
            [esc, 0x5B] + Array(String(number).utf8) + (parameter > 1 ? [0x3B] + Array(String(parameter).utf8) : []) + [0x7E]
        }
        let metaPrefix: [UInt8] = mods.contains(.alt) ? [esc] : []
        switch press.key {
        case .up: return final("A", ss3: applicationCursor)
        case .down: return final("B", ss3: applicationCursor)
        case .right: return final("C", ss3: applicationCursor)
        case .left: return final("D", ss3: applicationCursor)
        case .home: return final("H", ss3: applicationCursor)
        case .end: return final("F", ss3: applicationCursor)
        case .f1: return final("P", ss3: true)
        case .f2: return final("Q", ss3: true)
        case .f3: return final("R", ss3: true)
        case .f4: return final("S", ss3: true)
        case .insert: return tilde(2)
        case .delete: return tilde(3)
        case .pageUp: return tilde(5)
        case .pageDown: return tilde(6)
        case .f5: return tilde(15)
        case .f6: return tilde(17)
        case .f7: return tilde(18)
        case .f8: return tilde(19)
        case .f9: return tilde(20)
        case .f10: return tilde(21)
        case .f11: return tilde(23)
        case .f12: return tilde(24)
        case .enter, .kpEnter: return metaPrefix + [0x0D]
        case .esc: return metaPrefix + [esc]
        case .tab: return mods.contains(.shift) ? [esc, 0x5B, 0x5A] : metaPrefix + [0x09]
        // DEL, as Linux consoles and xterm send it; Ctrl+Backspace is BS.
        case .backspace: return metaPrefix + [mods.contains(.ctrl) ? 0x08 : 0x7F]
        default: break
        }
        guard let (plain, shifted) = USKeymap.characters(press.key) else { return [] }
        var character = mods.contains(.shift) ? shifted : plain
        if capsLock, USKeymap.letter(press.key) != nil { character ^= 0x20 }
        if mods.contains(.ctrl), let control = controlCode(plain) { return metaPrefix + [control] }
        return metaPrefix + [character]
    }

    /// Ctrl with a key: the C0 control codes (Ctrl+C is 0x03, Ctrl+[ is
    /// ESC, Ctrl+Space and Ctrl+2 are NUL, Ctrl+/ and Ctrl+- are 0x1F).
    static func controlCode(_ plain: UInt8) -> UInt8? {
        switch plain {
        case 0x61...0x7A: plain - 0x60
        case 0x5B, 0x5C, 0x5D: plain - 0x40       // [ \ ]
        case 0x20, 0x32: 0x00                     // space, 2
        case 0x33...0x37: plain - 0x33 + 0x1B     // 3–7: ESC, FS, GS, RS, US (as xterm)
        case 0x2F, 0x2D: 0x1F                     // / -
        case 0x38: 0x7F                           // 8: DEL
        default: nil
        }
    }
}

/// The keyboard as evdev reports it: key downs, repeats and ups, turned
/// into HUD commands and terminal bytes. Holds which modifiers are down
/// and Caps Lock.
public struct KeyboardState: Sendable {
    var held: Set<Key> = []
    public private(set) var capsLock = false

    public init() {}

    public var modifiers: Modifiers {
        var out: Modifiers = []
        if held.contains(.leftShift) || held.contains(.rightShift) { out.insert(.shift) }
        if held.contains(.leftCtrl) || held.contains(.rightCtrl) { out.insert(.ctrl) }
        if held.contains(.leftAlt) || held.contains(.rightAlt) { out.insert(.alt) }
        if held.contains(.leftMeta) || held.contains(.rightMeta) { out.insert(.super) }
        return out
    }

    static let modifierKeys: Set<Key> = [.leftShift, .rightShift, .leftCtrl, .rightCtrl, .leftAlt, .rightAlt, .leftMeta, .rightMeta]

    /// One EV_KEY event: `code` from the event, `value` 1 (down), 2
    /// (autorepeat) or 0 (up). Returns what to do, or nil for nothing
    /// (a release, a modifier, a key the HUD does not know).
    public mutating func handle(code: UInt16, value: Int32, applicationCursor: Bool = false) -> KeyAction? {
        guard let key = Key(rawValue: code) else { return nil }
        if value == 0 {
            held.remove(key)
            return nil
        }
        if Self.modifierKeys.contains(key) {
            held.insert(key)
            return nil
        }
        if key == .capsLock {
            if value == 1 { capsLock.toggle() }
            return nil
        }
        let press = KeyPress(key, modifiers)
        if let command = Chords.command(for: press) {
            // A held chord does not repeat: one mode switch per press.
            return value == 1 ? .command(command) : nil
        }
        let bytes = TerminalInput.bytes(for: press, capsLock: capsLock, applicationCursor: applicationCursor)
        return bytes.isEmpty ? nil : .bytes(bytes)
    }
}
