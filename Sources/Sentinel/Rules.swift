import SpiritCore

/// What a rule can watch. A *gauge* holds the last value a collector read
/// (per service or for the system); an *event* signal is counted over the
/// rule's `within-seconds` window.
public enum SignalKind: String, Sendable, CaseIterable, Comparable {
    /// 1 while the supervisor shows the service `failed` (its crash-loop limit), else 0.
    case serviceFailed = "service.failed"
    /// Restarts of a service not `failed` (the supervisor's `restarts` going up).
    case serviceRestart = "service.restart"
    case kmsgOOMKill = "kmsg.oom-kill"
    case kmsgSegfault = "kmsg.segfault"
    case kmsgIOError = "kmsg.io-error"
    case kmsgExt4Error = "kmsg.ext4-error"
    case kmsgSquashfsError = "kmsg.squashfs-error"
    case kmsgHungTask = "kmsg.hung-task"
    case kmsgThermalThrottle = "kmsg.thermal-throttle"
    /// /proc/pressure/*, in percent.
    case psiCPUSomeAvg10 = "psi.cpu.some.avg10"
    case psiCPUSomeAvg60 = "psi.cpu.some.avg60"
    case psiMemorySomeAvg10 = "psi.memory.some.avg10"
    case psiMemoryFullAvg10 = "psi.memory.full.avg10"
    case psiIOSomeAvg10 = "psi.io.some.avg10"
    case psiIOFullAvg10 = "psi.io.full.avg10"
    /// A service's own memory.pressure, in percent.
    case serviceMemorySomeAvg10 = "service.memory.some.avg10"
    case serviceMemoryFullAvg10 = "service.memory.full.avg10"
    /// A service's memory.events `oom_kill` going up.
    case serviceOOMKill = "service.oom-kill"
    /// A line in a service's log that reports an error (`LogErrors`).
    case serviceLogError = "service.log-error"
    /// How full `/` (the RAM root) is, in percent.
    case rootUsedPercent = "root.used-percent"
    /// The highest trip level any thermal zone reached: 0, 1 (passive or
    /// active), 2 (hot or critical).
    case thermalTrip = "thermal.trip"
    /// The RAM the RAM root's zram device takes, in percent of MemTotal.
    case zramRAMPercent = "zram.ram-percent"

    public var isEvent: Bool {
        switch self {
        case .serviceRestart, .kmsgOOMKill, .kmsgSegfault, .kmsgIOError, .kmsgExt4Error, .kmsgSquashfsError, .kmsgHungTask,
             .kmsgThermalThrottle, .serviceOOMKill, .serviceLogError: true
        default: false
        }
    }

    public static func < (a: SignalKind, b: SignalKind) -> Bool { a.rawValue < b.rawValue }
}

/// One thing a collector saw: an event (counted) or a gauge's value, for a
/// service (`subject`) or for the system (nil), with the lines that show it.
public struct Observation: Sendable, Equatable {
    public var signal: SignalKind
    public var subject: String?
    public var value: Double
    public var evidence: [String]

    public init(signal: SignalKind, subject: String?, value: Double = 1, evidence: [String] = []) {
        self.signal = signal
        self.subject = subject
        self.value = value
        self.evidence = evidence
    }
}

public enum Severity: String, Sendable, CaseIterable, Comparable {
    case info, warning, critical

    public static func < (a: Severity, b: Severity) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// What a rule asks for when it fires; policy decides whether it happens.
public enum RuleAction: String, Sendable, CaseIterable {
    /// Record and show; change nothing (the default).
    case advise
    /// Restart the incident's service through the supervisor (if it opted in
    /// with `auto-restart = ["RULE"]`).
    case restart
    /// Restart the opted-in service (`pressure-kill = true`) using the most
    /// memory: systemd-oomd's kill, through the supervisor.
    case restartLargest = "restart-largest"
}

/// A rule: `signal` compared with a threshold, true for `for` before it
/// fires, kept firing for `keep-firing-for` after it stops being true.
public struct Rule: Sendable, Equatable {
    public enum Comparison: String, Sendable { case above, atLeast = "at-least" }

    public var id: String
    public var signal: SignalKind
    public var comparison: Comparison
    public var threshold: Double
    /// Event signals: the window they are counted over.
    public var windowMillis: Int64
    public var forMillis: Int64
    public var keepFiringForMillis: Int64
    public var severity: Severity
    public var action: RuleAction
    /// What to do about it, for the explanation.
    public var advice: String

    public init(id: String, signal: SignalKind, comparison: Comparison, threshold: Double, windowMillis: Int64 = 60_000, forMillis: Int64 = 0,
                keepFiringForMillis: Int64 = 0, severity: Severity, action: RuleAction = .advise, advice: String = "") {
        self.id = id
        self.signal = signal
        self.comparison = comparison
        self.threshold = threshold
        self.windowMillis = windowMillis
        self.forMillis = forMillis
        self.keepFiringForMillis = keepFiringForMillis
        self.severity = severity
        self.action = action
        self.advice = advice
    }

    public func holds(_ value: Double) -> Bool {
        comparison == .above ? value > threshold : value >= threshold
    }

    /// `psi.memory.some.avg10 above 10`, as explanations say it.
    public var condition: String {
        let number = threshold == threshold.rounded() ? String(Int64(threshold)) : String(threshold)
        return "\(signal.rawValue) \(comparison.rawValue) \(number)"
            + (signal.isEvent ? " within \(windowMillis / 1000) s" : "")
    }
}

/// /etc/spirit/sentinel/rules.toml: one table per rule, named by its id,
/// in the strict TOML subset of service files (SpiritCore's ConfigFile):
///
///     [memory-pressure]
///     signal = "psi.memory.some.avg10"
///     above = 10                   # or at-least = N
///     for-seconds = 30
///     keep-firing-for-seconds = 60
///     within-seconds = 60          # event signals only: the counting window
///     severity = "warning"         # info, warning, critical
///     action = "advise"            # advise, restart, restart-largest
///     advice = "what a person should do"
public enum RuleFile {
    static let fields: Set<String> = [
        "signal", "above", "at-least", "for-seconds", "keep-firing-for-seconds", "within-seconds", "severity", "action", "advice",
    ]

    public static func parse(_ text: String, path: String) throws(ConfigError) -> [Rule] {
        let file = try ConfigFile.parse(text, path: path)
        for entry in file.entries {
            let parts = entry.key.split(separator: ".", maxSplits: 1)
            guard parts.count == 2 else {
                throw file.error(entry, "outside a rule: every field goes under a [rule-id] table")
            }
            guard fields.contains(String(parts[1])) else {
                throw file.error(entry, "unknown field (known: \(fields.sorted().joined(separator: ", ")))")
            }
        }
        var rules: [Rule] = []
        for table in file.tables {
            let id = table.name
            guard !id.contains(".") else {
                throw ConfigError(path: path, line: table.line, field: id, "a rule id is letters, digits, '-' and '_' (no dots)")
            }
            func key(_ name: String) -> String { id + "." + name }
            guard let (signalName, signalEntry) = try file.string(key("signal")) else {
                throw ConfigError(path: path, line: table.line, field: key("signal"), "missing: every rule watches one signal")
            }
            guard let signal = SignalKind(rawValue: signalName) else {
                throw file.error(signalEntry, "unknown signal '\(signalName)' (known: \(SignalKind.allCases.map(\.rawValue).sorted().joined(separator: ", ")))")
            }
            let above = try file.integer(key("above"), in: 0...1_000_000)
            let atLeast = try file.integer(key("at-least"), in: 1...1_000_000)
            let comparison: Rule.Comparison
            let threshold: Int64
            switch (above, atLeast) {
            case (let value?, nil): (comparison, threshold) = (.above, value)
            case (nil, let value?): (comparison, threshold) = (.atLeast, value)
            case (_?, _?): throw file.error(file[key("at-least")]!, "a rule has either above or at-least, not both")
            case (nil, nil): throw ConfigError(path: path, line: table.line, field: key("above"), "missing: a rule needs above = N or at-least = N")
            }
            let window = try file.integer(key("within-seconds"), in: 1...86_400)
            if window != nil, !signal.isEvent {
                throw file.error(file[key("within-seconds")]!, "only event signals (kmsg.*, service.restart, service.oom-kill, service.log-error) are counted within a window")
            }
            let severity: Severity
            if let (name, entry) = try file.string(key("severity")) {
                guard let value = Severity(rawValue: name) else { throw file.error(entry, "'\(name)' is not info, warning or critical") }
                severity = value
            } else {
                throw ConfigError(path: path, line: table.line, field: key("severity"), "missing: info, warning or critical")
            }
            var action = RuleAction.advise
            if let (name, entry) = try file.string(key("action")) {
                guard let value = RuleAction(rawValue: name) else {
                    throw file.error(entry, "'\(name)' is not \(RuleAction.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                action = value
            }
            rules.append(Rule(id: id, signal: signal, comparison: comparison, threshold: Double(threshold),
                              windowMillis: (window ?? 60) * 1000,
                              forMillis: (try file.integer(key("for-seconds"), in: 0...86_400) ?? 0) * 1000,
                              keepFiringForMillis: (try file.integer(key("keep-firing-for-seconds"), in: 0...86_400) ?? 0) * 1000,
                              severity: severity, action: action, advice: try file.string(key("advice"))?.value ?? ""))
        }
        return rules
    }
}
