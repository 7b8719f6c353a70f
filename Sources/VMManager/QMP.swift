import SpiritCore

/// One message QEMU sends on its QMP socket (one JSON object a line).
public enum QMPMessage: Sendable, Equatable {
    case greeting(version: String, package: String)
    case reply(id: String?, JSONValue)
    /// `{"error": {"class": …, "desc": …}}`: the text is kept verbatim.
    case error(id: String?, errorClass: String, description: String)
    case event(QMPEvent)

    public static func decode(_ line: [UInt8]) throws(VMError) -> QMPMessage {
        let value: JSONValue
        do {
            value = try JSONReader.parse(line)
        } catch {
            throw VMError("QMP sent something that is not JSON (\(error)): \(String(decoding: line.prefix(200), as: UTF8.self))")
        }
        let id = value["id"]?.string
        if let greeting = value["QMP"] {
            let version = greeting["version"]?["qemu"]
            let numbers = ["major", "minor", "micro"].map { version?[$0]?.integer.map(String.init) ?? "?" }
            return .greeting(version: numbers.joined(separator: "."), package: greeting["version"]?["package"]?.string ?? "")
        }
        if let result = value["return"] { return .reply(id: id, result) }
        if let error = value["error"] {
            return .error(id: id, errorClass: error["class"]?.string ?? "Error", description: error["desc"]?.string ?? error.text)
        }
        if let name = value["event"]?.string {
            return .event(QMPEvent(name: name, data: value["data"], seconds: value["timestamp"]?["seconds"]?.integer))
        }
        throw VMError("QMP sent a message that is no reply, error or event: \(value.text)")
    }
}

/// An asynchronous event (STOP, RESUME, SHUTDOWN, POWERDOWN, MIGRATION…).
public struct QMPEvent: Sendable, Equatable {
    public var name: String
    public var data: JSONValue?
    public var seconds: Int64?
    public init(name: String, data: JSONValue? = nil, seconds: Int64? = nil) {
        self.name = name
        self.data = data
        self.seconds = seconds
    }
}

/// The QMP client: greeting, `qmp_capabilities`, then one command at a
/// time, each with an `id` its reply echoes, so that events interleaved
/// with the replies (before or after them) are queued, not taken for an
/// answer. An error reply is thrown with QEMU's own words; a socket that
/// ends while a command waits is an error, never a hang.
public final class QMPClient {
    let stream: any ByteStream
    let clock: any VMClock
    var lines = LineBuffer()
    var nextID = 1
    public private(set) var events: [QMPEvent] = []
    /// QEMU's version from the greeting (`7.2.22`) and its package string.
    public private(set) var version = ""
    public private(set) var package = ""

    public init(stream: any ByteStream, clock: any VMClock) {
        self.stream = stream
        self.clock = clock
    }

    /// Reads the greeting and leaves capabilities negotiation mode.
    public func handshake(milliseconds: Int = 5000) throws(VMError) {
        let deadline = clock.nowMilliseconds + Int64(milliseconds)
        while true {
            let message = try next(until: deadline, waitingFor: "the QMP greeting")
            if case .greeting(let version, let package) = message {
                self.version = version
                self.package = package
                break
            }
            if case .event(let event) = message { events.append(event) }
        }
        _ = try execute("qmp_capabilities", milliseconds: milliseconds)
    }

    /// Runs `command` and returns its `return` value. `passing` sends a
    /// descriptor with the command (getfd).
    @discardableResult
    public func execute(_ command: String, _ arguments: [(String, JSONValue)]? = nil, passing descriptor: Int32? = nil,
                        milliseconds: Int = 10000) throws(VMError) -> JSONValue {
        let id = "spirit-\(nextID)"
        nextID += 1
        var members: [(String, JSONValue)] = [("execute", .string(command))]
        if let arguments { members.append(("arguments", .object(arguments))) }
        members.append(("id", .string(id)))
        let bytes = Array((JSONValue.object(members).text + "\n").utf8)
        if let descriptor { try stream.send(bytes, passing: descriptor) } else { try stream.send(bytes) }
        let deadline = clock.nowMilliseconds + Int64(milliseconds)
        while true {
            switch try next(until: deadline, waitingFor: "the answer to \(command)") {
            case .reply(let replyID, let value) where replyID == id:
                return value
            case .error(let replyID, let errorClass, let description) where replyID == id:
                throw VMError("QEMU refused \(command): \(description) (\(errorClass))")
            case .event(let event):
                events.append(event)
            default:
                continue // a late answer to a command that timed out
            }
        }
    }

    /// The events received so far, oldest first; the queue is emptied.
    public func takeEvents() -> [QMPEvent] {
        defer { events.removeAll() }
        return events
    }

    /// Waits for an event named `name` (one already queued counts).
    public func waitForEvent(_ name: String, milliseconds: Int) throws(VMError) -> QMPEvent? {
        if let index = events.firstIndex(where: { $0.name == name }) { return events.remove(at: index) }
        let deadline = clock.nowMilliseconds + Int64(milliseconds)
        while clock.nowMilliseconds < deadline {
            guard let message = try nextIfAny(until: deadline, waitingFor: "the event \(name)") else { return nil }
            if case .event(let event) = message {
                if event.name == name { return event }
                events.append(event)
            }
        }
        return nil
    }

    func next(until deadline: Int64, waitingFor what: String) throws(VMError) -> QMPMessage {
        guard let message = try nextIfAny(until: deadline, waitingFor: what) else {
            throw VMError("QEMU did not send \(what) in time")
        }
        return message
    }

    func nextIfAny(until deadline: Int64, waitingFor what: String) throws(VMError) -> QMPMessage? {
        while true {
            if let line = lines.nextLine() {
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) { continue }
                return try QMPMessage.decode(line)
            }
            let left = deadline - clock.nowMilliseconds
            if left <= 0 { return nil }
            guard let bytes = try stream.receive(milliseconds: Int(left)) else { return nil }
            if bytes.isEmpty { throw VMError("QEMU closed its QMP socket while waiting for \(what)") }
            lines.append(bytes)
        }
    }
}
