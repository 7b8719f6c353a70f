/// The answers `spirit ask` gives from live data, as text: pure, so that a
/// test feeds them fixed numbers.
public enum AskAnswers {
    public struct ProcessMemory: Sendable, Equatable {
        public var pid: Int
        public var command: String
        public var rssKiB: Int64
        public init(pid: Int, command: String, rssKiB: Int64) {
            self.pid = pid
            self.command = command
            self.rssKiB = rssKiB
        }
    }

    /// "What is using the most memory?": the services by their cgroup's
    /// memory.current, the processes by resident memory, and what is left.
    public static func memory(services: [(name: String, bytes: Int64)], processes: [ProcessMemory],
                              totalKiB: Int64?, availableKiB: Int64?) -> String {
        var lines: [String] = []
        if let top = processes.max(by: { $0.rssKiB < $1.rssKiB }) {
            lines.append("The process using the most memory is \(top.command) (pid \(top.pid)): \(mib(top.rssKiB << 10)) resident.")
        }
        let ranked = services.filter { $0.bytes > 0 }.sorted { $0.bytes > $1.bytes }
        if !ranked.isEmpty {
            lines.append("Services: " + ranked.prefix(5).map { "\($0.name) \(mib($0.bytes))" }.joined(separator: ", ") + ".")
        }
        let others = processes.sorted { $0.rssKiB > $1.rssKiB }.dropFirst().prefix(4)
        if !others.isEmpty {
            lines.append("Next processes: " + others.map { "\($0.command) \(mib($0.rssKiB << 10))" }.joined(separator: ", ") + ".")
        }
        if let totalKiB, let availableKiB {
            lines.append("Memory: \(mib((totalKiB - availableKiB) << 10)) in use of \(mib(totalKiB << 10)); \(mib(availableKiB << 10)) available.")
        }
        return lines.isEmpty ? "No memory figures could be read here." : lines.joined(separator: "\n")
    }

    /// One service's state in a sentence, or all of them.
    public static func status(_ services: [(name: String, state: String, restarts: Int, why: String?)], only: String?) -> String {
        if let only, let service = services.first(where: { $0.name == only }) {
            var text = "\(service.name) is \(service.state)"
            if service.restarts > 0 { text += ", restarted \(service.restarts) time\(service.restarts == 1 ? "" : "s")" }
            if let why = service.why, !why.isEmpty { text += " (\(why))" }
            return text + "."
        }
        let byState = Dictionary(grouping: services, by: \.state)
        let summary = byState.keys.sorted().map { "\(byState[$0]!.count) \($0)" }.joined(separator: ", ")
        let troubled = services.filter { ["failed", "backoff"].contains($0.state) }
        var text = "\(services.count) services: \(summary)."
        if !troubled.isEmpty { text += " In trouble: " + troubled.map { "\($0.name) (\($0.why ?? $0.state))" }.joined(separator: ", ") + "." }
        return text
    }

    static func mib(_ bytes: Int64) -> String {
        bytes >= 10 << 20 ? "\(bytes >> 20) MiB" : "\(((bytes * 10) >> 20) / 10).\(((bytes * 10) >> 20) % 10) MiB"
    }
}
