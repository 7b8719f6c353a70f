import SpiritCore

/// One `some` or `full` line of a pressure file: the share of time (in
/// percent) some or all tasks were stalled, over 10 s, 60 s and 300 s, and
/// the total stall time in microseconds.
public struct PressureLine: Sendable, Equatable {
    public var avg10: Double
    public var avg60: Double
    public var avg300: Double
    public var total: UInt64

    public init(avg10: Double, avg60: Double, avg300: Double, total: UInt64) {
        self.avg10 = avg10
        self.avg60 = avg60
        self.avg300 = avg300
        self.total = total
    }
}

/// /proc/pressure/{cpu,memory,io} and a cgroup's memory.pressure:
/// `some avg10=1.53 avg60=0.87 avg300=0.22 total=4315227` and a `full` line
/// (/proc/pressure/cpu has a `full` line of zeros since Linux 5.13).
public struct Pressure: Sendable, Equatable {
    public var some: PressureLine
    public var full: PressureLine?

    public init(some: PressureLine, full: PressureLine? = nil) {
        self.some = some
        self.full = full
    }

    public static func parse(_ text: String, source: String) throws(SampleError) -> Pressure {
        var some: PressureLine?
        var full: PressureLine?
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            guard let kind = words.first, kind == "some" || kind == "full" else {
                throw SampleError(source, "'\(line)' is not a some or full line")
            }
            var values: [Substring: Substring] = [:]
            for word in words.dropFirst() {
                guard let equals = word.firstIndex(of: "=") else { throw SampleError(source, "'\(word)' is not key=value") }
                values[word[..<equals]] = word[word.index(after: equals)...]
            }
            guard let avg10 = values["avg10"].flatMap({ Double($0) }), let avg60 = values["avg60"].flatMap({ Double($0) }),
                  let avg300 = values["avg300"].flatMap({ Double($0) }), let total = values["total"].flatMap({ UInt64($0) }),
                  [avg10, avg60, avg300].allSatisfy({ $0 >= 0 && $0 <= 100 })
            else { throw SampleError(source, "'\(line)' needs avg10, avg60, avg300 (0–100) and total") }
            let parsed = PressureLine(avg10: avg10, avg60: avg60, avg300: avg300, total: total)
            if kind == "some" { some = parsed } else { full = parsed }
        }
        guard let some else { throw SampleError(source, "no 'some' line") }
        return Pressure(some: some, full: full)
    }
}

/// A cgroup's memory.events: `low 0`, `high 0`, `max 12`, `oom 1`,
/// `oom_kill 1`, `oom_group_kill 0`: counters since the cgroup was made.
public enum MemoryEvents {
    public static func parse(_ text: String, source: String) throws(SampleError) -> [String: UInt64] {
        var counters: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            guard words.count == 2, let value = UInt64(words[1]) else { throw SampleError(source, "'\(line)' is not 'name count'") }
            counters[String(words[0])] = value
        }
        return counters
    }
}

/// One /sys/class/thermal/thermal_zoneN: its temperature and trip points,
/// in millidegrees Celsius as the files hold them.
public struct ThermalZone: Sendable, Equatable {
    public var name: String
    public var milliCelsius: Int
    /// `trip_point_N_type` (`passive`, `active`, `hot`, `critical`) and `trip_point_N_temp`.
    public var trips: [(type: String, milliCelsius: Int)]

    public init(name: String, milliCelsius: Int, trips: [(type: String, milliCelsius: Int)] = []) {
        self.name = name
        self.milliCelsius = milliCelsius
        self.trips = trips
    }

    public static func == (a: ThermalZone, b: ThermalZone) -> Bool {
        a.name == b.name && a.milliCelsius == b.milliCelsius && a.trips.map(\.type) == b.trips.map(\.type)
            && a.trips.map(\.milliCelsius) == b.trips.map(\.milliCelsius)
    }

    /// A `temp` or `trip_point_N_temp` file: one integer.
    public static func milliCelsius(_ text: String, source: String) throws(SampleError) -> Int {
        guard let value = Int(text.trimmed) else { throw SampleError(source, "'\(text.trimmed)' is not millidegrees") }
        return value
    }

    /// The highest trip level reached: 2 at a `critical` or `hot` trip, 1 at
    /// a `passive` or `active` one, else 0 (what the `thermal.trip` signal holds).
    public var tripLevel: Int {
        trips.filter { $0.milliCelsius > 0 && milliCelsius >= $0.milliCelsius }
            .map { $0.type == "critical" || $0.type == "hot" ? 2 : 1 }.max() ?? 0
    }
}

/// The RAM root's fill from statvfs numbers: the share of the blocks that
/// a non-root writer cannot have (what `df` shows as Use%).
public func usedPercent(blocks: UInt64, free: UInt64, available: UInt64) -> Double {
    let used = blocks >= free ? blocks - free : 0
    let whole = used + available
    return whole == 0 ? 0 : Double(used) * 100 / Double(whole)
}

/// A service's log line (`12345.678 text`, as the supervisor writes
/// /run/log/NAME.log) that reports an error: a word such as `error`,
/// `fatal`, `panic` or `traceback` in any case, not negated (`no errors`,
/// `0 errors`). The supervisor's own notes (`spirit: exited with status 1`)
/// are not the service's words: the supervisor's events count those.
public enum LogErrors {
    static let words: Set<String> = ["error", "errors", "err", "fatal", "panic", "panicked", "critical", "crit", "traceback",
                                     "exception", "segfault", "emerg", "alert"]
    static let negations: Set<String> = ["no", "0", "zero", "without", "ignoring", "ignored"]

    /// The text after the stamp, when the line reports an error.
    public static func error(in line: String) -> String? {
        var text = Substring(line)
        if let space = text.firstIndex(of: " "), text[..<space].allSatisfy({ $0.isNumber || $0 == "." }) {
            text = text[text.index(after: space)...]
        }
        if text.hasPrefix("spirit: ") { return nil }
        let lowered = text.lowercased()
        let tokens = lowered.split(whereSeparator: { !($0.isLetter || $0.isNumber) })
        let said = tokens.indices.contains { index in
            words.contains(String(tokens[index])) && !(index > 0 && negations.contains(String(tokens[index - 1])))
        }
        return said || lowered.contains("segmentation fault") || lowered.contains("assertion failed") ? String(text.prefix(240)) : nil
    }
}

/// How much of the machine's RAM the zram device under the RAM root's
/// writable layer takes (mm_stat's mem_used_total against MemTotal): the
/// `zram.ram-percent` signal, with the compression ratio as evidence.
public func zramRAMPercent(_ zram: ZramStats, memoryTotal: UInt64) -> Double {
    memoryTotal == 0 ? 0 : Double(zram.memoryUsed) * 100 / Double(memoryTotal)
}
