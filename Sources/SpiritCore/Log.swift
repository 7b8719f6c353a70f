import Glibc

/// syslog levels, as /dev/kmsg takes them.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case emergency = 0, alert, critical, error, warning, notice, info, debug

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The word a console line carries after `spirit:`, if any.
    var consoleTag: String? {
        switch self {
        case .emergency, .alert, .critical, .error: "error"
        case .warning: "warning"
        case .debug: "debug"
        case .notice, .info: nil
        }
    }
}

/// How a message is written: every line starts with `spirit:` (the console
/// contract of ARCHITECTURE.md); a multi-line message gives several lines.
public enum LogFormat {
    /// `untagged` leaves out the level's word, for lines whose own first
    /// word is the contract (`spirit: rescue: <reason>`).
    public static func consoleLines(_ level: LogLevel, _ message: String, untagged: Bool = false) -> [String] {
        let tag = untagged ? nil : level.consoleTag
        let prefix = "spirit: " + (tag.map { "\($0): " } ?? "")
        return message.split(separator: "\n", omittingEmptySubsequences: false).map { prefix + $0 }
    }

    /// For /dev/kmsg: `<14>spirit: …` — facility LOG_USER (1 << 3) plus the
    /// level, so that dmesg shows the level and tells our lines from the
    /// kernel's.
    public static func kmsgLines(_ level: LogLevel, _ message: String, untagged: Bool = false) -> [String] {
        consoleLines(level, message, untagged: untagged).map { "<\(8 + level.rawValue)>" + $0 }
    }
}

/// Writes `spirit:` lines to the console (this process's stdout) and to
/// /dev/kmsg. The kernel itself echoes a kmsg line on the console when its
/// level is below console_loglevel (that is, without `quiet`); such a line
/// would be shown twice, so it goes to the console only. With `quiet`, as
/// every Spirit boot entry has, every line is in both.
public struct Console: Sendable {
    public var debugEnabled: Bool
    let kmsg: CInt
    let kernelEchoBelow: Int
    /// Where lines go: the console (PID 1's and the worker's stdout), or
    /// stderr for a command-line tool, whose stdout is its answer.
    let output: CInt

    public init(debug: Bool = false, kmsgPath: String? = "/dev/kmsg", printkPath: String = "/proc/sys/kernel/printk",
                output: CInt = 1) {
        debugEnabled = debug
        self.output = output
        kmsg = kmsgPath.map { open($0, O_WRONLY | O_CLOEXEC | O_NOCTTY) } ?? -1
        let printk = (try? Kernel.readText(printkPath)) ?? ""
        kernelEchoBelow = printk.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } ?? 0
    }

    public func log(_ level: LogLevel, _ message: String, untagged: Bool = false) {
        if level == .debug, !debugEnabled { return }
        let text = LogFormat.consoleLines(level, message, untagged: untagged).joined(separator: "\n") + "\n"
        Self.writeAll(output, text)
        if kmsg >= 0, level.rawValue >= kernelEchoBelow {
            // One write per line: /dev/kmsg takes one record per write(2).
            for line in LogFormat.kmsgLines(level, message, untagged: untagged) { Self.writeAll(kmsg, line) }
        }
    }

    public func info(_ message: String) { log(.info, message) }
    /// Ends whatever line another program left unfinished on the console.
    public func newLine() { Self.writeAll(output, "\n") }
    /// `spirit: rescue: <reason>`, at level critical.
    public func rescue(_ reason: String) { log(.critical, "rescue: " + reason, untagged: true) }
    public func notice(_ message: String) { log(.notice, message) }
    public func warning(_ message: String) { log(.warning, message) }
    public func error(_ message: String) { log(.error, message) }
    /// For command-line tools: to stderr, not to the kernel log.
    public static var tool: Console { Console(kmsgPath: nil, output: 2) }

    public func debug(_ message: @autoclosure () -> String) {
        if debugEnabled { log(.debug, message()) }
    }

    static func writeAll(_ fd: CInt, _ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return
            }
            bytes = bytes.dropFirst(n)
        }
    }
}
