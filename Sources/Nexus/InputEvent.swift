/// One `struct input_event` as read from /dev/input/event* on a 64-bit
/// kernel: a timeval (two 8-byte words), then type (u16), code (u16) and
/// value (s32), little-endian — 24 bytes.
public struct InputEvent: Sendable, Equatable {
    public var seconds: Int64
    public var microseconds: Int64
    public var type: UInt16
    public var code: UInt16
    public var value: Int32

    public init(seconds: Int64 = 0, microseconds: Int64 = 0, type: UInt16, code: UInt16, value: Int32) {
        self.seconds = seconds
        self.microseconds = microseconds
        self.type = type
        self.code = code
        self.value = value
    }

    public static let size = 24
    /// EV_SYN: the end of one report.
    public static let synchronization: UInt16 = 0
    /// EV_KEY: a key or button; value 1 down, 0 up, 2 autorepeat.
    public static let key: UInt16 = 1

    /// The whole events in `bytes`; a read that ended inside an event
    /// leaves its start in `rest`, for the next read to complete.
    public static func decode(_ bytes: [UInt8]) -> (events: [InputEvent], rest: [UInt8]) {
        func word(_ at: Int, _ count: Int) -> UInt64 {
            (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) }
        }
        var events: [InputEvent] = []
        var offset = 0
        while offset + size <= bytes.count {
            events.append(InputEvent(seconds: Int64(bitPattern: word(offset, 8)), microseconds: Int64(bitPattern: word(offset + 8, 8)),
                                     type: UInt16(word(offset + 16, 2)), code: UInt16(word(offset + 18, 2)),
                                     value: Int32(bitPattern: UInt32(word(offset + 20, 4)))))
            offset += size
        }
        return (events, Array(bytes[offset...]))
    }

    /// Whether a device whose EV_KEY capability bits (EVIOCGBIT(EV_KEY),
    /// one bit a key code, least significant first) are `keyBits` is a
    /// keyboard: it has the letters and Enter. Power buttons, mice and
    /// lid switches report EV_KEY too, and are not grabbed.
    public static func isKeyboard(keyBits: [UInt8]) -> Bool {
        func has(_ key: Key) -> Bool {
            let code = Int(key.rawValue)
            return code / 8 < keyBits.count && keyBits[code / 8] & (1 << UInt8(code % 8)) != 0
        }
        return [Key.a, .z, .q, .m, .enter, .space].allSatisfy(has)
    }
}

extension KeyboardState {
    /// An event from an evdev device: key events are handled, the rest
    /// (EV_SYN, EV_MSC scan codes, EV_LED) ignored.
    public mutating func handle(_ event: InputEvent, applicationCursor: Bool = false) -> KeyAction? {
        guard event.type == InputEvent.key else { return nil }
        return handle(code: event.code, value: event.value, applicationCursor: applicationCursor)
    }
}
