import Glibc
import SpiritCore
import SystemPackage

/// The collectors' thin I/O: each reads its files under the injectable
/// root and hands the text to a pure parser; a file that is not there (no
/// PSI in this kernel, no thermal zones in QEMU) yields nothing.
struct Collectors {
    let paths: SentinelPaths
    let console: Console
    /// memory.events `oom_kill` per service at the last reading (the first
    /// reading is the baseline).
    var oomKills: [String: UInt64] = [:]
    /// Each service's memory.current, for `restart-largest`.
    var memory: [String: UInt64] = [:]
    var warned: Set<String> = []
    var logs: ServiceLogTail

    init(paths: SentinelPaths, console: Console) {
        self.paths = paths
        self.console = console
        logs = ServiceLogTail(directory: paths.serviceLogs)
    }

    mutating func warnOnce(_ error: some Error) {
        let text = "\(error)"
        if warned.insert(text).inserted { console.warning("sentinel: \(text)") }
    }

    /// /proc/pressure/{cpu,memory,io}.
    mutating func pressure() -> [Observation] {
        var out: [Observation] = []
        for resource in ["cpu", "memory", "io"] {
            let path = paths.pressure + "/" + resource
            guard let text = try? Kernel.readText(path) else { continue }
            do {
                let reading = try Pressure.parse(text, source: path)
                let evidence = ["\(path): " + text.split(separator: "\n").joined(separator: "; ")]
                func add(_ signal: SignalKind, _ value: Double?) {
                    if let value { out.append(Observation(signal: signal, subject: nil, value: value, evidence: evidence)) }
                }
                switch resource {
                case "cpu":
                    add(.psiCPUSomeAvg10, reading.some.avg10)
                    add(.psiCPUSomeAvg60, reading.some.avg60)
                case "memory":
                    add(.psiMemorySomeAvg10, reading.some.avg10)
                    add(.psiMemoryFullAvg10, reading.full?.avg10)
                default:
                    add(.psiIOSomeAvg10, reading.some.avg10)
                    add(.psiIOFullAvg10, reading.full?.avg10)
                }
            } catch {
                warnOnce(error)
            }
        }
        return out
    }

    /// Each service's cgroup: memory.pressure, memory.events, memory.current.
    mutating func cgroups() -> [Observation] {
        var out: [Observation] = []
        var seen: [String: UInt64] = [:]
        for service in Kernel.listDirectory(paths.serviceCgroups) {
            let directory = paths.serviceCgroups + "/" + service
            if let text = try? Kernel.readText(directory + "/memory.pressure") {
                do {
                    let reading = try Pressure.parse(text, source: directory + "/memory.pressure")
                    out.append(Observation(signal: .serviceMemorySomeAvg10, subject: service, value: reading.some.avg10))
                    if let full = reading.full { out.append(Observation(signal: .serviceMemoryFullAvg10, subject: service, value: full.avg10)) }
                } catch {
                    warnOnce(error)
                }
            }
            if let text = try? Kernel.readText(directory + "/memory.events") {
                do {
                    let kills = try MemoryEvents.parse(text, source: directory + "/memory.events")["oom_kill"] ?? 0
                    seen[service] = kills
                    // A count lower than the last (the cgroup was made again) is a new baseline.
                    if let before = oomKills[service], kills > before {
                        for _ in before..<min(kills, before + 100) {
                            out.append(Observation(signal: .serviceOOMKill, subject: service, evidence: ["\(directory)/memory.events: oom_kill \(kills)"]))
                        }
                    }
                } catch {
                    warnOnce(error)
                }
            }
            if let text = try? Kernel.readText(directory + "/memory.current"), let bytes = UInt64(text.trimmed) { memory[service] = bytes }
        }
        oomKills = seen
        return out
    }

    /// How full `/` is (statvfs).
    mutating func rootFill() -> [Observation] {
        do {
            let stats = try Kernel.fileSystemStats(paths.filesystem)
            let percent = usedPercent(blocks: UInt64(max(0, stats.totalBytes)), free: UInt64(max(0, stats.freeBytes)),
                                      available: UInt64(max(0, stats.availableBytes)))
            return [Observation(signal: .rootUsedPercent, subject: nil, value: percent,
                                evidence: ["\(paths.filesystem): \(Int(percent))% used, \(stats.availableBytes / 1_048_576) MiB available"])]
        } catch {
            warnOnce(error)
            return []
        }
    }

    /// The thermal zones: the highest trip level any reached.
    mutating func thermal() -> [Observation] {
        var level = 0
        var evidence: [String] = []
        var zones = 0
        for entry in Kernel.listDirectory(paths.thermal) where entry.hasPrefix("thermal_zone") {
            let directory = paths.thermal + "/" + entry
            guard let text = try? Kernel.readText(directory + "/temp") else { continue }
            do {
                var zone = ThermalZone(name: (try? Kernel.readText(directory + "/type"))?.trimmed ?? entry,
                                       milliCelsius: try ThermalZone.milliCelsius(text, source: directory + "/temp"))
                for index in 0..<16 {
                    guard let type = try? Kernel.readText(directory + "/trip_point_\(index)_type"),
                          let temp = try? Kernel.readText(directory + "/trip_point_\(index)_temp") else { break }
                    zone.trips.append((type.trimmed, try ThermalZone.milliCelsius(temp, source: directory + "/trip_point_\(index)_temp")))
                }
                zones += 1
                if zone.tripLevel > 0 { evidence.append("\(zone.name): \(zone.milliCelsius / 1000) °C") }
                level = max(level, zone.tripLevel)
            } catch {
                warnOnce(error)
            }
        }
        return zones == 0 ? [] : [Observation(signal: .thermalTrip, subject: nil, value: Double(level), evidence: evidence)]
    }

    /// The zram device's RAM against MemTotal, with its ratio as evidence.
    mutating func zram() -> [Observation] {
        guard let text = try? Kernel.readText(paths.zramStats) else { return [] }
        do {
            let zram = try ZramStats.parse(text)
            let memory = try MemoryInfo.parse(try Kernel.readText(paths.meminfo))
            let percent = zramRAMPercent(zram, memoryTotal: memory.total)
            let ratio = zram.ratio == 0 ? "" : ", ratio \(Double(Int(zram.ratio * 10)) / 10)"
            return [Observation(signal: .zramRAMPercent, subject: nil, value: percent,
                                evidence: ["zram0: \(zram.original >> 20) MiB stored in \(zram.memoryUsed >> 20) MiB of RAM\(ratio), "
                                    + "\(Int(percent))% of \(memory.total >> 20) MiB"])]
        } catch {
            warnOnce(error)
            return []
        }
    }

    mutating func serviceLogs() -> [Observation] { logs.read() }

    /// The supervisor's `status json`; nil when it does not answer.
    mutating func services() -> [ServiceSummary]? {
        do throws(ServiceSummary.Unread) {
            return try ServiceSummary.query(socket: paths.supervisorControl)
        } catch {
            warnOnce(error.sample(source: "supervisor"))
            return nil
        }
    }
}

/// /dev/kmsg from its end: one record a read, EPIPE when the ring overran
/// us (records lost: read on). Under a test root it may be a plain file of
/// records, one a line: it is followed from its end the same way.
final class KernelLogReader {
    let path: String
    var fd: CInt = -1
    var device = false
    var pending: [UInt8] = []
    var lost = 0

    init(path: String) throws(SystemError) {
        self.path = path
        fd = try Kernel.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        device = (try? Kernel.status(of: fd, path))?.isCharacterDevice ?? false
        // Only what happens from now on: the boot's old records are history.
        try Kernel.seekToEnd(fd, path)
    }

    deinit { if fd >= 0 { Kernel.close(fd) } }

    /// The messages of every record since the last call.
    func read() -> [String] {
        var messages: [String] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let count: Int?
            do {
                count = try buffer.withMutableBytes { raw throws(SystemError) in try Kernel.read(fd, into: raw, path) }
            } catch {
                if error.errno == .brokenPipe {
                    lost += 1
                    continue
                }
                break
            }
            guard let count, count > 0 else { break }
            if device {
                if let record = try? KernelLogLine.parse(String(decoding: buffer[0..<count], as: UTF8.self)) { messages.append(record.message) }
            } else {
                pending += buffer[0..<count]
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    if !line.hasPrefix(" "), let record = try? KernelLogLine.parse(line) { messages.append(record.message) }
                }
            }
        }
        return messages
    }
}

/// New error lines in the services' logs (`LogErrors`), a tick at a time.
public struct ServiceLogTail {
    let directory: String
    /// Where each service's log was read up to (its inode, the offset of
    /// the first byte not read).
    var cursors: [String: (inode: UInt64, offset: Int64)] = [:]
    var started = false

    public init(directory: String) { self.directory = directory }

    /// New error lines in the services' logs (/run/log/NAME.log), read from
    /// where the last tick stopped: the logs as they were when the Sentinel
    /// started are history, a log that appears later is read from its
    /// start, and a rotated log's rest is read from NAME.log.1. The
    /// supervisor's own log and the Sentinel's are not read (its incidents
    /// would count themselves).
    public mutating func read() -> [Observation] {
        var out: [Observation] = []
        var seen: [String: (inode: UInt64, offset: Int64)] = [:]
        for entry in Kernel.listDirectory(directory) where entry.hasSuffix(".log") {
            let service = String(entry.dropLast(4))
            let path = directory + "/" + entry
            guard service != "spirit", service != "sentinel", let status = try? Kernel.status(path), status.isRegularFile else { continue }
            var cursor = cursors[service] ?? (status.inode, started ? 0 : status.size)
            var lines: [String] = []
            if cursor.inode != status.inode {
                if let rotated = try? Kernel.status(path + ".1"), rotated.inode == cursor.inode {
                    lines += readLines(path + ".1", from: cursor.offset, to: rotated.size).lines
                }
                cursor = (status.inode, 0)
            }
            if status.size < cursor.offset { cursor.offset = 0 }
            let (more, end) = readLines(path, from: cursor.offset, to: status.size)
            lines += more
            cursor.offset = end
            seen[service] = cursor
            for line in lines {
                if let error = LogErrors.error(in: line) {
                    out.append(Observation(signal: .serviceLogError, subject: service, evidence: ["\(entry): \(error)"]))
                }
            }
        }
        cursors = seen
        started = true
        return out
    }

    /// The whole lines of a file between two offsets (at most 256 KiB; the
    /// rest waits for the next tick), and the offset after the last one.
    func readLines(_ path: String, from start: Int64, to end: Int64) -> (lines: [String], end: Int64) {
        let count = Int(min(end - start, 256 << 10))
        guard count > 0, let fd = try? Kernel.open(path, O_RDONLY | O_CLOEXEC) else { return ([], start) }
        defer { Kernel.close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        do {
            try bytes.withMutableBytes { raw throws(SystemError) in try Kernel.read(fd, into: raw, at: start, path) }
        } catch {
            return ([], start)
        }
        guard let last = bytes.lastIndex(of: 0x0A) else {
            // One line longer than the buffer: skip it rather than stall.
            return count == 256 << 10 ? ([], start + Int64(count)) : ([], start)
        }
        let lines = bytes[...last].split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self) }
        return (lines, start + Int64(last) + 1)
    }
}
