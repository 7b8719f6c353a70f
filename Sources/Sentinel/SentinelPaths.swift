/// Every path the Sentinel reads or writes, under one injectable root
/// (`""` on a Spirit machine; a test directory in host tests), so that a
/// test feeds it fake /proc, /sys and /dev/kmsg files (STYLE.md, lesson 4).
public struct SentinelPaths: Sendable, Equatable {
    public var root: String

    public init(root: String = "") {
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    public var rules: String { root + "/etc/spirit/sentinel/rules.toml" }
    /// The service files, for their `[sentinel]` tables.
    public var services: String { root + "/etc/spirit/services" }
    public var pressure: String { root + "/proc/pressure" }
    /// The supervisor's cgroups: one directory a service.
    public var serviceCgroups: String { root + "/sys/fs/cgroup/spirit" }
    public var thermal: String { root + "/sys/class/thermal" }
    public var kmsg: String { root + "/dev/kmsg" }
    public var meminfo: String { root + "/proc/meminfo" }
    /// The zram device under the RAM root's writable layer.
    public var zramStats: String { root + "/sys/block/zram0/mm_stat" }
    /// The services' logs, NAME.log (and NAME.log.1, the rotated one).
    public var serviceLogs: String { root + "/run/log" }
    /// What `/` is: the RAM root (its statvfs gives `root.used-percent`).
    public var filesystem: String { root.isEmpty ? "/" : root }
    /// The supervisor's control socket (its `status json`, its `restart`).
    public var supervisorControl: String { root + "/run/spirit/control.sock" }
    /// The Sentinel's own: `spiritctl sentinel`.
    public var control: String { root + "/run/spirit/sentinel.sock" }
    /// Every incident as it fires and as it resolves, one JSON object a line.
    public var log: String { root + "/run/log/sentinel.jsonl" }
}
