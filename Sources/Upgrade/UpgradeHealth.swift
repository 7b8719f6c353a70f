/// The health check of a slot's try: the supervisor's enabled services all
/// up. A service is up when it runs and is ready, when it ended with
/// status 0 and is not restarted, or when it said it has nothing to do on
/// this machine ("not applicable": the HUD without a display). A failed
/// service fails the check at once; one still starting, or restarting
/// after a crash, is waited for until the deadline.
public struct ServiceHealth: Sendable, Equatable {
    public var name: String
    public var state: String
    public var ready: Bool
    public var enabled: Bool
    /// The supervisor's detail or last exit.
    public var why: String?

    public init(name: String, state: String, ready: Bool, enabled: Bool, why: String?) {
        self.name = name
        self.state = state
        self.ready = ready
        self.enabled = enabled
        self.why = why
    }

    var isUp: Bool {
        (state == "running" && ready) || why?.hasPrefix("not applicable") == true
            || (state == "exited" && why?.contains("exited with status 0") == true)
    }

    var summary: String { "\(name) \(state)" + (why.map { " (\($0))" } ?? "") }
}

public enum HealthVerdict: Sendable, Equatable {
    case healthy(up: Int)
    case waiting([String])
    case failed([String])

    /// `services` as the supervisor lists them; `checker`, the service
    /// doing the check, is left out.
    public static func of(_ services: [ServiceHealth], checker: String) -> HealthVerdict {
        let counted = services.filter { $0.enabled && $0.name != checker }
        let failed = counted.filter { $0.state == "failed" }
        if !failed.isEmpty { return .failed(failed.map(\.summary)) }
        let pending = counted.filter { !$0.isUp }
        return pending.isEmpty ? .healthy(up: counted.count) : .waiting(pending.map(\.summary))
    }
}
