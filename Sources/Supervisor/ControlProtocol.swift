import SpiritCore

/// The control socket's protocol: the client sends one request line of
/// words (`status`, `start nodus`, `logs nodus 50 follow`, each optionally
/// ending in `json`; `stop nexus because WORDS…` says why, which `status`
/// shows); the supervisor answers `ok` or `error <exit code>
/// <message>` on the first line, then the body until it closes the
/// connection (or, for `logs … follow`, goes on sending lines; for
/// `events follow`, sends the status as JSON on one line at once and again
/// each time a service changes state: what the Sentinel watches).
public struct ControlRequest: Sendable, Equatable {
    public enum Command: String, Sendable {
        case status, start, stop, restart, logs, events
    }

    public var command: Command
    public var service: String?
    public var lines = 50
    public var follow = false
    public var json = false
    /// Why a service is stopped (`spirit gpu passthrough`: the GPU went to
    /// vfio-pci), shown by `status`.
    public var reason: String?

    public init(command: Command, service: String? = nil, lines: Int = 50, follow: Bool = false, json: Bool = false,
                reason: String? = nil) {
        self.command = command
        self.service = service
        self.lines = lines
        self.follow = follow
        self.json = json
        self.reason = reason
    }

    public var line: String {
        var words = [command.rawValue]
        if let service { words.append(service) }
        if command == .logs { words.append(String(lines)) }
        if follow { words.append("follow") }
        if json { words.append("json") }
        if command == .stop, let reason { words += ["because", reason] }
        return words.joined(separator: " ")
    }

    public init?(line: String) {
        var words = line.split(separator: " ").map(String.init)
        guard let first = words.first, let command = Command(rawValue: first) else { return nil }
        words.removeFirst()
        self.command = command
        if command == .stop, let because = words.firstIndex(of: "because"), because + 1 < words.count {
            reason = words[(because + 1)...].joined(separator: " ")
            words.removeSubrange(because...)
        }
        if words.last == "json" { json = true; words.removeLast() }
        if words.last == "follow" { follow = true; words.removeLast() }
        if command == .logs {
            guard let count = words.last.flatMap({ Int($0) }), count >= 0 else { return nil }
            lines = count
            words.removeLast()
        }
        guard words.count <= 1 else { return nil }
        service = words.first
        if command == .events { guard follow, service == nil else { return nil } }
        if command != .status, command != .events, service == nil { return nil }
        if let service, !ServiceDefinition.isValidName(service) { return nil }
    }
}

/// `spiritctl status`, for people and as JSON.
public enum StatusReport {
    static func seconds(_ micros: Int64) -> String {
        let tenths = max(0, micros) / 100_000
        return "\(tenths / 10).\(tenths % 10) s"
    }

    /// The table; with `journal`, a first line that names the journal's
    /// head (seq and hash prefix), to compare with `spirit journal verify`.
    public static func text(_ services: [ServiceStatus], now: Int64, journal: JournalRecord? = nil) -> String {
        let header = ["SERVICE", "STATE", "PID", "RESTARTS", "SINCE", "DETAIL"]
        var rows = [header]
        for service in services {
            var detail = service.detail ?? ""
            if detail.isEmpty, let exit = service.lastExit, service.state != .running { detail = "last \(exit)" }
            if !service.definition.enabled, service.state == .stopped { detail = detail.isEmpty ? "disabled" : detail }
            rows.append([service.definition.name, service.state.rawValue, service.pid.map(String.init) ?? "-", String(service.restarts),
                         service.state == .stopped && service.since == 0 ? "-" : seconds(now - service.since) + " ago", detail])
        }
        let widths = (0..<header.count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        let head = journal.map { "journal: seq \($0.seq), head \($0.hash.prefix(16))\n" } ?? ""
        return head + rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count + 2)
            }.joined().trimmed
        }.joined(separator: "\n")
    }

    public static func json(_ services: [ServiceStatus], now: Int64, journal: JournalRecord? = nil) -> String {
        let objects = services.map { service in
            var fields = [
                "\"name\":\(jsonString(service.definition.name))",
                "\"state\":\(jsonString(service.state.rawValue))",
                "\"pid\":\(service.pid.map(String.init) ?? "null")",
                "\"restarts\":\(service.restarts)",
                "\"ready\":\(service.ready)",
                "\"enabled\":\(service.definition.enabled)",
                "\"since_ms\":\(formatMilliseconds(service.since))",
            ]
            if let exit = service.lastExit { fields.append("\"last_exit\":\(jsonString(exit.description))") }
            if let detail = service.detail { fields.append("\"detail\":\(jsonString(detail))") }
            return "{" + fields.joined(separator: ",") + "}"
        }
        let head = journal.map { ",\"journal\":{\"seq\":\($0.seq),\"head\":\(jsonString($0.hash))}" } ?? ""
        return "{\"now_ms\":\(formatMilliseconds(now))\(head),\"services\":[" + objects.joined(separator: ",\n") + "]}"
    }
}
