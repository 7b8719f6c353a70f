import CSpirit
import Glibc
import SystemPackage

/// One evdev event: `struct input_event` on 64-bit Linux, 24 bytes (a
/// timeval of two 64-bit words, then type u16, code u16, value s32; devices.c
/// checks the size at compile time).
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

    /// Event types (EV_SYN, EV_KEY, EV_REL, EV_ABS, EV_MSC).
    public static let synchronize: UInt16 = 0
    public static let key: UInt16 = 1
    public static let relative: UInt16 = 2
    public static let absolute: UInt16 = 3
    public static let miscellaneous: UInt16 = 4
    /// SYN_DROPPED: the kernel's queue overflowed and events were lost;
    /// what is pressed must be read again (or every key taken as released).
    public static let dropped: UInt16 = 3

    public enum KeyState: Sendable, Equatable { case released, pressed, repeated }

    /// For a key event: released (0), pressed (1) or repeated by the
    /// kernel's autorepeat (2).
    public var keyState: KeyState? {
        guard type == Self.key else { return nil }
        switch value {
        case 0: return .released
        case 1: return .pressed
        case 2: return .repeated
        default: return nil
        }
    }

    /// Whether this is SYN_DROPPED.
    public var isDropped: Bool { type == Self.synchronize && code == Self.dropped }

    /// The whole records in `bytes`, in order (little-endian, as on x86-64
    /// and arm64). A read(2) of an evdev device returns whole records only;
    /// a shorter tail is ignored.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> [InputEvent] {
        var events: [InputEvent] = []
        events.reserveCapacity(bytes.count / size)
        var offset = 0
        while bytes.count - offset >= size {
            events.append(InputEvent(
                seconds: Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int64.self)),
                microseconds: Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 8, as: Int64.self)),
                type: UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 16, as: UInt16.self)),
                code: UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 18, as: UInt16.self)),
                value: Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 20, as: Int32.self))))
            offset += size
        }
        return events
    }

    public static func parse(_ bytes: [UInt8]) -> [InputEvent] {
        bytes.withUnsafeBytes { parse($0) }
    }
}

/// A bitmap from EVIOCGBIT: bit n of byte n/8 (the kernel writes an array
/// of longs; on a little-endian machine that is the same order).
public struct InputBits: Sendable, Equatable {
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public func contains(_ bit: Int) -> Bool {
        bit >= 0 && bit / 8 < bytes.count && bytes[bit / 8] & (1 << UInt8(bit % 8)) != 0
    }

    /// The numbers of the bits that are set.
    public var members: [Int] {
        (0..<bytes.count * 8).filter(contains)
    }
}

/// An open evdev device (/dev/input/eventN), non-blocking; `fd` is for the
/// caller's poll loop.
public struct InputDevice: Sendable {
    public let fd: CInt
    public let path: String
    /// EVIOCGNAME ("AT Translated Set 2 keyboard").
    public let name: String
    /// The event types it reports (EV_KEY, EV_REL, …).
    public let types: InputBits
    /// The key and button codes it reports (KEY_A is 30, BTN_LEFT 0x110).
    public let keys: InputBits

    /// KEY_ENTER, KEY_A, KEY_Z and KEY_SPACE: a keyboard, not a power
    /// button or a mouse.
    public var isKeyboard: Bool { [28, 30, 44, 57].allSatisfy(keys.contains) }

    /// Opens `path` non-blocking and reads its name and capabilities.
    public static func open(_ path: String) throws(SystemError) -> InputDevice {
        let fd = try Kernel.open(path, O_RDONLY | O_NONBLOCK, hint: { errno in
            errno == .noSuchFileOrDirectory ? "is the evdev module loaded?" : nil
        })
        do {
            var name = [CChar](repeating: 0, count: 256)
            let length = try Kernel.shim("read the name of \(path) (EVIOCGNAME)") { spirit_evdev_name(fd, &name, UInt32(name.count)) }
            let types = try bits(fd, path, type: 0, size: 4)   // EV_MAX 0x1f
            let keys = types.contains(Int(InputEvent.key)) ? try bits(fd, path, type: 1, size: 96) : InputBits([]) // KEY_MAX 0x2ff
            let text = String(decoding: name.prefix(Int(length)).prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return InputDevice(fd: fd, path: path, name: text, types: types, keys: keys)
        } catch {
            Kernel.close(fd)
            throw error
        }
    }

    private static func bits(_ fd: CInt, _ path: String, type: UInt32, size: Int) throws(SystemError) -> InputBits {
        var bytes = [UInt8](repeating: 0, count: size)
        try Kernel.shim("read the \(type == 0 ? "event types" : "keys") of \(path) (EVIOCGBIT)") {
            spirit_evdev_bits(fd, type, &bytes, UInt32(size))
        }
        return InputBits(bytes)
    }

    /// EVIOCGRAB: while grabbed, only we get its events; the console (and
    /// the shell on it) no longer sees the keys typed into the HUD.
    public func grab(_ on: Bool = true) throws(SystemError) {
        try Kernel.shim("\(on ? "grab" : "release") \(path) (EVIOCGRAB)", hint: { errno in
            errno == .resourceBusy ? "another process has grabbed it" : nil
        }) {
            spirit_evdev_grab(fd, on ? 1 : 0)
        }
    }

    /// The events that are there, [] when none are. A device that was
    /// unplugged fails with ENODEV: close it.
    public func read() throws(SystemError) -> [InputEvent] {
        var events: [InputEvent] = []
        var buffer = [UInt8](repeating: 0, count: 64 * InputEvent.size)
        while true {
            let count = try buffer.withMutableBytes { raw throws(SystemError) in try Kernel.read(fd, into: raw, path) }
            guard let count, count > 0 else { return events }
            events += buffer.withUnsafeBytes { InputEvent.parse(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            if count < buffer.count { return events }
        }
    }

    public func close() { Kernel.close(fd) }
}

/// The evdev devices of the machine.
public enum InputDevices {
    /// /dev/input/eventN, in the order of N.
    public static func paths(directory: String = "/dev/input") -> [String] {
        Kernel.listDirectory(directory)
            .compactMap { name -> (Int, String)? in
                guard name.hasPrefix("event"), let number = Int(name.dropFirst(5)) else { return nil }
                return (number, directory + "/" + name)
            }
            .sorted { $0.0 < $1.0 }
            .map(\.1)
    }

    /// Every device that reports keys (EV_KEY: keyboards, but also power
    /// buttons and mice; `isKeyboard` tells), open. A node that cannot be
    /// opened or asked is left out and its error returned for the log.
    public static func openKeyDevices(directory: String = "/dev/input") -> (devices: [InputDevice], problems: [SystemError]) {
        var devices: [InputDevice] = []
        var problems: [SystemError] = []
        for path in paths(directory: directory) {
            do {
                let device = try InputDevice.open(path)
                if device.types.contains(Int(InputEvent.key)) { devices.append(device) } else { device.close() }
            } catch {
                problems.append(error)
            }
        }
        return (devices, problems)
    }
}
