import SpiritCore

/// What the Sentinel recognises in the kernel log, each from one
/// /dev/kmsg record's message in the format the kernel prints it (Linux
/// 6.1, Debian 12's kernel). A message it does not recognise is not an
/// event; a recognised prefix with a mangled rest is not one either.
public enum KernelEvent: Sendable, Equatable {
    /// `Out of memory: Killed process 812 (leaky) total-vm:…` (the global
    /// OOM killer) or `Memory cgroup out of memory: Killed process 812
    /// (leaky) …` (a cgroup over its `memory.max`).
    case oomKilled(pid: Int, command: String, cgroupLimit: Bool)
    /// `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,
    /// mems_allowed=0,oom_memcg=/spirit/leaky,task_memcg=/spirit/leaky,
    /// task=leaky,pid=812,uid=0`: the summary printed just before the kill,
    /// the one line that names the victim's cgroup.
    case oomSummary(pid: Int, task: String, taskCgroup: String, constraint: String)
    /// `leaky[812]: segfault at 0 ip 000055d4… sp 00007ffc… error 6 in …`.
    case segfault(pid: Int, command: String)
    /// `I/O error, dev sda, sector 2048 op 0x0:(READ) flags 0x80700 …`
    /// (with a `blk_update_request: ` prefix on older kernels).
    case ioError(device: String, sector: UInt64)
    /// `EXT4-fs error (device zram0): ext4_lookup:1855: inode #2: …`.
    case ext4Error(device: String)
    /// `SQUASHFS error: Unable to read data cache entry [2a05f]`: the image
    /// in RAM (or the medium under it) is damaged.
    case squashfsError
    /// `INFO: task kworker/0:1:57 blocked for more than 120 seconds.`
    case hungTask(command: String, pid: Int, seconds: Int)
    /// `CPU0: Package temperature is above threshold, cpu clock is throttled
    /// (total events = 12)` (older kernels: `temperature above threshold,
    /// cpu clock throttled`).
    case thermalThrottle(cpu: Int)

    /// The event in one record's message, if it is one.
    public static func parse(_ message: String) -> KernelEvent? {
        let text = Substring(message)
        for prefix in ["Out of memory: Killed process ", "Memory cgroup out of memory: Killed process "] where text.hasPrefix(prefix) {
            // `812 (leaky) total-vm:…`; a command may hold spaces and ')'.
            let rest = text.dropFirst(prefix.count)
            guard let space = rest.firstIndex(of: " "), let pid = Int(rest[..<space]),
                  rest[rest.index(after: space)...].hasPrefix("("),
                  let close = rest.firstRange(of: ") total-vm:") ?? (rest.hasSuffix(")") ? rest.index(before: rest.endIndex)..<rest.endIndex : nil)
            else { return nil }
            let open = rest.index(space, offsetBy: 2)
            guard open <= close.lowerBound else { return nil }
            return .oomKilled(pid: pid, command: String(rest[open..<close.lowerBound]), cgroupLimit: prefix.hasPrefix("Memory cgroup"))
        }
        if text.hasPrefix("oom-kill:") {
            var fields: [Substring: Substring] = [:]
            for pair in text.dropFirst("oom-kill:".count).split(separator: ",") {
                guard let equals = pair.firstIndex(of: "=") else { continue }
                fields[pair[..<equals]] = pair[pair.index(after: equals)...]
            }
            guard let constraint = fields["constraint"], let task = fields["task"], let memcg = fields["task_memcg"],
                  let pid = fields["pid"].flatMap({ Int($0) }) else { return nil }
            return .oomSummary(pid: pid, task: String(task), taskCgroup: String(memcg), constraint: String(constraint))
        }
        if let at = text.firstRange(of: ": segfault at ") {
            // `comm[pid]` before it; the command is the part before the last '['.
            let head = text[..<at.lowerBound]
            guard head.hasSuffix("]"), let open = head.lastIndex(of: "["),
                  let pid = Int(head[head.index(after: open)..<head.index(before: head.endIndex)]) else { return nil }
            return .segfault(pid: pid, command: String(head[..<open]))
        }
        if let at = text.firstRange(of: "I/O error, dev ") {
            let rest = text[at.upperBound...]
            guard let comma = rest.firstRange(of: ", sector ") else { return nil }
            let device = rest[..<comma.lowerBound]
            let number = rest[comma.upperBound...].prefix { $0.isASCII && $0.isNumber }
            guard !device.isEmpty, !device.contains(" "), let sector = UInt64(number) else { return nil }
            return .ioError(device: String(device), sector: sector)
        }
        if text.hasPrefix("EXT4-fs error (device ") {
            let rest = text.dropFirst("EXT4-fs error (device ".count)
            guard let close = rest.firstIndex(of: ")"), close > rest.startIndex else { return nil }
            return .ext4Error(device: String(rest[..<close]))
        }
        if text.hasPrefix("SQUASHFS error:") { return .squashfsError }
        if text.hasPrefix("INFO: task ") {
            // `comm:pid blocked for more than N seconds.`; a command may hold ':'.
            let rest = text.dropFirst("INFO: task ".count)
            guard let blocked = rest.firstRange(of: " blocked for more than "), let colon = rest[..<blocked.lowerBound].lastIndex(of: ":"),
                  let pid = Int(rest[rest.index(after: colon)..<blocked.lowerBound]),
                  let seconds = Int(rest[blocked.upperBound...].prefix { $0.isASCII && $0.isNumber }) else { return nil }
            return .hungTask(command: String(rest[..<colon]), pid: pid, seconds: seconds)
        }
        if text.hasPrefix("CPU"), text.contains("temperature is above threshold, cpu clock is throttled")
            || text.contains("temperature above threshold, cpu clock throttled") {
            guard let cpu = Int(text.dropFirst(3).prefix { $0.isASCII && $0.isNumber }) else { return nil }
            return .thermalThrottle(cpu: cpu)
        }
        return nil
    }

    /// The signal the rules count it under (the OOM summary is evidence for
    /// the kill that follows it, not an event of its own).
    public var signal: SignalKind? {
        switch self {
        case .oomKilled: .kmsgOOMKill
        case .oomSummary: nil
        case .segfault: .kmsgSegfault
        case .ioError: .kmsgIOError
        case .ext4Error: .kmsgExt4Error
        case .squashfsError: .kmsgSquashfsError
        case .hungTask: .kmsgHungTask
        case .thermalThrottle: .kmsgThermalThrottle
        }
    }
}

/// The supervisor runs service NAME in the cgroup `/spirit/NAME` (its
/// ProcessSpawner's `cgroupDirectory`, under /sys/fs/cgroup): the kernel
/// prints that path as `task_memcg`.
public enum ServiceCgroup {
    public static func service(_ cgroupPath: String) -> String? {
        let parts = cgroupPath.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[0].isEmpty, parts[1] == "spirit", !parts[2].isEmpty else { return nil }
        return String(parts[2])
    }
}

/// Kernel events joined into what the rules count: the `oom-kill:` summary
/// names the cgroup, the `Killed process` line that follows it names the
/// kill; the kill is recorded once, with both lines as evidence. A kill
/// whose summary was not printed (the kernel rate-limits it) or named no
/// Spirit service is the system's. Holds a few pending summaries, no more.
public struct KernelEventJoiner: Sendable {
    var summaries: [(pid: Int, service: String?, line: String)] = []

    public init() {}

    /// One record's message: the observation it makes, if any. `services`
    /// are the services' main processes (the supervisor's pids): a
    /// segfault of one is that service's, the same episode as its exit by
    /// SIGSEGV that the supervisor reports.
    public mutating func add(_ message: String, services: [Int: String] = [:]) -> Observation? {
        guard let event = KernelEvent.parse(message) else { return nil }
        switch event {
        case .segfault(let pid, _):
            return Observation(signal: .kmsgSegfault, subject: services[pid], evidence: [message])
        case .oomSummary(let pid, _, let cgroup, _):
            summaries.append((pid, ServiceCgroup.service(cgroup), message))
            if summaries.count > 8 { summaries.removeFirst() }
            return nil
        case .oomKilled(let pid, _, _):
            var evidence = [message]
            var service: String? = nil
            if let index = summaries.lastIndex(where: { $0.pid == pid }) {
                service = summaries[index].service
                evidence.insert(summaries[index].line, at: 0)
                summaries.remove(at: index)
            }
            return Observation(signal: .kmsgOOMKill, subject: service, evidence: evidence)
        default:
            return event.signal.map { Observation(signal: $0, subject: nil, evidence: [message]) }
        }
    }
}
