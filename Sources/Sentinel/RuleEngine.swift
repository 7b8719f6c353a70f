/// The rules evaluated over what the collectors saw, with Prometheus'
/// alert semantics, on a clock the caller gives (milliseconds, monotonic):
///
/// - a rule's condition becomes true for a subject (a service, or the
///   system): the alert is **pending** from that evaluation;
/// - still true `for` later: **firing**, and an incident is opened (one per
///   episode: while it fires, new evidence goes into the same incident);
///   false before that: the alert is dropped, no incident;
/// - false while firing: it keeps firing until it has been false for
///   `keep-firing-for` (true again in between: the count starts over),
///   then it is **resolved** and the incident closed.
///
/// Counters and their reset (monit's bug class, where a counter that was
/// not reset made a second action out of the first episode's events): an
/// event signal is the number of events within the rule's window that came
/// *after* the rule's last resolution for that subject. So an episode's
/// events never count toward the next one: after `service-flapping`
/// resolves, one more restart is one restart, not the fourth.
public struct RuleEngine: Sendable {
    public enum Phase: String, Sendable, Equatable { case pending, firing }

    struct Key: Hashable, Sendable {
        var signal: SignalKind
        var subject: String?
    }

    struct AlertKey: Hashable, Sendable {
        var rule: Int
        var subject: String?
    }

    struct Alert: Sendable {
        var phase: Phase
        var activeSince: Int64
        /// The first evaluation at which the condition was false while firing.
        var inactiveSince: Int64?
        var incident: Int?
    }

    public let rules: [Rule]
    var gauges: [Key: (value: Double, evidence: [String])] = [:]
    var events: [Key: [(time: Int64, evidence: [String])]] = [:]
    var alerts: [AlertKey: Alert] = [:]
    var resetAt: [AlertKey: Int64] = [:]
    public private(set) var incidents: [Incident] = []
    var nextID = 1
    /// Incidents kept (the oldest resolved ones go first).
    public var capacity = 200

    public init(rules: [Rule]) { self.rules = rules }

    /// A gauge's new value, or an event at `time`.
    public mutating func observe(_ observation: Observation, at time: Int64) {
        let key = Key(signal: observation.signal, subject: observation.subject)
        if observation.signal.isEvent {
            events[key, default: []].append((time, observation.evidence))
        } else {
            gauges[key] = (observation.value, observation.evidence)
        }
    }

    /// The alert of `rule` for `subject` now, if any.
    public func phase(rule: String, subject: String? = nil) -> Phase? {
        guard let index = rules.firstIndex(where: { $0.id == rule }) else { return nil }
        return alerts[AlertKey(rule: index, subject: subject)]?.phase
    }

    /// The value of `rule`'s signal for `subject` at `time`, and its evidence.
    func value(_ index: Int, _ subject: String?, at time: Int64) -> (Double, [String]) {
        let rule = rules[index]
        let key = Key(signal: rule.signal, subject: subject)
        guard rule.signal.isEvent else { return gauges[key].map { ($0.value, $0.evidence) } ?? (0, []) }
        let after = max(time - rule.windowMillis, resetAt[AlertKey(rule: index, subject: subject)] ?? .min)
        let counted = (events[key] ?? []).filter { $0.time > after && $0.time <= time }
        return (Double(counted.count), counted.flatMap(\.evidence))
    }

    /// Evaluates every rule at `time`; returns the incidents that fired or
    /// resolved at this evaluation (their ids).
    public mutating func evaluate(at time: Int64) -> (fired: [Int], resolved: [Int]) {
        var fired: [Int] = []
        var resolved: [Int] = []
        for index in rules.indices {
            let rule = rules[index]
            var subjects = Set((rule.signal.isEvent ? Array(events.keys) : Array(gauges.keys)).filter { $0.signal == rule.signal }.map(\.subject))
            subjects.formUnion(alerts.keys.filter { $0.rule == index }.map(\.subject))
            for subject in subjects.sorted(by: { ($0 ?? "") < ($1 ?? "") }) {
                let key = AlertKey(rule: index, subject: subject)
                let (value, evidence) = value(index, subject, at: time)
                let active = rule.holds(value)
                guard var alert = alerts[key] else {
                    if active { alerts[key] = Alert(phase: .pending, activeSince: time) }
                    if active, rule.forMillis == 0, let id = fire(key, value, evidence, at: time) { fired.append(id) }
                    continue
                }
                switch (alert.phase, active) {
                case (.pending, true):
                    if time - alert.activeSince >= rule.forMillis, let id = fire(key, value, evidence, at: time) { fired.append(id) }
                case (.pending, false):
                    alerts[key] = nil
                case (.firing, true):
                    alert.inactiveSince = nil
                    alerts[key] = alert
                    if let id = alert.incident { update(id, value, evidence) }
                case (.firing, false):
                    let since = alert.inactiveSince ?? time
                    if time - since >= rule.keepFiringForMillis {
                        alerts[key] = nil
                        resetAt[key] = time
                        if let id = alert.incident, let position = incidents.firstIndex(where: { $0.id == id }) {
                            incidents[position].resolvedAt = time
                            resolved.append(id)
                        }
                    } else {
                        alert.inactiveSince = since
                        alerts[key] = alert
                    }
                }
            }
        }
        prune(before: time)
        return (fired.sorted(), resolved.sorted())
    }

    mutating func fire(_ key: AlertKey, _ value: Double, _ evidence: [String], at time: Int64) -> Int? {
        guard var alert = alerts[key] else { return nil }
        let rule = rules[key.rule]
        let incident = Incident(id: nextID, rule: rule.id, severity: rule.severity, service: key.subject, condition: rule.condition,
                                pendingAt: alert.activeSince, firingAt: time, evidence: Array(evidence.suffix(Incident.evidenceLimit)),
                                value: value, peak: value)
        nextID += 1
        alert.phase = .firing
        alert.incident = incident.id
        alerts[key] = alert
        incidents.append(incident)
        if incidents.count > capacity, let old = incidents.firstIndex(where: { $0.resolvedAt != nil }) { incidents.remove(at: old) }
        return incident.id
    }

    mutating func update(_ id: Int, _ value: Double, _ evidence: [String]) {
        guard let position = incidents.firstIndex(where: { $0.id == id }) else { return }
        incidents[position].peak = max(incidents[position].peak, value)
        for line in evidence where !incidents[position].evidence.contains(line) { incidents[position].evidence.append(line) }
        if incidents[position].evidence.count > Incident.evidenceLimit {
            incidents[position].evidence.removeFirst(incidents[position].evidence.count - Incident.evidenceLimit)
        }
    }

    /// Sets what policy decided and the explanation of incident `id`.
    public mutating func record(_ id: Int, decision: Decision, explanation: String) {
        guard let position = incidents.firstIndex(where: { $0.id == id }) else { return }
        incidents[position].decision = decision
        incidents[position].explanation = explanation
    }

    public func incident(_ id: Int) -> Incident? { incidents.first { $0.id == id } }

    /// Events older than every window are forgotten.
    mutating func prune(before time: Int64) {
        let longest = rules.map(\.windowMillis).max() ?? 0
        for key in Array(events.keys) {
            events[key]!.removeAll { $0.time <= time - longest }
            if events[key]!.isEmpty { events[key] = nil }
        }
    }
}

/// One episode of one rule for one subject: what fired, when, on what
/// evidence, what policy decided, and why, in words.
public struct Incident: Sendable, Equatable {
    public static let evidenceLimit = 20

    public var id: Int
    public var rule: String
    public var severity: Severity
    /// The service, or nil for the system.
    public var service: String?
    public var condition: String
    public var pendingAt: Int64
    public var firingAt: Int64
    public var resolvedAt: Int64?
    public var evidence: [String]
    /// The signal's value when it fired, and the highest since.
    public var value: Double
    public var peak: Double
    public var decision: Decision = .advise
    public var explanation = ""

    public init(id: Int, rule: String, severity: Severity, service: String?, condition: String, pendingAt: Int64, firingAt: Int64,
                resolvedAt: Int64? = nil, evidence: [String], value: Double, peak: Double) {
        self.id = id
        self.rule = rule
        self.severity = severity
        self.service = service
        self.condition = condition
        self.pendingAt = pendingAt
        self.firingAt = firingAt
        self.resolvedAt = resolvedAt
        self.evidence = evidence
        self.value = value
        self.peak = peak
    }

    public var state: String { resolvedAt == nil ? "firing" : "resolved" }
}
