import SpiritCore

/// What a command run in the guest gave back (`guest-exec-status`).
public struct GuestExecResult: Sendable, Equatable {
    public var exitCode: Int32?
    /// The signal that ended it, when one did (Linux guests).
    public var signal: Int32?
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    /// The agent keeps at most 16 MiB of each stream.
    public var stdoutTruncated: Bool
    public var stderrTruncated: Bool

    public init(exitCode: Int32?, signal: Int32? = nil, stdout: [UInt8] = [], stderr: [UInt8] = [],
                stdoutTruncated: Bool = false, stderrTruncated: Bool = false) {
        self.exitCode = exitCode
        self.signal = signal
        self.stdout = stdout
        self.stderr = stderr
        self.stdoutTruncated = stdoutTruncated
        self.stderrTruncated = stderrTruncated
    }

    /// The status a shell gives the command: its exit code, or 128 + the signal.
    public var shellStatus: Int32 {
        if let signal { return 128 + signal }
        return exitCode ?? 1
    }

    /// A finished `guest-exec-status` answer, or nil while it runs.
    public static func decode(_ value: JSONValue) throws(VMError) -> GuestExecResult? {
        guard let exited = value["exited"]?.bool else {
            throw VMError("the guest agent's guest-exec-status answer has no 'exited': \(value.text)")
        }
        guard exited else { return nil }
        func data(_ key: String) throws(VMError) -> [UInt8] {
            guard let text = value[key]?.string else { return [] }
            guard let bytes = Base64.decode(text) else { throw VMError("the guest agent's \(key) is not base64") }
            return bytes
        }
        return GuestExecResult(exitCode: value["exitcode"]?.integer.map { Int32(truncatingIfNeeded: $0) },
                               signal: value["signal"]?.integer.map { Int32(truncatingIfNeeded: $0) },
                               stdout: try data("out-data"), stderr: try data("err-data"),
                               stdoutTruncated: value["out-truncated"]?.bool ?? false,
                               stderrTruncated: value["err-truncated"]?.bool ?? false)
    }
}

/// The qemu-guest-agent protocol, unchanged (qemu-ga on Linux, qemu-ga.exe
/// from virtio-win on Windows). The agent has no greeting and no ids: a
/// reply is the next line. So every (re)connection, and every restore,
/// starts with `sync`: a 0xFF byte resets the agent's parser, then
/// `guest-sync-delimited` with a fresh number; whatever comes before the
/// answer carrying that number (the parse error the 0xFF causes, a late
/// answer to a command that timed out, 0xFF bytes) is thrown away.
public final class GuestAgentClient {
    let stream: any ByteStream
    let clock: any VMClock
    var lines = LineBuffer()
    var nextSyncID: Int64
    public private(set) var synchronized = false

    public init(stream: any ByteStream, clock: any VMClock, firstSyncID: Int64 = 1_000_001) {
        self.stream = stream
        self.clock = clock
        self.nextSyncID = firstSyncID
    }

    static func request(_ command: String, _ arguments: [(String, JSONValue)]?) -> [UInt8] {
        var members: [(String, JSONValue)] = [("execute", .string(command))]
        if let arguments { members.append(("arguments", .object(arguments))) }
        return Array((JSONValue.object(members).text + "\n").utf8)
    }

    /// Resynchronises; false when the agent did not answer in time (not
    /// running yet, or the guest has no agent).
    public func sync(milliseconds: Int = 1000) throws(VMError) -> Bool {
        synchronized = false
        let id = nextSyncID
        nextSyncID += 1
        try stream.send([0xFF] + Self.request("guest-sync-delimited", [("id", .int(id))]))
        let deadline = clock.nowMilliseconds + Int64(milliseconds)
        while let value = try nextLine(until: deadline) {
            if value["return"]?.integer == id {
                synchronized = true
                return true
            }
        }
        return false
    }

    /// One command and its `return`; an `error` answer is thrown verbatim.
    @discardableResult
    public func execute(_ command: String, _ arguments: [(String, JSONValue)]? = nil, milliseconds: Int = 5000) throws(VMError) -> JSONValue {
        try stream.send(Self.request(command, arguments))
        let deadline = clock.nowMilliseconds + Int64(milliseconds)
        guard let value = try nextLine(until: deadline) else {
            synchronized = false
            throw VMError("the guest agent did not answer \(command) within \(milliseconds) ms")
        }
        if let result = value["return"] { return result }
        if let error = value["error"] {
            throw VMError("the guest agent refused \(command): \(error["desc"]?.string ?? error.text)")
        }
        synchronized = false
        throw VMError("the guest agent answered \(command) with \(value.text)")
    }

    /// Runs `path` with `arguments` in the guest, waits for its end (polling
    /// `guest-exec-status`, 20 ms at first, then doubling up to 200 ms) for
    /// at most `milliseconds`, and returns its output and status.
    public func exec(_ path: String, _ arguments: [String], input: [UInt8]? = nil, milliseconds: Int) throws(VMError) -> GuestExecResult {
        var request: [(String, JSONValue)] = [("path", .string(path)), ("arg", .array(arguments.map { .string($0) })),
                                              ("capture-output", .bool(true))]
        if let input { request.append(("input-data", .string(Base64.encode(input)))) }
        let started = try execute("guest-exec", request)
        guard let pid = started["pid"]?.integer else {
            throw VMError("the guest agent's guest-exec answer has no pid: \(started.text)")
        }
        let deadline = clock.nowMilliseconds + Int64(milliseconds)
        var pause = 20
        while true {
            let status = try execute("guest-exec-status", [("pid", .int(pid))])
            if let result = try GuestExecResult.decode(status) { return result }
            if clock.nowMilliseconds >= deadline {
                throw VMError("\(path) did not end within \(milliseconds / 1000) s (it still runs in the guest as pid \(pid))")
            }
            clock.sleep(milliseconds: min(pause, Int(max(1, deadline - clock.nowMilliseconds))))
            pause = min(pause * 2, 200)
        }
    }

    /// Asks the guest to power off. The agent sends no answer on success
    /// (`success-response: false`); an error it sends at once is thrown,
    /// and a socket that closes meanwhile is the guest going down.
    public func shutdown(waitMilliseconds: Int = 200) throws(VMError) {
        try stream.send(Self.request("guest-shutdown", [("mode", .string("powerdown"))]))
        let answer: JSONValue?
        do {
            answer = try nextLine(until: clock.nowMilliseconds + Int64(waitMilliseconds))
        } catch {
            return
        }
        if let error = answer?["error"] {
            throw VMError("the guest agent refused guest-shutdown: \(error["desc"]?.string ?? error.text)")
        }
    }

    /// Sets the guest's clock (after a restore its clock is where it was
    /// when saved): `nanoseconds` since the epoch.
    public func setTime(nanoseconds: Int64) throws(VMError) {
        try execute("guest-set-time", [("time", .int(nanoseconds))])
    }

    /// The next JSON line, 0xFF bytes and lines that are not JSON skipped;
    /// nil at the deadline. The end of the stream is an error.
    func nextLine(until deadline: Int64) throws(VMError) -> JSONValue? {
        while true {
            while let raw = lines.nextLine() {
                let line = raw.filter { $0 != 0xFF && $0 != 0x0D }
                if line.isEmpty { continue }
                if let value = try? JSONReader.parse(line) { return value }
            }
            let left = deadline - clock.nowMilliseconds
            if left <= 0 { return nil }
            guard let bytes = try stream.receive(milliseconds: Int(left)) else { return nil }
            if bytes.isEmpty {
                synchronized = false
                throw VMError("the guest agent's socket closed (QEMU ended?)")
            }
            lines.append(bytes)
        }
    }
}
