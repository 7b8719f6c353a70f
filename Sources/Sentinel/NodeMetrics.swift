import Glibc
import SpiritCore

/// The machine and its services in Prometheus' text format: what `spirit
/// metrics` prints and the Sentinel serves on http://127.0.0.1:9100/metrics
/// (node exporter's port). `families` is pure (a test gives it readings);
/// `read` gathers them under the Sentinel's injectable root.
public enum NodeMetrics {
    public struct Service: Sendable, Equatable {
        public var summary: ServiceSummary
        /// Its cgroup's memory.current and cpu.stat usage_usec, when read.
        public var memoryBytes: UInt64?
        public var cpuMicros: UInt64?
        public init(summary: ServiceSummary, memoryBytes: UInt64? = nil, cpuMicros: UInt64? = nil) {
            self.summary = summary
            self.memoryBytes = memoryBytes
            self.cpuMicros = cpuMicros
        }
    }

    public struct Readings: Sendable, Equatable {
        public var cpu: CPUSample?
        public var memory: MemoryInfo?
        public var zram: ZramStats?
        /// The root filesystem (the RAM root): size and used, bytes.
        public var root: (size: UInt64, used: UInt64)?
        public var interfaces: [InterfaceCounters] = []
        public var pressure: [String: Pressure] = [:]
        public var services: [Service] = []
        public var uptimeSeconds: Double?
        public init() {}
        public static func == (a: Readings, b: Readings) -> Bool {
            a.cpu == b.cpu && a.memory == b.memory && a.zram == b.zram && a.root?.size == b.root?.size && a.root?.used == b.root?.used
                && a.interfaces == b.interfaces && a.pressure == b.pressure && a.services == b.services && a.uptimeSeconds == b.uptimeSeconds
        }
    }

    /// USER_HZ: /proc/stat counts in 1/100 s on every Linux Spirit runs on.
    static let ticksPerSecond = 100.0
    static let cpuModes = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
    /// The supervisor's states, each a 0/1 series (as node exporter's systemd collector does).
    static let states = ["stopped", "waiting", "starting", "running", "backoff", "stopping", "failed"]

    public static func families(_ readings: Readings) -> [MetricFamily] {
        typealias Sample = MetricFamily.Sample
        var families: [MetricFamily] = []
        if let cpu = readings.cpu {
            families.append(.init("spirit_cpu_seconds_total", .counter, "Time all CPUs spent in each mode since boot (/proc/stat).",
                                  zip(cpuModes, cpu.all.fields).map { Sample([("mode", $0)], Double($1) / ticksPerSecond) }))
            families.append(.init("spirit_cpus", .gauge, "CPUs online.", [Sample([], Double(cpu.cores.count))]))
        }
        if let memory = readings.memory {
            families.append(.init("spirit_memory_bytes", .gauge, "Memory as /proc/meminfo says: total, available (MemAvailable), shared (tmpfs, the RAM root's files).",
                                  [Sample([("kind", "total")], Double(memory.total)), Sample([("kind", "available")], Double(memory.available)),
                                   Sample([("kind", "shared")], Double(memory.shared))]))
        }
        if let zram = readings.zram {
            families.append(.init("spirit_zram_bytes", .gauge, "The zram device under the RAM root's writable layer: data stored, compressed, RAM used.",
                                  [Sample([("kind", "original")], Double(zram.original)), Sample([("kind", "compressed")], Double(zram.compressed)),
                                   Sample([("kind", "memory_used")], Double(zram.memoryUsed))]))
        }
        if let root = readings.root {
            families.append(.init("spirit_root_bytes", .gauge, "The root filesystem (the RAM root): size and used.",
                                  [Sample([("kind", "size")], Double(root.size)), Sample([("kind", "used")], Double(root.used))]))
        }
        if !readings.interfaces.isEmpty {
            families.append(.init("spirit_network_bytes_total", .counter, "Bytes received and sent by each network interface.",
                                  readings.interfaces.flatMap {
                                      [Sample([("interface", $0.name), ("direction", "receive")], Double($0.rxBytes)),
                                       Sample([("interface", $0.name), ("direction", "transmit")], Double($0.txBytes))]
                                  }))
        }
        let resources = readings.pressure.keys.sorted()
        if !resources.isEmpty {
            families.append(.init("spirit_pressure_stalled_seconds_total", .counter, "Time tasks stalled on a resource (PSI), some or all of them.",
                                  resources.flatMap { resource -> [Sample] in
                                      let pressure = readings.pressure[resource]!
                                      return [Sample([("resource", resource), ("kind", "some")], Double(pressure.some.total) / 1_000_000)]
                                          + (pressure.full.map { [Sample([("resource", resource), ("kind", "full")], Double($0.total) / 1_000_000)] } ?? [])
                                  }))
            families.append(.init("spirit_pressure_avg10_ratio", .gauge, "The share of the last 10 s tasks stalled on a resource (PSI avg10 / 100).",
                                  resources.flatMap { resource -> [Sample] in
                                      let pressure = readings.pressure[resource]!
                                      return [Sample([("resource", resource), ("kind", "some")], pressure.some.avg10 / 100)]
                                          + (pressure.full.map { [Sample([("resource", resource), ("kind", "full")], $0.avg10 / 100)] } ?? [])
                                  }))
        }
        if let uptime = readings.uptimeSeconds {
            families.append(.init("spirit_uptime_seconds", .gauge, "Seconds since the kernel started (CLOCK_BOOTTIME).", [Sample([], uptime)]))
        }
        let services = readings.services.sorted { $0.summary.name < $1.summary.name }
        if !services.isEmpty {
            families.append(.init("spirit_service_up", .gauge, "1 when the supervisor has the service running and ready.",
                                  services.map { Sample([("service", $0.summary.name)], $0.summary.state == "running" ? 1 : 0) }))
            families.append(.init("spirit_service_state", .gauge, "The service's state in the supervisor, one series a state (1: the one it is in).",
                                  services.flatMap { service in
                                      states.map { Sample([("service", service.summary.name), ("state", $0)], service.summary.state == $0 ? 1 : 0) }
                                  }))
            families.append(.init("spirit_service_restarts_total", .counter, "Times the supervisor started the service again after it ended by itself.",
                                  services.map { Sample([("service", $0.summary.name)], Double($0.summary.restarts)) }))
            families.append(.init("spirit_service_memory_bytes", .gauge, "The service's cgroup memory.current.",
                                  services.compactMap { service in service.memoryBytes.map { Sample([("service", service.summary.name)], Double($0)) } }))
            families.append(.init("spirit_service_cpu_seconds_total", .counter, "CPU time of the service's cgroup (cpu.stat usage_usec).",
                                  services.compactMap { service in service.cpuMicros.map { Sample([("service", service.summary.name)], Double($0) / 1_000_000) } }))
        }
        return families
    }

    /// cpu.stat's `usage_usec`.
    public static func usageMicros(cpuStat: String) -> UInt64? {
        for line in cpuStat.split(separator: "\n") where line.hasPrefix("usage_usec ") {
            return UInt64(line.dropFirst("usage_usec ".count).trimmed)
        }
        return nil
    }

    /// Everything under the Sentinel's root; what is missing is left out.
    public static func read(paths: SentinelPaths, services: [ServiceSummary]) -> Readings {
        let proc = paths.root + "/proc"
        var readings = Readings()
        readings.cpu = (try? Kernel.readText(proc + "/stat")).flatMap { try? CPUSample.parse($0) }
        readings.memory = (try? Kernel.readText(proc + "/meminfo")).flatMap { try? MemoryInfo.parse($0) }
        readings.zram = (try? Kernel.readText(paths.zramStats)).flatMap { try? ZramStats.parse($0) }
        if let stats = try? Kernel.fileSystemStats(paths.filesystem) {
            readings.root = (UInt64(max(0, stats.totalBytes)), UInt64(max(0, stats.totalBytes - stats.freeBytes)))
        }
        readings.interfaces = (try? Kernel.readText(proc + "/net/dev")).flatMap { try? InterfaceCounters.parseNetDev($0) }?
            .filter { $0.name != "lo" } ?? []
        for resource in ["cpu", "memory", "io"] {
            let path = paths.pressure + "/" + resource
            if let text = try? Kernel.readText(path), let pressure = try? Pressure.parse(text, source: path) { readings.pressure[resource] = pressure }
        }
        readings.uptimeSeconds = paths.root.isEmpty ? Double(Kernel.bootTimeMicros()) / 1_000_000 : nil
        readings.services = services.map { summary in
            let cgroup = paths.serviceCgroups + "/" + summary.name
            return Service(summary: summary,
                           memoryBytes: (try? Kernel.readText(cgroup + "/memory.current")).flatMap { UInt64($0.trimmed) },
                           cpuMicros: (try? Kernel.readText(cgroup + "/cpu.stat")).flatMap(usageMicros))
        }
        return readings
    }
}
