// PID 1's decisions, with no system call and no import: what a signal
// means, whose child ended and what follows, when a supervisor may start
// again, the two crom.* flags PID 1 reads, and the bytes of its console
// lines and timeline records. Written in the Embedded Swift subset (no
// String, no existentials, no Foundation): it is compiled into the
// Embedded `spirit-init` binary (Sources/SpiritPID1, built by the
// Makefile) and, unchanged, into the InitCore SwiftPM target that
// Tests/InitCoreTests checks.

/// Linux's signal numbers (x86_64 and arm64 share them); the tests check
/// them against Glibc's.
public enum LinuxSignal {
    public static let hangup: Int32 = 1
    public static let interrupt: Int32 = 2
    public static let kill: Int32 = 9
    public static let user1: Int32 = 10
    public static let user2: Int32 = 12
    public static let terminate: Int32 = 15
    public static let child: Int32 = 17
    public static let proceed: Int32 = 18
    public static let power: Int32 = 30

    /// `SIGSEGV`, or nil for a number without a name (glibc's sigabbrev_np).
    public static func abbreviation(_ signal: Int32) -> StaticString? {
        switch signal {
        case 1: "HUP"
        case 2: "INT"
        case 3: "QUIT"
        case 4: "ILL"
        case 5: "TRAP"
        case 6: "ABRT"
        case 7: "BUS"
        case 8: "FPE"
        case 9: "KILL"
        case 10: "USR1"
        case 11: "SEGV"
        case 12: "USR2"
        case 13: "PIPE"
        case 14: "ALRM"
        case 15: "TERM"
        case 16: "STKFLT"
        case 17: "CHLD"
        case 18: "CONT"
        case 19: "STOP"
        case 20: "TSTP"
        case 21: "TTIN"
        case 22: "TTOU"
        case 23: "URG"
        case 24: "XCPU"
        case 25: "XFSZ"
        case 26: "VTALRM"
        case 27: "PROF"
        case 28: "WINCH"
        case 29: "POLL"
        case 30: "PWR"
        case 31: "SYS"
        default: nil
        }
    }

    /// glibc's sigdescr_np, so that `spirit: rescue: the boot worker was
    /// killed by SIGSEGV (Segmentation fault)` reads as before.
    public static func description(_ signal: Int32) -> StaticString? {
        switch signal {
        case 1: "Hangup"
        case 2: "Interrupt"
        case 3: "Quit"
        case 4: "Illegal instruction"
        case 5: "Trace/breakpoint trap"
        case 6: "Aborted"
        case 7: "Bus error"
        case 8: "Floating point exception"
        case 9: "Killed"
        case 10: "User defined signal 1"
        case 11: "Segmentation fault"
        case 12: "User defined signal 2"
        case 13: "Broken pipe"
        case 14: "Alarm clock"
        case 15: "Terminated"
        case 16: "Stack fault"
        case 17: "Child exited"
        case 18: "Continued"
        case 19: "Stopped (signal)"
        case 20: "Stopped"
        case 21: "Stopped (tty input)"
        case 22: "Stopped (tty output)"
        case 23: "Urgent I/O condition"
        case 24: "CPU time limit exceeded"
        case 25: "File size limit exceeded"
        case 26: "Virtual timer expired"
        case 27: "Profiling timer expired"
        case 28: "Window changed"
        case 29: "I/O possible"
        case 30: "Power failure"
        case 31: "Bad system call"
        default: nil
        }
    }

    /// `SIGSEGV` or `signal 42`.
    public static func appendName(_ signal: Int32, to text: inout Text) {
        if let abbreviation = abbreviation(signal) {
            text.append("SIG")
            text.append(abbreviation)
        } else {
            text.append("signal ")
            text.append(Int64(signal))
        }
    }

    /// `SIGSEGV (Segmentation fault)`.
    public static func appendDescription(_ signal: Int32, to text: inout Text) {
        appendName(signal, to: &text)
        if let description = description(signal) {
            text.append(" (")
            text.append(description)
            text.append(")")
        }
    }
}

/// Bytes being put together: a console line, a path, a JSON record.
public struct Text: Equatable, Sendable {
    public var bytes: [UInt8]

    public init() { bytes = [] }
    public init(_ literal: StaticString) {
        bytes = []
        append(literal)
    }
    public init(bytes: [UInt8]) { self.bytes = bytes }

    public mutating func append(_ literal: StaticString) {
        let start = literal.utf8Start
        for index in 0..<literal.utf8CodeUnitCount { bytes.append(start[index]) }
    }

    public mutating func append(_ number: Int64) {
        if number < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = number.magnitude
        var digits: [UInt8] = []
        repeat {
            digits.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
            magnitude /= 10
        } while magnitude > 0
        bytes.append(contentsOf: digits.reversed())
    }

    public mutating func append(bytes more: [UInt8]) { bytes.append(contentsOf: more) }
    public mutating func append(_ other: Text) { bytes.append(contentsOf: other.bytes) }

    /// `1234.567` for 1234567 µs, as SpiritCore's formatMilliseconds.
    public mutating func appendMilliseconds(_ micros: Int64) {
        if micros < 0 { bytes.append(UInt8(ascii: "-")) }
        let magnitude = micros.magnitude
        append(Int64(magnitude / 1000))
        bytes.append(UInt8(ascii: "."))
        let fraction = magnitude % 1000
        if fraction < 100 { bytes.append(UInt8(ascii: "0")) }
        if fraction < 10 { bytes.append(UInt8(ascii: "0")) }
        append(Int64(fraction))
    }

    /// A JSON string literal, escaped as RFC 8259 requires (as SpiritCore's jsonString).
    public mutating func appendJSONString(_ raw: [UInt8]) {
        let hex: [UInt8] = Text("0123456789abcdef").bytes
        bytes.append(UInt8(ascii: "\""))
        for byte in raw {
            switch byte {
            case UInt8(ascii: "\""): append("\\\"")
            case UInt8(ascii: "\\"): append("\\\\")
            case 0x0A: append("\\n")
            case 0x0D: append("\\r")
            case 0x09: append("\\t")
            case 0..<0x20:
                append("\\u00")
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0xF)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

/// How a child ended.
public enum ChildExit: Equatable, Sendable {
    case exited(Int32)
    case signaled(Int32)

    /// From waitpid(2)'s status word (WIFEXITED, WEXITSTATUS, WTERMSIG).
    public init(waitStatus: Int32) {
        if waitStatus & 0x7F == 0 {
            self = .exited((waitStatus >> 8) & 0xFF)
        } else {
            self = .signaled(waitStatus & 0x7F)
        }
    }

    /// `exited with status 3`, `was killed by SIGSEGV (Segmentation fault)`.
    public func describe(into text: inout Text) {
        switch self {
        case .exited(let code):
            text.append("exited with status ")
            text.append(Int64(code))
        case .signaled(let signal):
            text.append("was killed by ")
            LinuxSignal.appendDescription(signal, to: &text)
        }
    }
}

/// What PID 1 was asked to do to the machine.
public enum PowerAction: Equatable, Sendable {
    case reboot, halt, poweroff

    public var word: StaticString {
        switch self {
        case .reboot: "reboot"
        case .halt: "halt"
        case .poweroff: "poweroff"
        }
    }

    /// LINUX_REBOOT_CMD_RESTART, _HALT, _POWER_OFF.
    public var rebootCommand: UInt32 {
        switch self {
        case .reboot: 0x0123_4567
        case .halt: 0xCDEF_0123
        case .poweroff: 0x4321_FEDC
        }
    }

    public static let ctrlAltDelOff: UInt32 = 0
}

/// What PID 1 does with one signal read from its signalfd (the
/// conventions of busybox's reboot/halt/poweroff applets).
public enum SignalAction: Equatable {
    case reap
    case shutdown(PowerAction, ShutdownReason)
    /// The supervisor's SIGHUP: every enabled service has settled.
    case ready
    case ignore

    public static func of(signal: Int32, sender: Int32, stage: Int, supervisor: Int32?) -> SignalAction {
        switch signal {
        case LinuxSignal.child: .reap
        case LinuxSignal.terminate: .shutdown(.reboot, .signal(signal, from: sender))
        case LinuxSignal.interrupt: .shutdown(.reboot, .ctrlAltDel)
        case LinuxSignal.user1: .shutdown(.halt, .signal(signal, from: sender))
        case LinuxSignal.user2: .shutdown(.poweroff, .signal(signal, from: sender))
        case LinuxSignal.power: .shutdown(.poweroff, .powerFailure)
        case LinuxSignal.hangup where stage == 2 && sender != 0 && sender == supervisor: .ready
        default: .ignore
        }
    }
}

/// Who asked for a shutdown, as the console and the journal say it.
public enum ShutdownReason: Equatable {
    case signal(Int32, from: Int32)
    case ctrlAltDel
    case powerFailure

    /// `SIGTERM from process 42`, `ctrl-alt-del`, `SIGPWR (power failure)`.
    public var text: Text {
        var text = Text()
        switch self {
        case .signal(let signal, let sender):
            LinuxSignal.appendName(signal, to: &text)
            text.append(" from process ")
            text.append(Int64(sender))
        case .ctrlAltDel: text.append("ctrl-alt-del")
        case .powerFailure: text.append("SIGPWR (power failure)")
        }
        return text
    }
}

/// PID 1's children by role; every other pid it reaps is an orphan.
public struct ChildTable: Equatable {
    public enum Role: Equatable { case worker, supervisor, shell, rescueWatcher, orphan }

    /// Stage 1's boot worker (`spirit boot-worker`).
    public var worker: Int32?
    /// Stage 2's service supervisor (`spirit supervise`).
    public var supervisor: Int32?
    /// The rescue shell (stage 1) or the console shell (stage 2).
    public var shell: Int32?
    /// `spirit rescue-watch`, beside the stage-1 rescue shell.
    public var rescueWatcher: Int32?

    public init() {}

    /// The role `pid` had; it no longer has it.
    public mutating func ended(_ pid: Int32) -> Role {
        if pid == worker {
            worker = nil
            return .worker
        }
        if pid == supervisor {
            supervisor = nil
            return .supervisor
        }
        if pid == rescueWatcher {
            rescueWatcher = nil
            return .rescueWatcher
        }
        if pid == shell {
            shell = nil
            return .shell
        }
        return .orphan
    }
}

/// What follows the boot worker's end.
public enum WorkerOutcome: Equatable {
    /// It assembled /sysroot: switch into it.
    case switchRoot
    /// Anything else: the rescue shell, with the worker's own reason when it
    /// left one (it exits with `rescueExitStatus` after writing it).
    case rescue(readReason: Bool)

    public static let rescueExitStatus: Int32 = 3

    public static func after(_ exit: ChildExit, rootReady: Bool) -> WorkerOutcome {
        if exit == .exited(0), rootReady { return .switchRoot }
        return .rescue(readReason: exit == .exited(rescueExitStatus))
    }

    /// The first line of the rescue-reason file, or nil when it has none.
    public static func reason(fromFile bytes: [UInt8]) -> [UInt8]? {
        let line = bytes.prefix { $0 != 0x0A }
        return line.isEmpty ? nil : Array(line)
    }
    /// The pid in a pid file (`1234\n`): a whole number above 1 that fits
    /// a pid; nil for anything else (an empty, cut or edited file).
    public static func pid(fromFile bytes: [UInt8]) -> Int32? {
        let digits = bytes.prefix { $0 != 0x0A }
        guard !digits.isEmpty, digits.count <= 10 else { return nil }
        var value: Int64 = 0
        for byte in digits {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            value = value * 10 + Int64(byte - 0x30)
        }
        return value > 1 && value <= Int64(Int32.max) ? Int32(value) : nil
    }
}

/// A child that PID 1 starts again whenever it ends (the supervisor, the
/// console shell) waits a second when its last start was under a second
/// ago, so that one that dies at once cannot spin.
public struct RestartPacing: Equatable {
    public static let windowMicros: Int64 = 1_000_000
    public var lastStart: Int64?

    public init() {}

    public func delayMillis(now: Int64) -> Int {
        guard let lastStart, now - lastStart < Self.windowMicros else { return 0 }
        return Int(Self.windowMicros / 1000)
    }

    public mutating func started(at now: Int64) { lastStart = now }
}

/// The two crom.* flags PID 1 itself needs: `crom.debug` (debug lines) and
/// `crom.console` (a shell on the console at ready).
public struct InitFlags: Equatable, Sendable {
    public var debug = false
    public var console = true

    public init(debug: Bool = false, console: Bool = true) {
        self.debug = debug
        self.console = console
    }

    /// From the kernel's command line, split as the kernel splits it
    /// (double quotes group, and are dropped); the last value wins, a bad
    /// value gives the default, as BootConfig does; nothing after `--`
    /// (those are init's arguments).
    public static func parse(commandLine bytes: [UInt8]) -> InitFlags {
        var flags = InitFlags()
        for word in words(bytes) {
            if word == Text("--").bytes { break }
            let equals = word.firstIndex(of: UInt8(ascii: "="))
            let name = Array(word[..<(equals ?? word.endIndex)])
            let value: [UInt8]? = equals.map { Array(word[($0 + 1)...]) }
            if name == Text("crom.debug").bytes {
                flags.debug = boolean(value) ?? false
            } else if name == Text("crom.console").bytes {
                flags.console = boolean(value) ?? true
            }
        }
        return flags
    }

    /// From the boot worker's boot-config.json, whose `flags` hold every
    /// flag in its canonical form (`crom.debug=1`, `crom.console=off`);
    /// nil when the document has no such list.
    public static func parse(bootConfig bytes: [UInt8]) -> InitFlags? {
        guard contains(bytes, Text("\"flags\":[").bytes) else { return nil }
        return InitFlags(debug: contains(bytes, Text("\"crom.debug=1\"").bytes),
                         console: !contains(bytes, Text("\"crom.console=off\"").bytes))
    }

    static func boolean(_ value: [UInt8]?) -> Bool? {
        guard let value else { return true }
        let lower = value.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }
        for word in ["1", "y", "yes", "on", "true"] as [StaticString] where lower == Text(word).bytes { return true }
        for word in ["0", "n", "no", "off", "false"] as [StaticString] where lower == Text(word).bytes { return false }
        return nil
    }

    static func words(_ bytes: [UInt8]) -> [[UInt8]] {
        var words: [[UInt8]] = []
        var current: [UInt8] = []
        var inQuotes = false
        var started = false
        for byte in bytes {
            if byte == UInt8(ascii: "\"") {
                inQuotes.toggle()
                started = true
            } else if !inQuotes, byte == 0x20 || byte == 0x09 || byte == 0x0A {
                if started { words.append(current) }
                current = []
                started = false
            } else {
                current.append(byte)
                started = true
            }
        }
        if started { words.append(current) }
        return words
    }

    static func contains(_ bytes: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= bytes.count else { return false }
        for start in 0...(bytes.count - needle.count) where bytes[start] == needle[0] {
            var index = 1
            while index < needle.count, bytes[start + index] == needle[index] { index += 1 }
            if index == needle.count { return true }
        }
        return false
    }
}

/// syslog levels, as /dev/kmsg takes them.
public enum LogLevel: Int {
    case critical = 2, error = 3, warning = 4, info = 6, debug = 7

    /// The word a console line carries after `spirit:`, if any.
    var consoleTag: StaticString? {
        switch self {
        case .critical, .error: "error"
        case .warning: "warning"
        case .debug: "debug"
        case .info: nil
        }
    }
}

/// The console contract's lines (ARCHITECTURE.md): every line starts with
/// `spirit:`, then the level's word for warnings, errors and debug lines; the
/// same lines go to /dev/kmsg as `<8+level>spirit: …`. The same format as
/// SpiritCore's LogFormat.
public enum ConsoleFormat {
    /// One `spirit: …` line per line of `message`, each ending in a newline.
    /// `untagged` leaves out the level's word (`spirit: rescue: …`).
    public static func lines(_ level: LogLevel, _ message: Text, untagged: Bool = false) -> [Text] {
        var prefix = Text("spirit: ")
        if !untagged, let tag = level.consoleTag {
            prefix.append(tag)
            prefix.append(": ")
        }
        var lines: [Text] = []
        for piece in message.bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            var line = prefix
            line.append(bytes: Array(piece))
            lines.append(line)
        }
        return lines
    }

    /// The console's bytes: the lines, each with its newline.
    public static func console(_ level: LogLevel, _ message: Text, untagged: Bool = false) -> Text {
        var text = Text()
        for line in lines(level, message, untagged: untagged) {
            text.append(line)
            text.append("\n")
        }
        return text
    }

    /// One /dev/kmsg record per line (`<14>spirit: …`).
    public static func kmsg(_ level: LogLevel, _ message: Text, untagged: Bool = false) -> [Text] {
        lines(level, message, untagged: untagged).map { line in
            var record = Text("<")
            record.append(Int64(8 + level.rawValue))
            record.append(">")
            record.append(line)
            return record
        }
    }

    /// The kernel's console_loglevel, the first number of
    /// /proc/sys/kernel/printk: lines of a lower level it echoes itself.
    public static func kernelEchoBelow(printk: [UInt8]) -> Int {
        var value = 0
        var seen = false
        for byte in printk {
            if byte >= 0x30, byte <= 0x39 {
                value = value * 10 + Int(byte - 0x30)
                seen = true
            } else if seen || !(byte == 0x20 || byte == 0x09 || byte == 0x0A) {
                break
            }
        }
        return value
    }
}

/// The boot timeline's records (SpiritCore's Timeline and TimelineStep):
/// one JSON object a line in timeline.jsonl, and timeline.json, the
/// document made from those lines.
public enum TimelineFormat {
    public static func record(step: StaticString, process: StaticString, pid: Int32, startMicros: Int64, endMicros: Int64,
                              ok: Bool, detail: Text? = nil) -> Text {
        var text = Text("{\"step\":")
        text.appendJSONString(Text(step).bytes)
        text.append(",\"process\":")
        text.appendJSONString(Text(process).bytes)
        text.append(",\"pid\":")
        text.append(Int64(pid))
        text.append(",\"start_ms\":")
        text.appendMilliseconds(startMicros)
        text.append(",\"end_ms\":")
        text.appendMilliseconds(endMicros)
        text.append(",\"duration_ms\":")
        text.appendMilliseconds(endMicros - startMicros)
        text.append(ok ? ",\"ok\":true" : ",\"ok\":false")
        if let detail {
            text.append(",\"detail\":")
            text.appendJSONString(detail.bytes)
        }
        text.append("}")
        return text
    }

    /// `{"clock":"CLOCK_BOOTTIME","unit":"ms","steps":[…]}` from the journal's lines.
    public static func document(journal: [UInt8]) -> Text {
        var text = Text("{\"clock\":\"CLOCK_BOOTTIME\",\"unit\":\"ms\",\"steps\":[\n")
        var first = true
        for line in journal.split(separator: 0x0A) where line.first == UInt8(ascii: "{") && line.last == UInt8(ascii: "}") {
            if !first { text.append(",\n") }
            text.append(bytes: Array(line))
            first = false
        }
        text.append("\n]}\n")
        return text
    }

    /// `kernel 3129, modules 2027, … ms; at 7416 ms of CLOCK_BOOTTIME`:
    /// each step's duration, rounded to the millisecond, from the journal's
    /// lines (TimelineStep.summary).
    public static func summary(journal: [UInt8]) -> Text {
        var text = Text()
        var end: Int64 = 0
        var first = true
        for line in journal.split(separator: 0x0A) {
            let bytes = Array(line)
            guard bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}"),
                  let step = stringField(bytes, "\"step\":"), stringField(bytes, "\"process\":") != nil,
                  let start = millisecondsField(bytes, "\"start_ms\":"), let stop = millisecondsField(bytes, "\"end_ms\":")
            else { continue }
            end = max(end, stop)
            guard stop > start else { continue }
            if !first { text.append(", ") }
            first = false
            text.append(bytes: step)
            text.append(" ")
            text.append((stop - start + 500) / 1000)
        }
        text.append(" ms; at ")
        text.append((end + 500) / 1000)
        text.append(" ms of CLOCK_BOOTTIME")
        return text
    }

    static func find(_ bytes: [UInt8], _ key: StaticString) -> Int? {
        let needle = Text(key).bytes
        guard needle.count <= bytes.count else { return nil }
        for start in 0...(bytes.count - needle.count) {
            var index = 0
            while index < needle.count, bytes[start + index] == needle[index] { index += 1 }
            if index == needle.count { return start + needle.count }
        }
        return nil
    }

    /// A string member's value, its escapes undone (\uXXXX kept as written).
    static func stringField(_ bytes: [UInt8], _ key: StaticString) -> [UInt8]? {
        guard var index = find(bytes, key), index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        index += 1
        var value: [UInt8] = []
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") { return value }
            if byte == UInt8(ascii: "\\"), index + 1 < bytes.count {
                index += 1
                switch bytes[index] {
                case UInt8(ascii: "n"): value.append(0x0A)
                case UInt8(ascii: "r"): value.append(0x0D)
                case UInt8(ascii: "t"): value.append(0x09)
                case UInt8(ascii: "u"): value.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u")])
                default: value.append(bytes[index])
                }
            } else {
                value.append(byte)
            }
            index += 1
        }
        return nil
    }

    /// `1234.567` (or `-1.5`, `12`) as microseconds; nil for more than 12
    /// whole digits (31 years of ms), which a damaged file may hold and
    /// which would overflow: PID 1 must not trap on it.
    static func millisecondsField(_ bytes: [UInt8], _ key: StaticString) -> Int64? {
        guard var index = find(bytes, key) else { return nil }
        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        var whole: Int64 = 0
        var digits = 0
        while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
            guard digits < 12 else { return nil }
            whole = whole * 10 + Int64(bytes[index] - 0x30)
            index += 1
            digits += 1
        }
        guard digits > 0 else { return nil }
        var fraction: Int64 = 0
        var scale: Int64 = 100
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                fraction += Int64(bytes[index] - 0x30) * scale
                scale /= 10
                index += 1
            }
        }
        let micros = whole * 1000 + fraction
        return negative ? -micros : micros
    }
}

/// The API filesystems PID 1 mounts before anything else (SpiritCore's
/// EarlyMounts.table; the tests check that the two agree).
public struct EarlyMount: Sendable {
    public let source: StaticString
    public let target: StaticString
    public let fstype: StaticString
    /// MS_* flags, and their names as `mount -o` spells them.
    public let flags: UInt
    public let flagNames: StaticString
    public let data: StaticString

    public static let table: [EarlyMount] = [
        EarlyMount(source: "proc", target: "/proc", fstype: "proc", flags: 2 | 4 | 8, flagNames: "nosuid,nodev,noexec", data: ""),
        EarlyMount(source: "sysfs", target: "/sys", fstype: "sysfs", flags: 2 | 4 | 8, flagNames: "nosuid,nodev,noexec", data: ""),
        EarlyMount(source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: 2, flagNames: "nosuid", data: "mode=0755"),
        EarlyMount(source: "devpts", target: "/dev/pts", fstype: "devpts", flags: 2 | 8, flagNames: "nosuid,noexec",
                   data: "gid=5,mode=0620,ptmxmode=0666"),
        EarlyMount(source: "tmpfs", target: "/dev/shm", fstype: "tmpfs", flags: 2 | 4, flagNames: "nosuid,nodev", data: "mode=1777"),
        EarlyMount(source: "tmpfs", target: "/run", fstype: "tmpfs", flags: 2 | 4, flagNames: "nosuid,nodev", data: "mode=0755"),
    ]

    public var options: Text {
        var text = Text(flagNames)
        if data.utf8CodeUnitCount > 0 {
            if !text.bytes.isEmpty { text.append(",") }
            text.append(data)
        }
        return text
    }

    /// `mount proc on /proc (proc, nosuid,nodev,noexec)`, for errors.
    public var operation: Text {
        var text = Text("mount ")
        text.append(source)
        text.append(" on ")
        text.append(target)
        text.append(" (")
        text.append(fstype)
        text.append(", ")
        text.append(options)
        text.append(")")
        return text
    }

    /// `mount -t proc -o nosuid,nodev,noexec proc /proc`, for crom.debug=1.
    public var shell: Text {
        var text = Text("mount -t ")
        text.append(fstype)
        text.append(" -o ")
        text.append(options)
        text.append(" ")
        text.append(source)
        text.append(" ")
        text.append(target)
        return text
    }

    /// Whether /proc/self/mountinfo (proc(5)) has a mount on `target`.
    public static func mounted(_ target: StaticString, mountInfo: [UInt8]) -> Bool {
        let wanted = Text(target).bytes
        for line in mountInfo.split(separator: 0x0A) {
            let fields = line.split(separator: 0x20)
            if fields.count > 4, Array(fields[4]) == wanted { return true }
        }
        return false
    }
}
