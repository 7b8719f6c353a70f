import Glibc
import SpiritCore
import SystemPackage

/// Where the widgets read the machine: /proc, /sys, /run/spirit and the
/// supervisor's control socket. Everything hangs off injectable paths, so a
/// test points them at a fixture tree.
public struct ReadingPaths: Sendable {
    public var proc = "/proc"
    public var sys = "/sys"
    public var run = RunFiles.directory
    public var control = RunFiles.controlSocket
    /// The VM manager's control socket (`spirit vm daemon`).
    public var vmControl = RunFiles.directory + "/vm.sock"
    /// The Sentinel's control socket (`spiritctl sentinel` asks the same).
    public var sentinelControl = RunFiles.directory + "/sentinel.sock"
    public var kmsg = "/dev/kmsg"
    public var spirit = "/bin/spirit"
    /// The RAM root's writable layer (RootLayout.readWrite).
    public var rootLayer = RunFiles.directory + "/rw"
    public init() {}
}

/// The widgets' data, read when each one is due: the thin I/O in front of
/// the pure parsers (SystemSamples, SpiritStatus) and builders (Widgets).
/// Keeps what a rate or a history needs between two readings.
public final class Readings {
    /// How long a daemon may stay silent before its widget says so: a
    /// widget refreshes every 2 s, and a stuck daemon must not stop it.
    static let answerMillis = 2000
    let paths: ReadingPaths
    var cpu: CPUSample?
    var cpuHistory = History()
    var network: (counters: [String: InterfaceCounters], at: Int64)?
    var kernelLog = KernelLogTail(capacity: 32)
    var kmsg: CInt = -1
    /// The bubble's figures, kept from the last CPU and memory readings.
    public private(set) var cpuFraction = 0.0
    public private(set) var memoryFraction = 0.0
    public private(set) var alerts = 0
    /// The status bar's badge, kept from the last Sentinel reading.
    public private(set) var incidentBadge: IncidentBadge?
    var peers: [String] = []
    var peersScannedAt: Int64 = -1

    public init(paths: ReadingPaths = ReadingPaths()) {
        self.paths = paths
    }

    deinit { if kmsg >= 0 { Kernel.close(kmsg) } }

    /// The content of a widget of `kind`, read now; a reading that fails
    /// shows its reason in the widget instead of numbers.
    public func read(_ kind: WidgetKind, lines: Int) -> WidgetContent {
        do {
            switch kind {
            case .cpu: return try readCPU()
            case .memory: return try readMemory()
            case .network: return try readNetwork()
            case .services: return try readServices()
            case .timeline: return try readTimeline(lines: lines)
            case .kernelLog: return readKernelLog(lines: lines)
            case .nodus: return readPeers()
            case .vms: return readVMs()
            case .sentinel: return readSentinel(lines: lines)
            case .clock: return Widgets.clock(Self.clock(), date: Self.date())
            case .terminal, .script: return .waiting
            }
        } catch {
            return .problem(error)
        }
    }

    /// The content of `placement`, read now (a script widget runs its script).
    public func read(_ placement: WidgetPlacement, lines: Int) -> WidgetContent {
        guard placement.kind == .script, let script = placement.script else { return read(placement.kind, lines: lines) }
        return runScript(script)
    }

    /// How long a widget's script may run before it is stopped.
    public static let scriptMillis = 500

    /// A script runs in a process of its own (`spirit nexus script FILE`),
    /// so that an endless loop or a crash of the engine costs the widget
    /// its lines and the HUD nothing: after `scriptMillis` it is killed.
    func runScript(_ path: String) -> WidgetContent {
        let run: Spawn.Captured
        do {
            run = try Spawn.capture(paths.spirit, ["spirit", "nexus", "script", path], milliseconds: Self.scriptMillis, limit: 65536)
        } catch {
            return .problem(error)
        }
        let (bytes, status, ended) = (run.output, run.status, !run.timedOut)
        let text = String(decoding: bytes, as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard ended else { return WidgetContent(lines: [TextLine("\(path): stopped after \(Self.scriptMillis) ms", .warning)]) }
        guard status == .exited(0) else {
            return WidgetContent(lines: (lines.isEmpty ? ["\(path): \(status.map(\.description) ?? "ended")"] : lines).map { TextLine($0, .warning) })
        }
        return WidgetContent(lines: lines.isEmpty ? [TextLine("(no lines)", .dim)] : lines.map { TextLine($0) })
    }

    func readCPU() throws -> WidgetContent {
        let sample = try CPUSample.parse(try Kernel.readText(paths.proc + "/stat"))
        defer { cpu = sample }
        guard let earlier = cpu else { return WidgetContent(lines: [TextLine("measuring…", .dim)], graph: .history([])) }
        let usage = sample.usage(since: earlier)
        cpuHistory.append(usage.all)
        cpuFraction = usage.all
        return Widgets.cpu(all: usage.all, cores: usage.cores, history: cpuHistory.values)
    }

    func readMemory() throws -> WidgetContent {
        let memory = try MemoryInfo.parse(try Kernel.readText(paths.proc + "/meminfo"))
        memoryFraction = memory.usedFraction
        // The writable layer's zram device, when the root has one.
        let zram = Kernel.directoryEntries(paths.sys + "/block").map(\.name).sorted().first { $0.hasPrefix("zram") }
            .flatMap { try? Kernel.readText(paths.sys + "/block/\($0)/mm_stat") }
            .flatMap { try? ZramStats.parse($0) }
        let layer = try? Kernel.fileSystemStats(paths.rootLayer)
        return Widgets.memory(memory, zram: zram.flatMap { $0.original > 0 ? $0 : nil },
                              root: layer.map { ($0.totalBytes - $0.freeBytes, $0.totalBytes) })
    }

    func readNetwork() throws -> WidgetContent {
        let now = Kernel.bootTimeMicros()
        let counters = try InterfaceCounters.parseNetDev(try Kernel.readText(paths.proc + "/net/dev"))
        let addresses = Kernel.interfaceAddresses()
        var lines: [Widgets.InterfaceLine] = []
        for counter in counters.sorted(by: { $0.name < $1.name }) {
            let state = ((try? Kernel.readText(paths.sys + "/class/net/\(counter.name)/operstate")) ?? "").trimmed
            var rates = (rx: 0.0, tx: 0.0)
            if let (earlier, at) = network, let before = earlier[counter.name] {
                rates = counter.rates(since: before, elapsedMicros: now - at)
            }
            lines.append(Widgets.InterfaceLine(name: counter.name, up: state == "up" || state == "unknown",
                                               address: addresses[counter.name], rxPerSecond: rates.rx, txPerSecond: rates.tx))
        }
        network = (Dictionary(counters.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }), now)
        return Widgets.network(lines)
    }

    func readServices() throws -> WidgetContent {
        let services: [ServiceSummary]
        do throws(ServiceSummary.Unread) {
            services = try ServiceSummary.query(socket: paths.control, idleMilliseconds: Self.answerMillis)
        } catch {
            throw error.sample(source: paths.control)
        }
        alerts = services.filter(\.isAlert).count
        return Widgets.services(services)
    }

    func readTimeline(lines: Int) throws -> WidgetContent {
        let steps = try BootTimeline.parse(try Kernel.readFile(paths.run + "/timeline.json"))
        return Widgets.timeline(steps, limit: max(1, lines))
    }

    /// /dev/kmsg, read without waiting: every record since the last reading.
    func readKernelLog(lines: Int) -> WidgetContent {
        if kmsg < 0 { kmsg = (try? Kernel.open(paths.kmsg, O_RDONLY | O_NONBLOCK)) ?? -1 }
        if kmsg >= 0 {
            var buffer = [UInt8](repeating: 0, count: 8192)
            while true {
                // One record a read; EPIPE when records were overwritten
                // before we read them: read on. nil: nothing more for now.
                let count: Int?
                do {
                    count = try buffer.withMutableBytes { raw throws(SystemError) in try Kernel.read(kmsg, into: raw, paths.kmsg) }
                } catch {
                    if error.errno == .brokenPipe { continue }
                    break
                }
                guard let count, count > 0 else { break }
                if let line = try? KernelLogLine.parse(String(decoding: buffer[0..<count], as: UTF8.self)) { kernelLog.append(line) }
            }
        }
        var tail = KernelLogTail(capacity: max(1, lines))
        kernelLog.lines.suffix(max(1, lines)).forEach { tail.append($0) }
        return Widgets.kernelLog(tail)
    }

    /// Nodus peers, asked with `spirit net scan` (a daemon reaches another
    /// one's work through its command, never by importing it) every 30 s.
    func readPeers() -> WidgetContent {
        let now = Kernel.bootTimeMicros()
        if peersScannedAt < 0 || now - peersScannedAt >= 30_000_000 {
            peersScannedAt = now
            let output = paths.run + "/nexus-peers.\(Kernel.pid).txt"
            defer { Kernel.remove(output) }
            if let pid = try? Spawn.spawn("/bin/sh", ["sh", "-c", "exec \"$0\" net scan --timeout 700 >\"$1\" 2>/dev/null", paths.spirit, output]) {
                _ = try? Spawn.wait(pid)
                peers = ((try? Kernel.readText(output)) ?? "").split(separator: "\n").map(String.init).filter { !$0.isEmpty }
            }
        }
        return Widgets.nodus(peers: peers)
    }

    /// The VMs, asked of the VM manager's control socket (`list`), as
    /// `spirit vm list --json` does; no socket is no VM manager here.
    func readVMs() -> WidgetContent {
        guard Kernel.exists(paths.vmControl) else { return Widgets.vms(nil) }
        var body: [UInt8] = []
        let head = ControlChannel.send("list", to: paths.vmControl, server: "VM manager", idleMilliseconds: Self.answerMillis) { chunk in
            body += chunk
            return true
        }
        if case .error(_, let message) = head { return WidgetContent(lines: [TextLine(message, .warning)]) }
        return Widgets.vms(VMSummary.parse(body))
    }

    /// The Sentinel's incidents, asked of its control socket (`list json`,
    /// as `spiritctl sentinel --json` does). No socket, or one nobody
    /// answers on (a Sentinel that died), is a Sentinel not running; an
    /// answer that does not parse is its reason.
    func readSentinel(lines: Int) -> WidgetContent {
        incidentBadge = nil
        let socket = paths.sentinelControl
        guard Kernel.exists(socket) else { return Widgets.sentinel(.notRunning("no \(socket)"), lines: lines) }
        var body: [UInt8] = []
        let head = ControlChannel.send("list json", to: socket, server: "sentinel", idleMilliseconds: Self.answerMillis) { chunk in
            body += chunk
            return true
        }
        if case .error(_, let message) = head { return Widgets.sentinel(.notRunning(message), lines: lines) }
        let report: SentinelReport
        do {
            report = try SentinelReport.parse(body)
        } catch {
            return .problem(error)
        }
        incidentBadge = report.badge
        return Widgets.sentinel(.answered(report), lines: lines)
    }

    static func clock() -> String {
        let parts = localTime()
        return pad(parts.tm_hour) + ":" + pad(parts.tm_min)
    }

    static func date() -> String {
        let parts = localTime()
        return "\(parts.tm_year + 1900)-" + pad(parts.tm_mon + 1) + "-" + pad(parts.tm_mday)
    }

    static func localTime() -> tm {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        return parts
    }

    static func pad(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
}
