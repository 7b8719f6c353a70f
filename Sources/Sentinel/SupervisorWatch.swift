import SpiritCore

/// The supervisor's `status json`, polled, turned into observations:
///
/// - `service.failed` is 1 while a service is `failed`, 0 otherwise;
/// - each rise of a service's `restarts` is that many `service.restart`
///   events (not while `failed`: `service-failed` says it);
/// - an exit by SIGSEGV (`last_exit` "was killed by SIGSEGV …") that is new
///   since the last poll is a `kmsg.segfault` event for that service.
///
/// Counter semantics: the first snapshot is the baseline (restarts from
/// before the Sentinel started are history, not events); a count that goes
/// *down* (the supervisor itself restarted) is a new baseline, never a
/// negative or a replayed count.
public struct SupervisorWatch: Sendable {
    var restarts: [String: Int] = [:]
    var lastExit: [String: String] = [:]
    public private(set) var states: [String: String] = [:]
    /// Each running service's main process.
    public private(set) var pids: [String: Int] = [:]

    public init() {}

    public mutating func update(_ services: [ServiceSummary]) -> [Observation] {
        var out: [Observation] = []
        let first = restarts.isEmpty && states.isEmpty
        for service in services {
            let name = service.name
            let failed = service.state == "failed"
            out.append(Observation(signal: .serviceFailed, subject: name, value: failed ? 1 : 0,
                                   evidence: failed ? ["supervisor: \(name) failed" + (service.why.map { ": \($0)" } ?? "")] : []))
            if !first, let before = restarts[name], service.restarts > before, !failed {
                for count in (before + 1)...service.restarts {
                    out.append(Observation(signal: .serviceRestart, subject: name,
                                           evidence: ["supervisor: \(name) restarted (\(count))" + (service.why.map { ": \($0)" } ?? "")]))
                }
            }
            let exit = service.why ?? ""
            if !first, exit.contains("killed by SIGSEGV"), lastExit[name] != exit || (restarts[name] ?? 0) != service.restarts {
                out.append(Observation(signal: .kmsgSegfault, subject: name, evidence: ["supervisor: \(name) \(exit)"]))
            }
            restarts[name] = service.restarts
            lastExit[name] = exit
            states[name] = service.state
            pids[name] = service.pid
        }
        for gone in Set(states.keys).subtracting(services.map(\.name)) {
            states[gone] = nil
            pids[gone] = nil
            restarts[gone] = nil
            out.append(Observation(signal: .serviceFailed, subject: gone, value: 0))
        }
        return out
    }
}
