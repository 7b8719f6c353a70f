import SpiritCore

/// Why an action a rule asked for was not taken.
public enum Suppression: String, Sendable, Equatable {
    /// The service's file does not name the rule in `auto-restart` (or has no `pressure-kill`).
    case notOptedIn = "not-opted-in"
    /// 1 action per service per 15 min, 3 on the whole system per hour.
    case rateLimited = "rate-limited"
    /// The supervisor is already restarting it (state `backoff`): two
    /// restarters fight.
    case supervisorBackoff = "supervisor-backoff"
    /// PID 1, the supervisor, or the Sentinel itself.
    case protectedService = "protected-service"
}

/// Policy's answer for one incident.
public enum Decision: Sendable, Equatable {
    /// Record and show; the rule asked for nothing more.
    case advise
    /// Restart this service through the supervisor.
    case restart(String)
    /// The rule asked for a restart (of this service, if known), which is not done.
    case suppressed(service: String?, Suppression)

    /// `advise`, `restart leaky`, `suppressed (not-opted-in): restart leaky`.
    public var text: String {
        switch self {
        case .advise: "advise"
        case .restart(let service): "restart \(service)"
        case .suppressed(let service, let reason): "suppressed (\(reason.rawValue)): restart \(service ?? "a service")"
        }
    }
}

/// The gate between a firing rule and the supervisor. The inputs are
/// values (the incident's rule and service, each service's policy, state
/// and memory, the actions already taken), so every reason is a unit test.
public struct ActionPolicy: Sendable {
    /// Names that never get an action: PID 1 (`init`), the supervisor, and
    /// the Sentinel (it would stop watching while it restarts).
    public static let protected: Set<String> = ["init", "supervisor", "sentinel"]
    public static let perServiceMillis: Int64 = 15 * 60_000
    public static let systemWindowMillis: Int64 = 60 * 60_000
    public static let systemLimit = 3

    public var policies: [String: ServicePolicy]
    /// Actions taken: which service, when (the rule engine's clock).
    public private(set) var history: [(service: String, at: Int64)] = []

    public init(policies: [String: ServicePolicy]) { self.policies = policies }

    /// The decision for `rule` firing on `service` (nil: the system) at
    /// `now`; `states` are the supervisor's states, `memory` each service's
    /// memory.current in bytes, `pids` their main processes.
    public func decide(rule: Rule, service: String?, states: [String: String], memory: [String: UInt64] = [:],
                       pids: [String: Int] = [:], now: Int64) -> Decision {
        let target: String?
        switch rule.action {
        case .advise:
            return .advise
        case .restart:
            target = service
            guard let service else { return .suppressed(service: nil, .notOptedIn) }
            if Self.protected.contains(service) || pids[service] == 1 { return .suppressed(service: service, .protectedService) }
            guard policies[service]?.autoRestart.contains(rule.id) == true else { return .suppressed(service: service, .notOptedIn) }
        case .restartLargest:
            // The largest opted-in service that is not protected.
            let candidates = policies.filter { $0.value.pressureKill && !Self.protected.contains($0.key) && pids[$0.key] != 1 }.keys
            target = candidates.max { (memory[$0] ?? 0, $1) < (memory[$1] ?? 0, $0) }
            guard target != nil else { return .suppressed(service: nil, .notOptedIn) }
        }
        guard let target else { return .advise }
        if states[target] == "backoff" { return .suppressed(service: target, .supervisorBackoff) }
        if history.contains(where: { $0.service == target && now - $0.at < Self.perServiceMillis })
            || history.filter({ now - $0.at < Self.systemWindowMillis }).count >= Self.systemLimit {
            return .suppressed(service: target, .rateLimited)
        }
        return .restart(target)
    }

    /// An action was taken (it counts toward the rate limits).
    public mutating func took(_ service: String, at time: Int64) {
        history.append((service, time))
        history.removeAll { time - $0.at >= Self.systemWindowMillis }
    }
}
