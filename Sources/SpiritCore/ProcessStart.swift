import Glibc

/// When a process started, from /proc/PID/stat: the step of the timeline
/// that a process cannot measure from its own main (its exec and its
/// start-up before main, which under TCG, from a cold squashfs, is
/// hundreds of milliseconds for a 24 MB binary).
public enum ProcessStart {
    /// Field 22, `starttime`: clock ticks since boot on CLOCK_BOOTTIME (the
    /// fork's moment; its exec follows at once in a spawn), in µs. The name
    /// in parentheses (field 2) may hold spaces and parentheses, so the
    /// fields are counted after its last ")".
    public static func micros(stat: String, ticksPerSecond: Int64) -> Int64? {
        guard ticksPerSecond > 0, let close = stat.utf8.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (the state).
        guard fields.count > 19, let ticks = Int64(fields[19]), ticks >= 0 else { return nil }
        return ticks * 1_000_000 / ticksPerSecond
    }

    /// This process's start, or nil if /proc cannot say.
    public static func ofThisProcess() -> Int64? {
        guard let stat = try? Kernel.readText("/proc/self/stat") else { return nil }
        return micros(stat: stat, ticksPerSecond: Int64(sysconf(Int32(_SC_CLK_TCK))))
    }
}
