import SpiritCore

/// An incident as the Sentinel widget shows it: one object of the
/// Sentinel's `list json` answer (what `spiritctl sentinel --json` prints,
/// the same objects as the lines of /run/log/sentinel.jsonl). Nexus reads
/// it over the Sentinel's control socket: a daemon never imports another,
/// so the fields are read here by name.
public struct SentinelIncident: Sendable, Equatable {
    /// Ordered: the worst is the largest.
    public enum Severity: String, Sendable, Comparable, CaseIterable {
        case info, warning, critical

        public static func < (lhs: Severity, rhs: Severity) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }

        /// How it is coloured, in the widget and on the badge.
        public var tone: Tone {
            switch self {
            case .info: .accent
            case .warning: .warning
            case .critical: .failure
            }
        }
    }

    public var id: Int64
    public var rule: String
    public var severity: Severity
    /// The service, or nil for the system.
    public var service: String?
    /// When it fired, in ms of CLOCK_BOOTTIME (the Sentinel's clock).
    public var firingMillis: Int64
    public var resolved: Bool
    public var explanation: String

    public init(id: Int64, rule: String, severity: Severity, service: String?, firingMillis: Int64, resolved: Bool = false,
                explanation: String = "") {
        self.id = id
        self.rule = rule
        self.severity = severity
        self.service = service
        self.firingMillis = firingMillis
        self.resolved = resolved
        self.explanation = explanation
    }

    /// One incident object; nil for one without a rule or an id. An unknown
    /// severity reads as warning: a newer Sentinel's level is still shown.
    public init?(_ object: JSONValue) {
        guard let id = object["id"]?.integer, let rule = object["rule"]?.string else { return nil }
        self.id = id
        self.rule = rule
        severity = object["severity"]?.string.flatMap(Severity.init(rawValue:)) ?? .warning
        service = object["service"]?.string
        firingMillis = object["firing_ms"]?.integer ?? 0
        resolved = object["state"]?.string == "resolved" || object["resolved_ms"]?.integer != nil
        explanation = object["explanation"]?.string ?? ""
    }

    /// The explanation's first line without what the line above it already
    /// says: the template starts with "RULE (SEVERITY) on SUBJECT: ".
    public var summary: String {
        let first = String(explanation.prefix { $0 != "\n" }).trimmed
        let subject = service.map { "service \($0)" } ?? "the system"
        let prefix = "\(rule) (\(severity.rawValue)) on \(subject): "
        return first.hasPrefix(prefix) ? String(first.dropFirst(prefix.count)) : first
    }
}

/// The Sentinel's answer to `list json`: its clock and its incidents,
/// firing and resolved (`{"now_ms":…,"incidents":[{…},\n{…}]}`).
public struct SentinelReport: Sendable, Equatable {
    public var nowMillis: Int64
    public var incidents: [SentinelIncident]

    public init(nowMillis: Int64, incidents: [SentinelIncident]) {
        self.nowMillis = nowMillis
        self.incidents = incidents
    }

    /// The whole answer's body (its objects span lines).
    public static func parse(_ bytes: [UInt8]) throws(SampleError) -> SentinelReport {
        let document: JSONValue
        do {
            document = try JSONReader.parse(bytes)
        } catch {
            throw SampleError("the sentinel's list json", "\(error)")
        }
        guard let list = document["incidents"]?.array else { throw SampleError("the sentinel's list json", "no incidents array") }
        return SentinelReport(nowMillis: document["now_ms"]?.integer ?? 0, incidents: list.compactMap(SentinelIncident.init))
    }

    /// The open (firing) incidents, newest first.
    public var firing: [SentinelIncident] {
        incidents.filter { !$0.resolved }.sorted { ($0.firingMillis, $0.id) > ($1.firingMillis, $1.id) }
    }

    /// The status bar's badge: how many fire and the worst of them; nil at zero.
    public var badge: IncidentBadge? {
        let open = firing
        guard let worst = open.map(\.severity).max() else { return nil }
        return IncidentBadge(count: open.count, worst: worst)
    }
}

/// The number of firing incidents on the status bar, in the colour of the
/// worst one.
public struct IncidentBadge: Sendable, Equatable {
    public var count: Int
    public var worst: SentinelIncident.Severity

    public init(count: Int, worst: SentinelIncident.Severity) {
        self.count = count
        self.worst = worst
    }

    public var text: String { count > 99 ? "99+" : String(count) }
}

/// What the Sentinel widget has to show: the Sentinel's answer, or why
/// there is none (no socket: the service is not running here; a refused
/// connection: it died and left its socket).
public enum SentinelState: Sendable, Equatable {
    case notRunning(String)
    case answered(SentinelReport)
}

/// `12 s`, `4 min`, `3 h`, `2 d`: how long ago, to a glance's precision.
func formatAge(milliseconds: Int64) -> String {
    let seconds = max(0, milliseconds) / 1000
    if seconds < 60 { return "\(seconds) s" }
    if seconds < 3600 { return "\(seconds / 60) min" }
    if seconds < 86400 { return "\(seconds / 3600) h" }
    return "\(seconds / 86400) d"
}
