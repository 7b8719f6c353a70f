import SpiritCore
import Testing

@Suite struct InputTests {
    private func record(_ seconds: Int64, _ microseconds: Int64, _ type: UInt16, _ code: UInt16, _ value: Int32) -> [UInt8] {
        withUnsafeBytes(of: seconds.littleEndian, Array.init) + withUnsafeBytes(of: microseconds.littleEndian, Array.init)
            + withUnsafeBytes(of: type.littleEndian, Array.init) + withUnsafeBytes(of: code.littleEndian, Array.init)
            + withUnsafeBytes(of: value.littleEndian, Array.init)
    }

    @Test func parsesInputEventRecords() {
        // KEY_B (48) pressed, autorepeated and released, a SYN_REPORT, a
        // relative move of -3, then half a record that must be ignored.
        let bytes = record(1_700_000_000, 123_456, 1, 48, 1) + record(1_700_000_000, 623_456, 1, 48, 2)
            + record(1_700_000_001, 5, 1, 48, 0) + record(1_700_000_001, 5, 0, 0, 0) + record(7, 8, 2, 0, -3)
            + Array(record(9, 9, 1, 30, 1).prefix(20))
        #expect(bytes.count == 5 * 24 + 20)
        let events = InputEvent.parse(bytes)
        #expect(events == [
            InputEvent(seconds: 1_700_000_000, microseconds: 123_456, type: InputEvent.key, code: 48, value: 1),
            InputEvent(seconds: 1_700_000_000, microseconds: 623_456, type: InputEvent.key, code: 48, value: 2),
            InputEvent(seconds: 1_700_000_001, microseconds: 5, type: InputEvent.key, code: 48, value: 0),
            InputEvent(seconds: 1_700_000_001, microseconds: 5, type: InputEvent.synchronize, code: 0, value: 0),
            InputEvent(seconds: 7, microseconds: 8, type: InputEvent.relative, code: 0, value: -3),
        ])
        #expect(events.map(\.keyState) == [.pressed, .repeated, .released, nil, nil])
        #expect(InputEvent.parse(record(0, 0, 0, 3, 0)).first?.isDropped == true)
        #expect(InputEvent.parse(record(0, 0, 0, 0, 0)).first?.isDropped == false)
        #expect(InputEvent.parse([]) == [])
    }

    @Test func capabilityBits() {
        // EV_SYN, EV_KEY, EV_MSC, EV_REP (20) set; keys 1 (ESC), 30 (A), 57 (SPACE).
        let types = InputBits([0b0001_0011, 0, 0b0001_0000, 0])
        #expect(types.members == [0, 1, 4, 20])
        #expect(types.contains(Int(InputEvent.key)))
        #expect(!types.contains(Int(InputEvent.relative)))
        #expect(!types.contains(99))
        #expect(!types.contains(-1))
        var keys = [UInt8](repeating: 0, count: 96)
        for code in [1, 30, 57] { keys[code / 8] |= 1 << (code % 8) }
        #expect(InputBits(keys).members == [1, 30, 57])
    }

    @Test func eventNodesInNumericOrder() throws {
        let directory = try fixtureDirectory("input")
        for name in ["event10", "event2", "mouse0", "event1", "eventX"] { try Kernel.writeFile(directory + "/" + name, "") }
        #expect(InputDevices.paths(directory: directory) == ["event1", "event2", "event10"].map { directory + "/" + $0 })
        for name in ["event10", "event2", "mouse0", "event1", "eventX"] { try Kernel.removeFile(directory + "/" + name) }
        try Kernel.removeDirectory(directory)
    }

    @Test func notAnInputDevice() {
        do {
            _ = try InputDevice.open("/dev/null")
            Issue.record("/dev/null opened as an evdev device")
        } catch {
            #expect(error.description == "unable to read the name of /dev/null (EVIOCGNAME): Inappropriate ioctl for device")
        }
    }
}
