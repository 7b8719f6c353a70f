/// What Spirit's daemons read of one another and of the kernel: the
/// supervisor's `status json` (the HUD's services widget and the Sentinel)
/// and /dev/kmsg records (the HUD's kernel log widget and the Sentinel's
/// kernel collector). Here, on SpiritCore, because daemons never import one
/// another.

/// Readings of /proc, /sys or another daemon that could not be understood:
/// the source and what is wrong (the HUD shows it instead of its numbers).
public struct SampleError: Error, Sendable, Equatable, CustomStringConvertible {
    public var source: String
    public var reason: String

    public init(_ source: String, _ reason: String) {
        self.source = source
        self.reason = reason
    }

    public var description: String { "\(source): \(reason)" }
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
