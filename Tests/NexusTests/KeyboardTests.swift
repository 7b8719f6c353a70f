@testable import Nexus
import SpiritCore
import Testing

let eventCodesHeader = "/usr/include/linux/input-event-codes.h"

@Suite struct KeyboardTests {
    /// Every key's code against the kernel's header (linux-libc-dev, which
    /// the Swift toolchain needs for Glibc, so it is on every build host).
    @Test func keyCodesAreTheKernels() throws {
        let header = try Kernel.readText(eventCodesHeader)
        var codes: [String: UInt16] = [:]
        for line in header.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.count >= 3, words[0] == "#define", let value = UInt16(words[2]) { codes[String(words[1])] = value }
        }
        #expect(codes.count > 200) // the decimal ones; KEY_A and the others here among them
        for key in Key.allCases {
            #expect(codes[key.headerName] == key.rawValue, "\(key.headerName)")
        }
    }

    func bytes(_ key: Key, _ modifiers: Modifiers = [], caps: Bool = false, app: Bool = false) -> [UInt8] {
        TerminalInput.bytes(for: KeyPress(key, modifiers), capsLock: caps, applicationCursor: app)
    }

    @Test func printableKeysOnTheUSMap() {
        #expect(bytes(.a) == Array("a".utf8) && bytes(.a, .shift) == Array("A".utf8))
        #expect(bytes(.a, caps: true) == Array("A".utf8) && bytes(.a, .shift, caps: true) == Array("a".utf8))
        #expect(bytes(.digit1, caps: true) == Array("1".utf8))  // Caps Lock is for letters only
        #expect(bytes(.digit2, .shift) == Array("@".utf8) && bytes(.digit6, .shift) == Array("^".utf8))
        #expect(bytes(.apostrophe, .shift) == Array("\"".utf8) && bytes(.backslash) == Array("\\".utf8) && bytes(.grave, .shift) == Array("~".utf8))
        #expect(bytes(.space) == [0x20] && bytes(.kp7) == Array("7".utf8) && bytes(.kpSlash) == Array("/".utf8))
        let typed = "echo NEXUS-$((6*7))"
        let keys: [(Key, Modifiers)] = [(.e, []), (.c, []), (.h, []), (.o, []), (.space, []), (.n, .shift), (.e, .shift), (.x, .shift),
                                        (.u, .shift), (.s, .shift), (.minus, []), (.digit4, .shift), (.digit9, .shift), (.digit9, .shift),
                                        (.digit6, []), (.digit8, .shift), (.digit7, []), (.digit0, .shift), (.digit0, .shift)]
        #expect(keys.flatMap { bytes($0.0, $0.1) } == Array(typed.utf8))
    }

    @Test func controlAndAltSequences() {
        #expect(bytes(.c, .ctrl) == [0x03] && bytes(.d, .ctrl) == [0x04] && bytes(.z, .ctrl) == [0x1A])
        #expect(bytes(.c, [.ctrl, .shift]) == [0x03])
        #expect(bytes(.leftBrace, .ctrl) == [0x1B] && bytes(.backslash, .ctrl) == [0x1C] && bytes(.rightBrace, .ctrl) == [0x1D])
        #expect(bytes(.space, .ctrl) == [0x00] && bytes(.digit2, .ctrl) == [0x00] && bytes(.slash, .ctrl) == [0x1F] && bytes(.digit6, .ctrl) == [0x1E])
        #expect(bytes(.x, .alt) == [0x1B, 0x78] && bytes(.x, [.alt, .shift]) == [0x1B, 0x58] && bytes(.c, [.alt, .ctrl]) == [0x1B, 0x03])
        #expect(bytes(.enter) == [0x0D] && bytes(.kpEnter) == [0x0D] && bytes(.tab) == [0x09] && bytes(.tab, .shift) == Array("\u{1B}[Z".utf8))
        #expect(bytes(.backspace) == [0x7F] && bytes(.backspace, .ctrl) == [0x08] && bytes(.backspace, .alt) == [0x1B, 0x7F])
        #expect(bytes(.esc) == [0x1B])
        #expect(bytes(.capsLock).isEmpty && bytes(.leftShift).isEmpty && bytes(.numLock).isEmpty)
    }

    @Test func cursorAndFunctionKeysAsXtermSendsThem() {
        func text(_ key: Key, _ modifiers: Modifiers = [], app: Bool = false) -> String {
            String(decoding: bytes(key, modifiers, app: app), as: UTF8.self).replacingEscape()
        }
        #expect([Key.up, .down, .right, .left, .home, .end].map { text($0) } == ["^[[A", "^[[B", "^[[C", "^[[D", "^[[H", "^[[F"])
        #expect([Key.up, .down, .right, .left, .home, .end].map { text($0, app: true) } == ["^[OA", "^[OB", "^[OC", "^[OD", "^[OH", "^[OF"])
        #expect(text(.up, .ctrl) == "^[[1;5A" && text(.left, .shift, app: true) == "^[[1;2D" && text(.right, [.alt, .ctrl]) == "^[[1;7C")
        #expect([Key.f1, .f2, .f3, .f4].map { text($0) } == ["^[OP", "^[OQ", "^[OR", "^[OS"])
        #expect([Key.f5, .f6, .f7, .f8, .f9, .f10, .f11, .f12].map { text($0) }
                == ["^[[15~", "^[[17~", "^[[18~", "^[[19~", "^[[20~", "^[[21~", "^[[23~", "^[[24~"])
        #expect(text(.f5, .shift) == "^[[15;2~" && text(.f1, .ctrl) == "^[[1;5P")
        #expect([Key.insert, .delete, .pageUp, .pageDown].map { text($0) } == ["^[[2~", "^[[3~", "^[[5~", "^[[6~"])
        #expect(text(.delete, .ctrl) == "^[[3;5~")
    }

    @Test func hudChords() {
        #expect(Chords.command(for: KeyPress(.b, .super)) == .mode(.bubble))
        #expect(Chords.command(for: KeyPress(.d, .super)) == .mode(.dashboard))
        #expect(Chords.command(for: KeyPress(.t, .super)) == .mode(.terminals))
        #expect(Chords.command(for: KeyPress(.t, [.ctrl, .alt])) == .mode(.terminals))
        #expect(Chords.command(for: KeyPress(.enter, .super)) == .split)
        #expect(Chords.command(for: KeyPress(.tab, .super)) == .focusNext)
        #expect(Chords.command(for: KeyPress(.tab, [.super, .shift])) == .focusPrevious)
        #expect(Chords.command(for: KeyPress(.w, .super)) == .close)
        #expect(Chords.command(for: KeyPress(.z, .super)) == .zoom)
        #expect(Chords.command(for: KeyPress(.t, .ctrl)) == nil)
        #expect(Chords.command(for: KeyPress(.t)) == nil)
        #expect(Chords.command(for: KeyPress(.q, .super)) == nil)
    }

    @Test func evdevEventsThroughTheKeyboardState() {
        var keyboard = KeyboardState()
        func press(_ key: Key, _ value: Int32 = 1, app: Bool = false) -> KeyAction? {
            keyboard.handle(code: key.rawValue, value: value, applicationCursor: app)
        }
        #expect(press(.a) == .bytes([0x61]))
        #expect(press(.a, 2) == .bytes([0x61]))             // autorepeat types again
        #expect(press(.a, 0) == nil)                        // release
        #expect(press(.leftCtrl) == nil && keyboard.modifiers == .ctrl)
        #expect(press(.c) == .bytes([0x03]))
        #expect(press(.leftCtrl, 0) == nil && keyboard.modifiers.isEmpty)
        #expect(press(.capsLock) == nil && keyboard.capsLock)
        #expect(press(.capsLock, 2) == nil && keyboard.capsLock) // a held Caps Lock toggles once
        #expect(press(.q) == .bytes([0x51]))
        #expect(press(.capsLock) == nil && !keyboard.capsLock)
        #expect(press(.rightMeta) == nil && keyboard.modifiers == .super)
        #expect(press(.d) == .command(.mode(.dashboard)))
        #expect(press(.d, 2) == nil)                        // a held chord switches once
        #expect(press(.rightMeta, 0) == nil)
        #expect(press(.up, app: true) == .bytes(Array("\u{1B}OA".utf8)))
        #expect(keyboard.handle(code: 240, value: 1) == nil) // KEY_UNKNOWN
        #expect(press(.numLock) == nil)
    }
}

extension String {
    /// ESC as ^[ so sequences read in a failure message.
    func replacingEscape() -> String {
        String(unicodeScalars.flatMap { $0 == "\u{1B}" ? Array("^[".unicodeScalars) : [$0] }.map(Character.init))
    }
}

@Suite struct InputEventTests {
    /// SpiritCore reads the events (InputDevice); the keyboard state takes
    /// key events and leaves the rest.
    @Test func keyEventsAreHandledAndTheRestIgnored() {
        var keyboard = KeyboardState()
        let events = [InputEvent(type: InputEvent.key, code: 42, value: 1), InputEvent(type: 4, code: 4, value: 0x31),
                      InputEvent(type: InputEvent.key, code: 49, value: 1), InputEvent(type: 0, code: 0, value: 0)]
        #expect(events.compactMap { keyboard.handle($0) } == [.bytes(Array("N".utf8))])
    }
}

@Suite struct DeviceEventTests {
    func datagram(_ header: String, _ fields: [String]) -> [UInt8] {
        ([header] + fields).flatMap { Array($0.utf8) + [0] }
    }

    @Test func aKeyboardAndACardThatAppear() {
        let keyboard = DeviceEvent.parse(datagram("add@/devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0/0003:0627:0001.0001/input/input5/event5",
                                                  ["ACTION=add", "DEVPATH=/devices/…/event5", "SUBSYSTEM=input", "MAJOR=13", "MINOR=69",
                                                   "DEVNAME=input/event5", "SEQNUM=2101"]))
        #expect(keyboard == DeviceEvent(action: "add", subsystem: "input", node: "input/event5"))
        #expect(keyboard?.isInputEvents == true && keyboard?.isDisplayCard == false)
        let card = DeviceEvent.parse(datagram("add@/devices/pci0000:00/0000:00:02.0/drm/card0",
                                              ["ACTION=add", "SUBSYSTEM=drm", "DEVNAME=dri/card0", "DEVTYPE=drm_minor"]))
        #expect(card?.isDisplayCard == true)
        #expect(DeviceEvent.parse(datagram("add@/devices/pci0000:00/0000:00:02.0/drm/renderD128",
                                           ["ACTION=add", "SUBSYSTEM=drm", "DEVNAME=dri/renderD128"]))?.isDisplayCard == false)
    }

    @Test func eventsWithoutANodeAreNotOurs() {
        #expect(DeviceEvent.parse(datagram("add@/devices/virtual/net/lo", ["ACTION=add", "SUBSYSTEM=net", "INTERFACE=lo"])) == nil)
        #expect(DeviceEvent.parse([]) == nil)
        #expect(DeviceEvent.parse(Array("garbage without fields".utf8)) == nil)
    }
}
