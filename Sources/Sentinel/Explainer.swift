import SpiritCore

/// Writes an incident's explanation. The template below needs nothing; a
/// model-written one (the AI runtime, when it is up, under a JSON schema and
/// a deadline) conforms too and falls back to the template. The explainer
/// only explains: policy decides what is done.
public protocol Explainer {
    func explain(_ incident: Incident, rule: Rule) -> String
}

/// The explanation from the incident's own fields: what fired on which
/// service, on what evidence, what to do, and what policy decided.
public struct TemplateExplainer: Explainer, Sendable {
    public init() {}

    public func explain(_ incident: Incident, rule: Rule) -> String {
        let subject = incident.service.map { "service \($0)" } ?? "the system"
        var text = "\(rule.id) (\(incident.severity.rawValue)) on \(subject): \(rule.condition)"
            + (rule.forMillis > 0 ? " for \(rule.forMillis / 1000) s" : "") + ", value \(number(incident.value))."
        if let line = incident.evidence.last { text += " Evidence: \(line)" + (incident.evidence.count > 1 ? " (and \(incident.evidence.count - 1) more)." : ".") }
        if !rule.advice.isEmpty { text += " " + rule.advice }
        text += " Decision: \(incident.decision.text)."
        return text
    }

    /// `12`, `99.94`: two decimals at most (a percentage from statvfs has fifteen).
    public func number(_ value: Double) -> String {
        guard value.isFinite, abs(value) < 1e15 else { return String(value) }
        let hundredths = (value * 100).rounded()
        return hundredths.truncatingRemainder(dividingBy: 100) == 0 ? String(Int64(hundredths / 100)) : String(hundredths / 100)
    }
}

/// An incident as one JSON object (one line of /run/log/sentinel.jsonl and
/// of `spiritctl sentinel --json`), and read back.
public enum IncidentJSON {
    public static func encode(_ incident: Incident) -> String {
        var fields = [
            "\"id\":\(incident.id)", "\"rule\":\(jsonString(incident.rule))", "\"severity\":\(jsonString(incident.severity.rawValue))",
            "\"service\":\(incident.service.map(jsonString) ?? "null")", "\"state\":\(jsonString(incident.state))",
            "\"condition\":\(jsonString(incident.condition))",
            "\"pending_ms\":\(incident.pendingAt)", "\"firing_ms\":\(incident.firingAt)",
            "\"resolved_ms\":\(incident.resolvedAt.map { String($0) } ?? "null")",
            "\"value\":\(TemplateExplainer().number(incident.value))", "\"peak\":\(TemplateExplainer().number(incident.peak))",
            "\"evidence\":[" + incident.evidence.map(jsonString).joined(separator: ",") + "]",
        ]
        switch incident.decision {
        case .advise: fields.append("\"decision\":\"advise\"")
        case .restart(let service): fields.append("\"decision\":\"restart\",\"target\":\(jsonString(service))")
        case .suppressed(let service, let reason):
            fields.append("\"decision\":\"suppressed\",\"target\":\(service.map(jsonString) ?? "null"),\"reason\":\(jsonString(reason.rawValue))")
        }
        fields.append("\"explanation\":\(jsonString(incident.explanation))")
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// `ID  STATE  SEVERITY  RULE  SERVICE  SINCE  DECISION`, one incident a row.
    public static func table(_ incidents: [Incident], now: Int64) -> String {
        var rows = [["ID", "STATE", "SEVERITY", "RULE", "SERVICE", "FIRED", "DECISION"]]
        for incident in incidents {
            rows.append([String(incident.id), incident.state, incident.severity.rawValue, incident.rule, incident.service ?? "-",
                         "\(max(0, now - incident.firingAt) / 1000) s ago", incident.decision.text])
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count + 2)
            }.joined()
        }.joined(separator: "\n")
    }
}

/// The explanation written by the AI runtime's model when it answers in
/// time: the incident's facts (TemplateExplainer's text, always kept, so the
/// service and the evidence are always named) and, after them, one sentence
/// of the model's under a JSON schema. The model never chooses an action:
/// policy did that before it is asked. Anything else — no runtime, a 503, a
/// late answer, an answer off the schema — leaves the template's text.
public struct ModelExplainer: Explainer, Sendable {
    /// POSTs a /completion body within `deadlineMillis`; the answer's status
    /// and body, or nil when none came in time.
    public typealias Transport = @Sendable (_ body: String, _ deadlineMillis: Int) -> (status: Int, body: [UInt8])?

    public static let deadlineMillis = 500
    let transport: Transport
    let template = TemplateExplainer()

    public init(transport: @escaping Transport) {
        self.transport = transport
    }

    public static let schema = "{\"type\":\"object\",\"properties\":{\"summary\":{\"type\":\"string\",\"minLength\":10,\"maxLength\":160}},"
        + "\"required\":[\"summary\"],\"additionalProperties\":false}"

    public static func request(facts: String) -> String {
        let prompt = "A monitor found a problem on a computer. The facts: \(facts)\n"
            + "Explain to the computer's user, in one short sentence, what went wrong. Answer as JSON.\n"
        return "{\"prompt\":\(jsonString(prompt)),\"temperature\":0,\"n_predict\":48,\"cache_prompt\":true,\"json_schema\":\(schema)}"
    }

    /// The model's sentence from a /completion answer, or nil.
    public static func summary(from body: [UInt8]) -> String? {
        guard let content = (try? JSONReader.parse(body))?["content"]?.string,
              let summary = (try? JSONReader.parse(content))?["summary"]?.string?.trimmed,
              (10...160).contains(summary.count), !summary.contains("\n") else { return nil }
        return summary
    }

    public func explain(_ incident: Incident, rule: Rule) -> String {
        let facts = template.explain(incident, rule: rule)
        guard let answer = transport(Self.request(facts: facts), Self.deadlineMillis), answer.status == 200,
              let summary = Self.summary(from: answer.body) else { return facts }
        return facts + " The model says: " + summary
    }
}
