import SpiritCore

/// How a line of text is coloured: by what it means, not by a colour, so
/// the palette stays the one place colours are chosen.
public enum Tone: Sendable, Equatable {
    case normal, dim, accent, warning, failure
}

public struct TextLine: Sendable, Equatable {
    public var text: String
    public var tone: Tone

    public init(_ text: String, _ tone: Tone = .normal) {
        self.text = text
        self.tone = tone
    }
}

/// What a widget shows: text lines (what `dump` prints) and, below them
/// or beside them, a graph.
public struct WidgetContent: Sendable, Equatable {
    public enum Graph: Sendable, Equatable {
        /// A history (0–1 each, oldest first) as a filled line graph under the text.
        case history([Double])
        /// A meter (0–1) as a bar under the text.
        case meter(Double)
        /// One bar a text line, in the columns after `textColumns`: the boot timeline.
        case spans([TimelineBar], textColumns: Int)
    }

    public var lines: [TextLine]
    public var graph: Graph?

    public init(lines: [TextLine], graph: Graph? = nil) {
        self.lines = lines
        self.graph = graph
    }

    public static let waiting = WidgetContent(lines: [TextLine("waiting for data", .dim)])

    /// A reading that failed: the reason, in the warning colour, instead of numbers.
    public static func problem(_ error: some Error) -> WidgetContent {
        WidgetContent(lines: [TextLine("\(error)", .warning)])
    }
}

/// The last readings of a number (0–1) for a history graph.
public struct History: Sendable, Equatable {
    public let capacity: Int
    public private(set) var values: [Double] = []

    /// 240 samples: the widest CPU panel (a third of 1920 px) at one sample
    /// every 4 px, about four minutes at 1 Hz.
    public init(capacity: Int = 240) { self.capacity = max(1, capacity) }

    public mutating func append(_ value: Double) {
        values.append(value)
        if values.count > capacity { values.removeFirst(values.count - capacity) }
    }
}

/// `text` padded with spaces (or cut) to `width` columns.
func padded(_ text: String, _ width: Int) -> String {
    let count = text.unicodeScalars.count
    if count >= width { return String(String.UnicodeScalarView(text.unicodeScalars.prefix(width))) }
    return text + String(repeating: " ", count: width - count)
}

/// The widgets' contents from their data: pure, so each is a unit test and
/// the dump shows exactly what the screen shows.
public enum Widgets {
    /// All CPUs, then the cores two to a line, then the history graph.
    public static func cpu(all: Double, cores: [Double], history: [Double]) -> WidgetContent {
        var lines = [TextLine("all  " + formatPercent(all), all >= 0.9 ? .warning : .accent)]
        var index = 0
        while index < cores.count {
            var text = padded("cpu\(index)", 6) + formatPercent(cores[index])
            if index + 1 < cores.count { text = padded(text, 14) + padded("cpu\(index + 1)", 6) + formatPercent(cores[index + 1]) }
            lines.append(TextLine(text))
            index += 2
        }
        return WidgetContent(lines: lines, graph: .history(history))
    }

    /// RAM, the zram upper layer (what it holds, what it takes), and the
    /// RAM root's files (shared memory: tmpfs).
    /// `root`: the RAM root's writable layer, used and total bytes.
    public static func memory(_ memory: MemoryInfo, zram: ZramStats?, root: (used: Int64, total: Int64)? = nil) -> WidgetContent {
        var lines = [TextLine("RAM   " + formatBytes(memory.used) + " of " + formatBytes(memory.total) + "  " + formatPercent(memory.usedFraction).trimmed,
                              memory.usedFraction >= 0.9 ? .warning : .normal)]
        if let zram {
            let ratio = Int((zram.ratio * 10).rounded())
            lines.append(TextLine("zram  " + formatBytes(zram.original) + " → " + formatBytes(zram.memoryUsed) + "  \(ratio / 10).\(ratio % 10)x"))
        } else {
            lines.append(TextLine("zram  not in use", .dim))
        }
        if let root, root.total > 0 {
            lines.append(TextLine("root  " + formatBytes(UInt64(max(0, root.used))) + " of " + formatBytes(UInt64(root.total)) + " written",
                                  root.used * 10 >= root.total * 9 ? .warning : .dim))
        }
        lines.append(TextLine("tmpfs " + formatBytes(memory.shared), .dim))
        return WidgetContent(lines: lines, graph: .meter(memory.usedFraction))
    }

    public struct InterfaceLine: Sendable, Equatable {
        public var name: String
        public var up: Bool
        public var address: String?
        public var rxPerSecond: Double
        public var txPerSecond: Double

        public init(name: String, up: Bool, address: String?, rxPerSecond: Double, txPerSecond: Double) {
            self.name = name
            self.up = up
            self.address = address
            self.rxPerSecond = rxPerSecond
            self.txPerSecond = txPerSecond
        }
    }

    /// Each interface (but lo): its link and address, then its rates.
    public static func network(_ interfaces: [InterfaceLine]) -> WidgetContent {
        var lines: [TextLine] = []
        for interface in interfaces where interface.name != "lo" {
            lines.append(TextLine(padded(interface.name, 8) + (interface.up ? "up  " : "down") + "  " + (interface.address ?? "no address"),
                                  interface.up ? .normal : .dim))
            lines.append(TextLine("  ↓ " + formatBytes(UInt64(max(0, interface.rxPerSecond))) + "/s  ↑ "
                                  + formatBytes(UInt64(max(0, interface.txPerSecond))) + "/s", .dim))
        }
        return WidgetContent(lines: lines.isEmpty ? [TextLine("no interfaces", .dim)] : lines)
    }

    /// Alerts first (failed, restarting), then the rest by name.
    public static func services(_ services: [ServiceSummary]) -> WidgetContent {
        let ordered = services.filter(\.isAlert) + services.filter { !$0.isAlert }
        let width = min(16, (services.map(\.name.count).max() ?? 0) + 2)
        let lines = ordered.map { service -> TextLine in
            var text = padded(service.name, width) + service.state
            if service.restarts > 0 { text += " ×\(service.restarts)" }
            if let why = service.why, service.state != "running" { text += "  " + why }
            let tone: Tone = switch service.state {
            case "failed": .failure
            case "backoff": .warning
            case "running": .normal
            default: .dim
            }
            return TextLine(text, tone)
        }
        return WidgetContent(lines: lines.isEmpty ? [TextLine("no services", .dim)] : lines)
    }

    /// The longest `limit` steps as bars on the boot's time axis, then when `spirit: ready` came.
    public static func timeline(_ steps: [TimelineStep], limit: Int) -> WidgetContent {
        let bars = BootTimeline.bars(steps, limit: max(0, limit - 1))
        let width = min(18, (bars.map(\.step.count).max() ?? 0) + 1)
        var lines = bars.map { bar in
            let milliseconds = String(bar.milliseconds)
            return TextLine(padded(bar.step, width) + String(repeating: " ", count: max(0, 6 - milliseconds.count)) + milliseconds + " ms",
                            bar.ok ? .normal : .failure)
        }
        lines.append(TextLine("ready at \(BootTimeline.readyMillis(steps)) ms", .accent))
        // A column of air between the milliseconds and the bars.
        return WidgetContent(lines: lines, graph: .spans(bars, textColumns: width + 10))
    }

    /// The newest lines last, errors in the warning colour.
    public static func kernelLog(_ tail: KernelLogTail) -> WidgetContent {
        let lines = tail.lines.map { TextLine($0.text, $0.isError ? .warning : .dim) }
        return WidgetContent(lines: lines.isEmpty ? [TextLine("no messages", .dim)] : lines)
    }

    public static func nodus(peers: [String]) -> WidgetContent {
        WidgetContent(lines: peers.isEmpty ? [TextLine("no peers seen", .dim)] : peers.map { TextLine($0) })
    }

    /// The VMs widget: a line a VM (name, state, agent, memory); nil: no
    /// VM manager on this machine.
    public static func vms(_ vms: [VMSummary]?) -> WidgetContent {
        guard let vms else { return WidgetContent(lines: [TextLine("no VM manager here (the vm layer)", .dim)]) }
        guard !vms.isEmpty else { return WidgetContent(lines: [TextLine("no VMs defined", .dim)]) }
        return WidgetContent(lines: vms.map { vm in
            let tone: Tone = switch vm.state {
            case "failed": .failure
            case "running": vm.agent == "ready" ? .normal : .accent
            case "starting", "saving", "restoring", "stopping": .warning
            default: .dim
            }
            return TextLine("\(vm.name)  \(vm.state)  agent \(vm.agent)  \(vm.memoryMiB) MiB", tone)
        })
    }

    /// The Sentinel widget: each firing incident, newest first, as two
    /// lines (severity, rule, service and age in the severity's colour,
    /// then the explanation's first line), as many as fit in `lines`; the
    /// rest counted on the last line.
    public static func sentinel(_ state: SentinelState, lines: Int) -> WidgetContent {
        let report: SentinelReport
        switch state {
        case .notRunning(let why):
            return WidgetContent(lines: [TextLine("sentinel not running", .warning), TextLine(why, .dim)])
        case .answered(let answer):
            report = answer
        }
        let open = report.firing
        guard !open.isEmpty else {
            let resolved = report.incidents.count
            return WidgetContent(lines: [TextLine("no incidents", .dim)] + (resolved > 0 ? [TextLine("\(resolved) resolved", .dim)] : []))
        }
        // Two lines an incident; when they do not all fit, the last line says how many more.
        let fitting = open.count * 2 <= lines ? open.count : max(1, (lines - 1) / 2)
        var out: [TextLine] = []
        for incident in open.prefix(fitting) {
            out.append(TextLine(padded(incident.severity.rawValue, 9) + incident.rule + "  " + (incident.service ?? "system") + "  "
                                + formatAge(milliseconds: report.nowMillis - incident.firingMillis), incident.severity.tone))
            out.append(TextLine("  " + incident.summary, .dim))
        }
        if fitting < open.count { out.append(TextLine("+\(open.count - fitting) more (spiritctl sentinel)", .dim)) }
        return WidgetContent(lines: out)
    }

    public static func clock(_ time: String, date: String) -> WidgetContent {
        WidgetContent(lines: [TextLine(time, .accent), TextLine(date, .dim)])
    }
}
