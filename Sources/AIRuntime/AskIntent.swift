/// What `spirit ask` may do: an allow-list mapped one to one onto what
/// spiritctl and the daemons already do. There is no shell tool, and no
/// poweroff or reboot: words cannot become an arbitrary command.
public enum AskTool: String, Sendable, CaseIterable {
    case status, logs, start, stop, restart, memory, timeline, models, none

    /// Tools that change the machine: asked for confirmation (or --yes).
    public var changesState: Bool { [.start, .stop, .restart].contains(self) }
    /// Tools that act on one service, which must be named.
    public var needsService: Bool { [.logs, .start, .stop, .restart].contains(self) }
}

/// One request, as the parser or the model understood it.
public struct AskIntent: Sendable, Equatable {
    public var tool: AskTool
    /// A live service's name, or nil.
    public var service: String?
    /// For `logs`: how many lines (1…200).
    public var lines: Int?

    public init(tool: AskTool, service: String? = nil, lines: Int? = nil) {
        self.tool = tool
        self.service = service
        self.lines = lines
    }

    /// Checks an intent against the allow-list and the live services; the
    /// reason it is refused, or nil.
    public func refusal(services: [String]) -> String? {
        if let service, !services.contains(service) {
            return "there is no service \(service) (services: \(services.joined(separator: ", ")))"
        }
        if tool.needsService, service == nil { return "\(tool.rawValue) needs a service's name (services: \(services.joined(separator: ", ")))" }
        if let lines, !(1...200).contains(lines) { return "logs shows 1 to 200 lines, not \(lines)" }
        return nil
    }
}

/// The deterministic half of `spirit ask`: common requests in plain words
/// ("restart nodus", "show the logs of modules", "what is using the most
/// memory?") become an intent without a model, in microseconds. A request
/// it cannot read unambiguously is nil: then the model is asked, under a
/// schema (AskSchema). Service names are matched against the live ones,
/// allowing one typo in names of four letters or more.
public enum AskParser {
    static let verbs: [(AskTool, [String])] = [
        (.restart, ["restart", "reload", "bounce", "reboot the service"]),
        (.start, ["start", "launch", "bring up", "turn on"]),
        (.stop, ["stop", "kill", "shut down", "shutdown", "turn off", "halt"]),
        (.logs, ["logs", "log", "output", "journal"]),
        (.memory, ["memory", "ram", "mem "]),
        (.timeline, ["timeline", "boot time", "how long did the boot", "how long did boot", "boot take"]),
        (.models, ["models", "model packs", "which model"]),
        (.status, ["status", "running", "state", "how is", "how are", "health", "up?", "services", "failed", "crashed", "working"]),
    ]
    static let negations = ["don't", "dont", "do not", "never", "no need to", "not "]

    public static func parse(_ text: String, services: [String]) -> AskIntent? {
        let lowered = " " + text.lowercased().map { $0.isLetter || $0.isNumber || "'-_?".contains($0) ? $0 : " " }.map(String.init).joined() + " "
        let words = lowered.split(separator: " ").map { String($0).trimmingCharacters(in: "?") }.filter { !$0.isEmpty }
        var found = Set<AskTool>()
        for (tool, phrases) in verbs where phrases.contains(where: { phrase in
            phrase.contains(" ") || phrase.hasSuffix("?") ? lowered.contains(" " + phrase) : words.contains(phrase)
        }) {
            found.insert(tool)
        }
        // "what is running" is a status question, not a start.
        if found.contains(.status), found.count > 1, !found.isDisjoint(with: [.start, .stop, .restart, .logs, .memory, .timeline, .models]) {
            found.remove(.status)
        }
        let named = Set(words.compactMap { match($0, services: services) })
        guard named.count <= 1 else { return nil }
        let service = named.first
        if negations.contains(where: { lowered.contains(" " + $0) }), !found.isDisjoint(with: [.start, .stop, .restart]) {
            // "don't restart nodus": not something to guess at.
            return AskIntent(tool: .none, service: service)
        }
        guard found.count == 1, let tool = found.first else {
            // Only a service's name ("nexus?"): its status.
            if found.isEmpty, let service, words.count == 1 { return AskIntent(tool: .status, service: service) }
            return nil
        }
        if tool.needsService, service == nil { return nil }
        var intent = AskIntent(tool: tool, service: service)
        if tool == .logs { intent.lines = words.compactMap { Int($0) }.first.map { min(max($0, 1), 200) } ?? 20 }
        return intent
    }

    /// A live service's name for `word`: exact, or one edit away for names
    /// of four letters or more.
    static func match(_ word: String, services: [String]) -> String? {
        if services.contains(word) { return word }
        guard word.count >= 4 else { return nil }
        let close = services.filter { $0.count >= 4 && editDistance(word, $0, limit: 1) <= 1 }
        return close.count == 1 ? close[0] : nil
    }

    /// Edits between two words (insert, delete, replace, or swap two
    /// neighbours: "nodsu" is one from "nodus"); past `limit`, limit + 1.
    static func editDistance(_ a: String, _ b: String, limit: Int) -> Int {
        let a = Array(a), b = Array(b)
        if abs(a.count - b.count) > limit { return limit + 1 }
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var table = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1) }
            }
        }
        return min(table[a.count][b.count], limit + 1)
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}
