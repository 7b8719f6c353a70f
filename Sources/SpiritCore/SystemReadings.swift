/// What Spirit's daemons read of one another and of the kernel: the
/// supervisor's `status json` (the HUD's services widget and the Sentinel)
/// and /dev/kmsg records (the HUD's kernel log widget and the Sentinel's
/// kernel collector). Here, on SpiritCore, because daemons never import one
/// another.

/// Readings of /proc, /sys or another daemon that could not be understood:
/// the source and what is wrong (the HUD shows it instead of its numbers).
public struct SampleError: Error, Sendable, Equatable, CustomStringConvertible {
    public var source: String
    public var reason: String

    public init(_ source: String, _ reason: String) {
        self.source = source
        self.reason = reason
    }

    public var description: String { "\(source): \(reason)" }
}

// MARK: The supervisor's services (`spiritctl status --json`)

/// One service as the supervisor's status reports it.
public struct ServiceSummary: Sendable, Equatable {
    public var name: String
    public var state: String
    public var pid: Int?
    public var restarts: Int
    public var ready: Bool
    public var enabled: Bool
    /// Why it is in this state, when the supervisor says (`last_exit`, `detail`).
    public var why: String?

    /// The start of the detail of a service not ready within its
    /// ready-timeout: settled for `spirit: ready`, though its state still
    /// says "starting".
    public static let notReadyInTime = "not ready after"

    /// Starting, and past its ready-timeout (`notReadyInTime`).
    public var isOverdue: Bool { state == "starting" && why?.hasPrefix(Self.notReadyInTime) == true }

    /// Failed, or restarting: what the bubble counts as an alert.
    public var isAlert: Bool { state == "failed" || state == "backoff" }

    public init(name: String, state: String, pid: Int? = nil, restarts: Int = 0, ready: Bool = false, enabled: Bool = true, why: String? = nil) {
        self.name = name
        self.state = state
        self.pid = pid
        self.restarts = restarts
        self.ready = ready
        self.enabled = enabled
        self.why = why
    }

    /// The body of a `status json` answer on /run/spirit/control.sock
    /// (Supervisor's `StatusReport.json`): `{"now_ms":…,"services":[{"name",
    /// "state","pid","restarts","ready","enabled","since_ms","last_exit"?,
    /// "detail"?}…]}`. The control protocol's `ok` line, if still there, is skipped.
    public static func parse(_ text: String) throws(SampleError) -> [ServiceSummary] {
        var body = Substring(text)
        if body.hasPrefix("ok\n") { body = body.dropFirst(3) }
        let document: JSONValue
        do {
            document = try JSONReader.parse(String(body))
        } catch {
            throw SampleError("spiritctl status --json", "\(error)")
        }
        guard case .array(let items)? = document["services"] else {
            throw SampleError("spiritctl status --json", "no \"services\" list")
        }
        var out: [ServiceSummary] = []
        for (index, item) in items.enumerated() {
            guard let name = item["name"]?.string, let state = item["state"]?.string else {
                throw SampleError("spiritctl status --json", "service \(index + 1) has no name or state")
            }
            func flag(_ key: String) -> Bool { if case .bool(let value)? = item[key] { value } else { false } }
            let reasons = [item["detail"]?.string, item["last_exit"]?.string].compactMap { $0 }.filter { !$0.isEmpty }
            out.append(ServiceSummary(name: name, state: state, pid: item["pid"]?.integer.map { Int($0) },
                                      restarts: Int(item["restarts"]?.integer ?? 0), ready: flag("ready"),
                                      enabled: item["enabled"] == nil ? true : flag("enabled"),
                                      why: reasons.isEmpty ? nil : reasons.joined(separator: "; ")))
        }
        return out
    }

    /// Why the supervisor's services could not be read.
    public enum Unread: Error, Sendable, Equatable {
        /// The supervisor answered an error, or nothing: its code
        /// (ControlChannel.silentCode when it was there but silent, 111
        /// when it could not be reached) and what was said.
        case refused(code: Int32, message: String)
        /// Its answer did not parse.
        case broken(SampleError)

        /// As a reading that failed: a refusal under `source`'s name, a
        /// broken answer as it is.
        public func sample(source: String) -> SampleError {
            switch self {
            case .refused(_, let message): SampleError(source, message)
            case .broken(let why): why
            }
        }
    }

    /// The supervisor's services: `status json` on its control socket,
    /// parsed. One query for the commands (`spirit layer add`, the upgrade's
    /// health check), the HUD and the Sentinel, each of which words its own
    /// errors. `idleMilliseconds`: see ControlChannel.send.
    public static func query(socket: String, idleMilliseconds: Int? = nil) throws(Unread) -> [ServiceSummary] {
        var body: [UInt8] = []
        let head = ControlChannel.send("status json", to: socket, server: "supervisor", idleMilliseconds: idleMilliseconds) { chunk in
            body += chunk
            return true
        }
        if case .error(let code, let message) = head { throw .refused(code: code, message: message) }
        do throws(SampleError) {
            return try parse(String(decoding: body, as: UTF8.self))
        } catch {
            throw .broken(error)
        }
    }
}

// MARK: The kernel log (/dev/kmsg)

/// One record of /dev/kmsg: `priority,sequence,microseconds,flags;message`,
/// then continuation lines (` KEY=value`) that the HUD does not show.
public struct KernelLogLine: Sendable, Equatable {
    /// 0 (emergency) to 7 (debug).
    public var level: Int
    public var sequence: UInt64
    public var micros: UInt64
    public var message: String

    public init(level: Int, sequence: UInt64, micros: UInt64, message: String) {
        self.level = level
        self.sequence = sequence
        self.micros = micros
        self.message = message
    }

    /// Errors and worse (levels 0–3): shown in the warning colour.
    public var isError: Bool { level <= 3 }

    /// `[    1.234567] message`, as dmesg prints it.
    public var text: String {
        let seconds = String(micros / 1_000_000)
        let fraction = String(micros % 1_000_000)
        return "[" + String(repeating: " ", count: max(0, 5 - seconds.count)) + seconds + "."
            + String(repeating: "0", count: 6 - fraction.count) + fraction + "] " + message
    }

    /// One record as a read of /dev/kmsg returns it. The kernel escapes
    /// unprintable bytes as `\xNN`; they are decoded, and control
    /// characters become spaces so a line stays one line.
    public static func parse(_ record: String) throws(SampleError) -> KernelLogLine {
        let firstLine = record.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard let semicolon = firstLine.firstIndex(of: ";") else {
            throw SampleError("/dev/kmsg", "'\(firstLine)' has no ';' after its prefix")
        }
        let prefix = firstLine[..<semicolon].split(separator: ",", omittingEmptySubsequences: false)
        guard prefix.count >= 4, let priority = Int(prefix[0]), let sequence = UInt64(prefix[1]), let micros = UInt64(prefix[2]) else {
            throw SampleError("/dev/kmsg", "'\(firstLine[..<semicolon])' is not priority,sequence,microseconds,flags")
        }
        return KernelLogLine(level: priority & 7, sequence: sequence, micros: micros,
                             message: unescape(firstLine[firstLine.index(after: semicolon)...]))
    }

    static func unescape(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        let utf8 = Array(text.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count, utf8[index + 1] == UInt8(ascii: "x"),
               let value = UInt8(String(decoding: utf8[(index + 2)...(index + 3)], as: UTF8.self), radix: 16) {
                bytes.append(value < 0x20 || value == 0x7F ? 0x20 : value)
                index += 4
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

// MARK: CPU (/proc/stat)

/// One `cpu` or `cpuN` line of /proc/stat, in clock ticks since boot.
public struct CPUTimes: Sendable, Equatable {
    public var name: String
    /// user nice system idle iowait irq softirq steal (guest time is
    /// already inside user and nice, so it is not added again).
    public var fields: [UInt64]

    public var total: UInt64 { fields.prefix(8).reduce(0, &+) }
    /// Idle and waiting for I/O: the CPU had nothing to run.
    public var idle: UInt64 { fields[3] &+ (fields.count > 4 ? fields[4] : 0) }

    /// The busy fraction (0–1) between `earlier` and this reading; 0 when
    /// no time passed or the counters went back (a CPU taken offline).
    public func busy(since earlier: CPUTimes) -> Double {
        guard total > earlier.total, idle >= earlier.idle else { return 0 }
        let elapsed = total - earlier.total, idled = idle - earlier.idle
        return idled >= elapsed ? 0 : Double(elapsed - idled) / Double(elapsed)
    }
}

/// A reading of /proc/stat: all CPUs together and each core.
public struct CPUSample: Sendable, Equatable {
    public var all: CPUTimes
    public var cores: [CPUTimes]

    public static func parse(_ text: String) throws(SampleError) -> CPUSample {
        var all: CPUTimes? = nil
        var cores: [CPUTimes] = []
        for (index, line) in text.split(separator: "\n").enumerated() where line.hasPrefix("cpu") {
            let words = line.split(separator: " ")
            let values = words.dropFirst().map { UInt64($0) }
            guard values.count >= 4, values.allSatisfy({ $0 != nil }) else {
                throw SampleError("/proc/stat", "line \(index + 1): '\(line)' is not a cpu line of at least 4 numbers")
            }
            let times = CPUTimes(name: String(words[0]), fields: values.map { $0! })
            if times.name == "cpu" { all = times } else { cores.append(times) }
        }
        guard let all else { throw SampleError("/proc/stat", "no 'cpu' line") }
        return CPUSample(all: all, cores: cores)
    }

    /// Busy fractions between two readings: all CPUs, then each core of
    /// this reading (a core missing from `earlier` reads 0).
    public func usage(since earlier: CPUSample) -> (all: Double, cores: [Double]) {
        let before = Dictionary(earlier.cores.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        return (all.busy(since: earlier.all), cores.map { core in before[core.name].map { core.busy(since: $0) } ?? 0 })
    }
}

// MARK: Memory (/proc/meminfo, zram)

/// /proc/meminfo, in bytes.
public struct MemoryInfo: Sendable, Equatable {
    public var fields: [String: UInt64]

    public var total: UInt64 { fields["MemTotal"] ?? 0 }
    /// What programs could still get without swapping (the kernel's estimate).
    public var available: UInt64 { fields["MemAvailable"] ?? fields["MemFree"] ?? 0 }
    public var used: UInt64 { total > available ? total - available : 0 }
    /// tmpfs and shared memory: in a RAM-booted system, largely the root's files.
    public var shared: UInt64 { fields["Shmem"] ?? 0 }
    public var usedFraction: Double { total == 0 ? 0 : Double(used) / Double(total) }

    public static func parse(_ text: String) throws(SampleError) -> MemoryInfo {
        var fields: [String: UInt64] = [:]
        for (index, line) in text.split(separator: "\n").enumerated() {
            guard let colon = line.firstIndex(of: ":") else {
                throw SampleError("/proc/meminfo", "line \(index + 1): '\(line)' has no ':'")
            }
            let words = line[line.index(after: colon)...].split(separator: " ")
            guard let first = words.first, let number = UInt64(first), words.count <= 2 else {
                throw SampleError("/proc/meminfo", "line \(index + 1): '\(line)' is not 'Name: number [kB]'")
            }
            let unit: UInt64 = words.count == 2 && words[1] == "kB" ? 1024 : 1
            guard words.count == 1 || unit == 1024 else {
                throw SampleError("/proc/meminfo", "line \(index + 1): unknown unit '\(words[1])'")
            }
            fields[String(line[..<colon])] = number &* unit
        }
        guard fields["MemTotal"] != nil else { throw SampleError("/proc/meminfo", "no MemTotal") }
        return MemoryInfo(fields: fields)
    }
}

/// /sys/block/zramN/mm_stat: how much the zram device holds before and
/// after compression — the RAM root's upper layer, this distribution's point.
/// `orig_data_size compr_data_size mem_used_total mem_limit mem_used_max
/// same_pages pages_compacted huge_pages [huge_pages_since]`, in bytes and
/// pages. Read by the HUD's memory widget, the Sentinel and `spirit metrics`.
public struct ZramStats: Sendable, Equatable {
    /// Bytes written to the device (uncompressed).
    public var original: UInt64
    /// Those bytes compressed.
    public var compressed: UInt64
    /// RAM the device really takes, with its allocator's overhead.
    public var memoryUsed: UInt64
    /// 0: no limit.
    public var memoryLimit: UInt64

    public init(original: UInt64, compressed: UInt64, memoryUsed: UInt64, memoryLimit: UInt64 = 0) {
        self.original = original
        self.compressed = compressed
        self.memoryUsed = memoryUsed
        self.memoryLimit = memoryLimit
    }

    /// original / memory used; 0 for an empty device.
    public var ratio: Double { memoryUsed == 0 ? 0 : Double(original) / Double(memoryUsed) }

    public static func parse(_ text: String) throws(SampleError) -> ZramStats {
        let numbers = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map { UInt64($0) }
        guard numbers.count >= 3, numbers.allSatisfy({ $0 != nil }) else {
            throw SampleError("mm_stat", "'\(text.trimmed)' is not a line of at least 3 numbers")
        }
        return ZramStats(original: numbers[0]!, compressed: numbers[1]!, memoryUsed: numbers[2]!, memoryLimit: numbers.count > 3 ? numbers[3]! : 0)
    }
}

// MARK: Network (/proc/net/dev, /sys/class/net)

/// One interface's byte counters.
public struct InterfaceCounters: Sendable, Equatable {
    public var name: String
    public var rxBytes: UInt64
    public var txBytes: UInt64

    public init(name: String, rxBytes: UInt64, txBytes: UInt64) {
        self.name = name
        self.rxBytes = rxBytes
        self.txBytes = txBytes
    }

    /// From /sys/class/net/<name>/statistics/rx_bytes and tx_bytes.
    public init(name: String, rxBytesText: String, txBytesText: String) throws(SampleError) {
        guard let rx = UInt64(rxBytesText.trimmed), let tx = UInt64(txBytesText.trimmed) else {
            throw SampleError("/sys/class/net/\(name)/statistics", "rx_bytes '\(rxBytesText.trimmed)' or tx_bytes '\(txBytesText.trimmed)' is not a number")
        }
        self.init(name: name, rxBytes: rx, txBytes: tx)
    }

    /// Every interface of /proc/net/dev (one read for all of them):
    /// `name: rx_bytes packets errs drop fifo frame compressed multicast tx_bytes …`.
    public static func parseNetDev(_ text: String) throws(SampleError) -> [InterfaceCounters] {
        var out: [InterfaceCounters] = []
        for (index, line) in text.split(separator: "\n").enumerated() where line.contains(":") {
            let parts = line.split(separator: ":", maxSplits: 1)
            let numbers = parts.count == 2 ? parts[1].split(separator: " ").map { UInt64($0) } : []
            guard numbers.count >= 9, numbers.allSatisfy({ $0 != nil }) else {
                throw SampleError("/proc/net/dev", "line \(index + 1): '\(line)' is not 'name: 16 counters'")
            }
            out.append(InterfaceCounters(name: parts[0].trimmed, rxBytes: numbers[0]!, txBytes: numbers[8]!))
        }
        return out
    }

    /// Bytes a second received and sent since `earlier`, over
    /// `elapsedMicros`; a counter that went back (the interface was
    /// recreated) reads 0.
    public func rates(since earlier: InterfaceCounters, elapsedMicros: Int64) -> (rx: Double, tx: Double) {
        guard elapsedMicros > 0 else { return (0, 0) }
        func rate(_ now: UInt64, _ then: UInt64) -> Double {
            now >= then ? Double(now - then) * 1_000_000 / Double(elapsedMicros) : 0
        }
        return (rate(rxBytes, earlier.rxBytes), rate(txBytes, earlier.txBytes))
    }
}

/// Sizes and rates for people: 1024-based, short enough for a narrow
/// panel — one decimal below 10, none above (`512 B`, `3.4 KiB`, `12 MiB`,
/// `1.2 GiB`).
public func formatBytes(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var value = Double(bytes), unit = 0
    while value >= 1024, unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    if unit == 0 { return "\(bytes) B" }
    let tenths = Int((value * 10).rounded())
    return tenths >= 100 ? "\(Int(value.rounded())) \(units[unit])" : "\(tenths / 10).\(tenths % 10) \(units[unit])"
}

/// A percentage with no decimals, right-aligned in 4 columns (`  7%`, `100%`).
public func formatPercent(_ fraction: Double) -> String {
    let percent = Int((min(max(fraction.isNaN ? 0 : fraction, 0), 1) * 100).rounded())
    let text = "\(percent)%"
    return String(repeating: " ", count: max(0, 4 - text.count)) + text
}
