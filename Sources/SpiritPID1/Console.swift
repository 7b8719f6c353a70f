/// PID 1's `spirit:` lines (ConsoleFormat), on its stdout (the console)
/// and in /dev/kmsg. The kernel itself echoes a kmsg line on the console
/// when its level is below console_loglevel (boots without `quiet`): such a
/// line goes to the console only, so that it is not shown twice.
struct Console {
    var debugEnabled: Bool
    let kmsg: Int32
    let kernelEchoBelow: Int

    init(debug: Bool) {
        debugEnabled = debug
        kmsg = (try? Sys.open(Text("/dev/kmsg"), how: 3)) ?? -1
        kernelEchoBelow = ConsoleFormat.kernelEchoBelow(printk: (try? Sys.readFile(Text("/proc/sys/kernel/printk"))) ?? [])
    }

    func log(_ level: LogLevel, _ message: Text, untagged: Bool = false) {
        if level == .debug, !debugEnabled { return }
        Sys.writeAll(1, ConsoleFormat.console(level, message, untagged: untagged).bytes)
        if kmsg >= 0, level.rawValue >= kernelEchoBelow {
            // One write per line: /dev/kmsg takes one record per write(2).
            for line in ConsoleFormat.kmsg(level, message, untagged: untagged) { Sys.writeAll(kmsg, line.bytes) }
        }
    }

    func info(_ message: Text) { log(.info, message) }
    func warning(_ message: Text) { log(.warning, message) }
    func error(_ message: Text) { log(.error, message) }
    /// `spirit: rescue: <reason>`, at level critical.
    func rescue(_ reason: Text) {
        var text = Text("rescue: ")
        text.append(reason)
        log(.critical, text, untagged: true)
    }
    /// Built only with crom.debug=1.
    func debug(_ message: () -> Text) {
        if debugEnabled { log(.debug, message()) }
    }
    /// Ends whatever line another program left unfinished on the console.
    func newLine() { Sys.writeAll(1, [0x0A]) }
}

/// `Text` built from pieces, for messages: `line("the supervisor ", status)`.
func line(_ parts: Text...) -> Text {
    var text = Text()
    for part in parts { text.append(part) }
    return text
}

func text(_ literal: StaticString) -> Text { Text(literal) }

func text(_ number: Int32) -> Text {
    var text = Text()
    text.append(Int64(number))
    return text
}

func text(_ exit: ChildExit) -> Text {
    var text = Text()
    exit.describe(into: &text)
    return text
}
