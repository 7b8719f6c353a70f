/// One step of the boot: what ran, in which process, from when to when (in
/// microseconds of CLOCK_BOOTTIME), and whether it worked.
public struct TimelineStep: Sendable, Equatable {
    public var step: String
    public var process: String
    public var pid: Int32
    public var startMicros: Int64
    public var endMicros: Int64
    public var ok: Bool
    public var detail: String?

    public init(step: String, process: String, pid: Int32, startMicros: Int64, endMicros: Int64, ok: Bool, detail: String? = nil) {
        self.step = step
        self.process = process
        self.pid = pid
        self.startMicros = startMicros
        self.endMicros = endMicros
        self.ok = ok
        self.detail = detail
    }

    /// One JSON object on one line.
    public var json: String {
        var fields = [
            "\"step\":\(jsonString(step))",
            "\"process\":\(jsonString(process))",
            "\"pid\":\(pid)",
            "\"start_ms\":\(formatMilliseconds(startMicros))",
            "\"end_ms\":\(formatMilliseconds(endMicros))",
            "\"duration_ms\":\(formatMilliseconds(endMicros - startMicros))",
            "\"ok\":\(ok)",
        ]
        if let detail { fields.append("\"detail\":\(jsonString(detail))") }
        return "{" + fields.joined(separator: ",") + "}"
    }
}

extension TimelineStep {
    /// Reads a step back from its JSON object; nil if a field is missing.
    public init?(_ value: JSONValue) {
        func micros(_ key: String) -> Int64? {
            guard case .number(let number, _)? = value[key] else { return nil }
            return Int64((number * 1000).rounded())
        }
        guard let step = value["step"]?.string, let process = value["process"]?.string,
              let pid = value["pid"]?.integer, let start = micros("start_ms"), let end = micros("end_ms"),
              case .bool(let ok)? = value["ok"] else { return nil }
        self.init(step: step, process: process, pid: Int32(truncatingIfNeeded: pid), startMicros: start, endMicros: end,
                  ok: ok, detail: value["detail"]?.string)
    }

    /// The steps of a timeline.json document.
    public static func steps(document: [UInt8]) throws -> [TimelineStep] {
        guard case .array(let values)? = try JSONReader.parse(document)["steps"] else {
            throw SpiritError("not a Spirit timeline: no \"steps\" list")
        }
        return values.compactMap(TimelineStep.init)
    }

    /// `kernel 3129, modules 2027, … ms; ready at 7416 ms`: each step's
    /// duration, rounded to the millisecond.
    public static func summary(_ steps: [TimelineStep]) -> String {
        let parts = steps.filter { $0.endMicros > $0.startMicros }.map { "\($0.step) \(($0.endMicros - $0.startMicros + 500) / 1000)" }
        let end = steps.map(\.endMicros).max() ?? 0
        return parts.joined(separator: ", ") + " ms; at \((end + 500) / 1000) ms of CLOCK_BOOTTIME"
    }

    /// The timeline as a table for people.
    public static func table(_ steps: [TimelineStep]) -> String {
        func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, width - text.count))
            return right ? fill + text : text + fill
        }
        // Wide enough for the longest name (`modules:virtualization`,
        // `service:<name>`, the `supervisor` process).
        let stepWidth = max(14, (steps.map(\.step.count).max() ?? 0) + 2)
        let processWidth = max(9, (steps.map(\.process.count).max() ?? 0) + 2)
        var lines = [pad("step", stepWidth) + pad("process", processWidth) + pad("start ms", 11, right: true)
            + pad("end ms", 11, right: true) + pad("took ms", 11, right: true) + "  detail"]
        for step in steps {
            lines.append(pad(step.step, stepWidth) + pad(step.process, processWidth) + pad(formatMilliseconds(step.startMicros), 11, right: true)
                + pad(formatMilliseconds(step.endMicros), 11, right: true)
                + pad(formatMilliseconds(step.endMicros - step.startMicros), 11, right: true)
                + "  " + (step.ok ? "" : "FAILED: ") + (step.detail ?? ""))
        }
        return lines.joined(separator: "\n")
    }
}

/// The boot timeline in /run/spirit: each process appends its steps to
/// timeline.jsonl (one O_APPEND write per step, so PID 1, the worker and
/// stage 2 never overwrite each other), and timeline.json, the document
/// users and tests read, is written anew from it after every step.
public struct Timeline: Sendable {
    public var directory: String
    public var process: String

    public init(directory: String = "/run/spirit", process: String) {
        self.directory = directory
        self.process = process
    }

    public var journalPath: String { directory + "/timeline.jsonl" }
    public var documentPath: String { directory + "/timeline.json" }

    /// Records a finished step. A timeline that cannot be written (no /run
    /// yet) must not stop the boot: the error is returned for the caller to
    /// show.
    @discardableResult
    public func record(_ step: TimelineStep) -> SystemError? {
        do {
            try Kernel.makeDirectory(directory, parents: true)
            try Kernel.writeFile(journalPath, step.json + "\n", append: true)
            let journal = try Kernel.readText(journalPath)
            try Kernel.writeFileAtomically(documentPath, Self.document(journal: journal))
            return nil
        } catch {
            return error
        }
    }

    /// Runs `body` as the step `name` and records it, also when it throws.
    @discardableResult
    public func measure<T>(_ name: String, detail: ((T) -> String?)? = nil, _ body: () throws -> T) rethrows -> T {
        let start = Kernel.bootTimeMicros()
        do {
            let result = try body()
            record(TimelineStep(step: name, process: process, pid: Kernel.pid, startMicros: start,
                                endMicros: Kernel.bootTimeMicros(), ok: true, detail: detail?(result)))
            return result
        } catch {
            record(TimelineStep(step: name, process: process, pid: Kernel.pid, startMicros: start,
                                endMicros: Kernel.bootTimeMicros(), ok: false, detail: "\(error)"))
            throw error
        }
    }

    /// `{"clock":"CLOCK_BOOTTIME","unit":"ms","steps":[…]}` from the journal's lines.
    public static func document(journal: String) -> String {
        let steps = journal.split(separator: "\n").filter { $0.hasPrefix("{") && $0.hasSuffix("}") }
        return "{\"clock\":\"CLOCK_BOOTTIME\",\"unit\":\"ms\",\"steps\":[\n" + steps.joined(separator: ",\n") + "\n]}\n"
    }
}

/// A JSON string literal, escaped as RFC 8259 requires.
public func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case let c where c.value < 0x20:
            let hex = String(c.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
