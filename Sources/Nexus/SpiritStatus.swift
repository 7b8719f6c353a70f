import SpiritCore

// MARK: The boot timeline (/run/spirit/timeline.json)

/// One bar of the boot widget: a step's place on the boot's time axis,
/// as fractions of the whole (as the bench's SVG draws them).
public struct TimelineBar: Sendable, Equatable {
    public var step: String
    public var start: Double
    public var length: Double
    public var milliseconds: Int64
    public var ok: Bool
}

public enum BootTimeline {
    /// The steps of a timeline.json document (written by SpiritCore's
    /// `Timeline`).
    public static func parse(_ document: [UInt8]) throws(SampleError) -> [TimelineStep] {
        do {
            return try TimelineStep.steps(document: document)
        } catch {
            throw SampleError("/run/spirit/timeline.json", "\(error)")
        }
    }

    /// Bars from 0 (boot) to the end of the last step; steps that took no
    /// time are left out, and the `limit` longest are kept, in time order.
    public static func bars(_ steps: [TimelineStep], limit: Int = .max) -> [TimelineBar] {
        let timed = steps.filter { $0.endMicros > $0.startMicros }
        let end = timed.map(\.endMicros).max() ?? 0
        guard end > 0 else { return [] }
        let kept = Set(timed.indices.sorted {
            let a = timed[$0].endMicros - timed[$0].startMicros, b = timed[$1].endMicros - timed[$1].startMicros
            return a != b ? a > b : $0 < $1
        }.prefix(limit))
        return timed.indices.filter(kept.contains).map { index in
            let step = timed[index]
            return TimelineBar(step: step.step, start: Double(max(0, step.startMicros)) / Double(end),
                               length: Double(step.endMicros - step.startMicros) / Double(end),
                               milliseconds: (step.endMicros - step.startMicros + 500) / 1000, ok: step.ok)
        }
    }

    /// When the boot reached `spirit: ready` (the end of the last step), in ms.
    public static func readyMillis(_ steps: [TimelineStep]) -> Int64 {
        ((steps.map(\.endMicros).max() ?? 0) + 500) / 1000
    }
}

// MARK: The supervisor's services (`spiritctl status --json`)

/// One service as the supervisor's status reports it.
public struct ServiceSummary: Sendable, Equatable {
    public var name: String
    public var state: String
    public var pid: Int?
    public var restarts: Int
    public var ready: Bool
    public var enabled: Bool
    /// Why it is in this state, when the supervisor says (`last_exit`, `detail`).
    public var why: String?

    /// Failed, or restarting: what the bubble counts as an alert.
    public var isAlert: Bool { state == "failed" || state == "backoff" }

    public init(name: String, state: String, pid: Int? = nil, restarts: Int = 0, ready: Bool = false, enabled: Bool = true, why: String? = nil) {
        self.name = name
        self.state = state
        self.pid = pid
        self.restarts = restarts
        self.ready = ready
        self.enabled = enabled
        self.why = why
    }

    /// The body of a `status json` answer on /run/spirit/control.sock
    /// (Supervisor's `StatusReport.json`): `{"now_ms":…,"services":[{"name",
    /// "state","pid","restarts","ready","enabled","since_ms","last_exit"?,
    /// "detail"?}…]}`. The control protocol's `ok` line, if still there, is skipped.
    public static func parse(_ text: String) throws(SampleError) -> [ServiceSummary] {
        var body = Substring(text)
        if body.hasPrefix("ok\n") { body = body.dropFirst(3) }
        let document: JSONValue
        do {
            document = try JSONReader.parse(String(body))
        } catch {
            throw SampleError("spiritctl status --json", "\(error)")
        }
        guard case .array(let items)? = document["services"] else {
            throw SampleError("spiritctl status --json", "no \"services\" list")
        }
        var out: [ServiceSummary] = []
        for (index, item) in items.enumerated() {
            guard let name = item["name"]?.string, let state = item["state"]?.string else {
                throw SampleError("spiritctl status --json", "service \(index + 1) has no name or state")
            }
            func flag(_ key: String) -> Bool { if case .bool(let value)? = item[key] { value } else { false } }
            let reasons = [item["detail"]?.string, item["last_exit"]?.string].compactMap { $0 }.filter { !$0.isEmpty }
            out.append(ServiceSummary(name: name, state: state, pid: item["pid"]?.integer.map { Int($0) },
                                      restarts: Int(item["restarts"]?.integer ?? 0), ready: flag("ready"),
                                      enabled: item["enabled"] == nil ? true : flag("enabled"),
                                      why: reasons.isEmpty ? nil : reasons.joined(separator: "; ")))
        }
        return out
    }
}

// MARK: The kernel log (/dev/kmsg)

/// One record of /dev/kmsg: `priority,sequence,microseconds,flags;message`,
/// then continuation lines (` KEY=value`) that the HUD does not show.
public struct KernelLogLine: Sendable, Equatable {
    /// 0 (emergency) to 7 (debug).
    public var level: Int
    public var sequence: UInt64
    public var micros: UInt64
    public var message: String

    public init(level: Int, sequence: UInt64, micros: UInt64, message: String) {
        self.level = level
        self.sequence = sequence
        self.micros = micros
        self.message = message
    }

    /// Errors and worse (levels 0–3): shown in the warning colour.
    public var isError: Bool { level <= 3 }

    /// `[    1.234567] message`, as dmesg prints it.
    public var text: String {
        let seconds = String(micros / 1_000_000)
        let fraction = String(micros % 1_000_000)
        return "[" + String(repeating: " ", count: max(0, 5 - seconds.count)) + seconds + "."
            + String(repeating: "0", count: 6 - fraction.count) + fraction + "] " + message
    }

    /// One record as a read of /dev/kmsg returns it. The kernel escapes
    /// unprintable bytes as `\xNN`; they are decoded, and control
    /// characters become spaces so a line stays one line.
    public static func parse(_ record: String) throws(SampleError) -> KernelLogLine {
        let firstLine = record.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard let semicolon = firstLine.firstIndex(of: ";") else {
            throw SampleError("/dev/kmsg", "'\(firstLine)' has no ';' after its prefix")
        }
        let prefix = firstLine[..<semicolon].split(separator: ",", omittingEmptySubsequences: false)
        guard prefix.count >= 4, let priority = Int(prefix[0]), let sequence = UInt64(prefix[1]), let micros = UInt64(prefix[2]) else {
            throw SampleError("/dev/kmsg", "'\(firstLine[..<semicolon])' is not priority,sequence,microseconds,flags")
        }
        return KernelLogLine(level: priority & 7, sequence: sequence, micros: micros,
                             message: unescape(firstLine[firstLine.index(after: semicolon)...]))
    }

    static func unescape(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        let utf8 = Array(text.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count, utf8[index + 1] == UInt8(ascii: "x"),
               let value = UInt8(String(decoding: utf8[(index + 2)...(index + 3)], as: UTF8.self), radix: 16) {
                bytes.append(value < 0x20 || value == 0x7F ? 0x20 : value)
                index += 4
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The last lines of the kernel log, as many as the widget shows.
public struct KernelLogTail: Sendable, Equatable {
    public let capacity: Int
    public private(set) var lines: [KernelLogLine] = []

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Adds a record; one already seen (same sequence number, as after
    /// reopening /dev/kmsg) is ignored.
    public mutating func append(_ line: KernelLogLine) {
        if let last = lines.last, line.sequence <= last.sequence { return }
        lines.append(line)
        if lines.count > capacity { lines.removeFirst(lines.count - capacity) }
    }
}
