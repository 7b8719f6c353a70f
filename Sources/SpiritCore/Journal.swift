import Glibc

/// One record of the journal (/run/log/journal.jsonl): a boot decision, a
/// service started or stopped, an upgrade, an action of `spirit ask` or the
/// Sentinel. Records are chained: each holds the SHA-256 of the one before
/// (`prev`) and its own (`hash`, over the record's canonical line without
/// `hash`), so an edited, removed or reordered record breaks the chain.
public struct JournalRecord: Sendable, Equatable {
    public var seq: Int64
    /// Milliseconds of CLOCK_BOOTTIME: always known, even in stage 1.
    public var timeMillis: Int64
    /// CLOCK_REALTIME seconds, when the clock looks set (after 2020).
    public var wallSeconds: Int64?
    /// What happened, dotted: `boot.source`, `service.start`, `upgrade.commit`.
    public var kind: String
    /// Who wrote it: `worker`, `supervisor`, `upgrade`, `ask`, `sentinel`.
    public var process: String
    /// The details, as strings, in the order they were given.
    public var fields: [(String, String)]
    public var prev: String
    public var hash: String

    public static let zeroHash = String(repeating: "0", count: 64)

    /// A command line's `KEY VALUE...` as fields (`spirit init-journal`,
    /// `spirit supervise --record`); nil for an odd count.
    public static func fields(pairs arguments: some Collection<String>) -> [(String, String)]? {
        guard arguments.count % 2 == 0 else { return nil }
        let values = Array(arguments)
        return stride(from: 0, to: values.count, by: 2).map { (values[$0], values[$0 + 1]) }
    }

    /// A record linked to `prev`, with its hash computed.
    public init(seq: Int64, timeMillis: Int64, wallSeconds: Int64?, kind: String, process: String,
                fields: [(String, String)], prev: String) {
        self.seq = seq
        self.timeMillis = timeMillis
        self.wallSeconds = wallSeconds
        self.kind = kind
        self.process = process
        self.fields = fields
        self.prev = prev
        self.hash = ""
        self.hash = Hex.encode(SHA256Digest.of(Array(canonical.utf8)))
    }

    public static func == (lhs: JournalRecord, rhs: JournalRecord) -> Bool {
        lhs.line == rhs.line
    }

    /// The bytes the hash is taken over: the record as one JSON object with
    /// its members in a fixed order, no spaces, and no `hash`.
    public var canonical: String {
        "{" + members.joined(separator: ",") + "}"
    }

    /// The record as written: its canonical form with `hash` last.
    public var line: String {
        "{" + (members + ["\"hash\":\(jsonString(hash))"]).joined(separator: ",") + "}"
    }

    var members: [String] {
        var out = ["\"seq\":\(seq)", "\"time_ms\":\(timeMillis)"]
        if let wallSeconds { out.append("\"wall\":\(wallSeconds)") }
        out.append("\"kind\":\(jsonString(kind))")
        out.append("\"process\":\(jsonString(process))")
        out.append("\"fields\":{" + fields.map { "\(jsonString($0.0)):\(jsonString($0.1))" }.joined(separator: ",") + "}")
        out.append("\"prev\":\(jsonString(prev))")
        return out
    }

    /// Whether `hash` is the SHA-256 of the record's canonical bytes.
    public var hashMatches: Bool {
        hash == Hex.encode(SHA256Digest.of(Array(canonical.utf8)))
    }

    /// Reads one line back. Throws when it is not a journal record; a
    /// record whose text is not canonical (spaces, members moved) reads, and
    /// `verify` reports it as edited.
    public static func parse(_ line: some Collection<UInt8>) throws(SpiritError) -> JournalRecord {
        let value: JSONValue
        do {
            value = try JSONReader.parse(Array(line))
        } catch {
            throw SpiritError("not JSON: \(error)")
        }
        guard let seq = value["seq"]?.integer, let time = value["time_ms"]?.integer,
              let kind = value["kind"]?.string, let process = value["process"]?.string,
              case .object(let members)? = value["fields"],
              let prev = value["prev"]?.string, let hash = value["hash"]?.string
        else { throw SpiritError("not a journal record: seq, time_ms, kind, process, fields, prev or hash is missing") }
        var fields: [(String, String)] = []
        for (key, item) in members {
            guard let text = item.string else { throw SpiritError("the field \"\(key)\" is not a string") }
            fields.append((key, text))
        }
        var wall: Int64?
        if let item = value["wall"] {
            guard let seconds = item.integer else { throw SpiritError("\"wall\" is not a whole number") }
            wall = seconds
        }
        var record = JournalRecord(seq: seq, timeMillis: time, wallSeconds: wall, kind: kind, process: process,
                                   fields: fields, prev: prev)
        record.hash = hash
        return record
    }

    /// `   12  1234.5 ms  worker      boot.source  name=usb result=gave-up …`
    public var summary: String {
        func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, width - text.count))
            return right ? fill + text : text + fill
        }
        let when = wallSeconds.map { utcText($0) } ?? "\(formatMilliseconds(timeMillis * 1000)) ms"
        let details = fields.map { key, value in
            "\(key)=" + (value.contains(" ") || value.isEmpty ? jsonString(value) : value)
        }.joined(separator: " ")
        return pad(String(seq), 5, right: true) + "  " + pad(when, 23) + "  " + pad(process, 11) + pad(kind, 18) + details
    }
}

/// What `spirit journal verify` found.
public struct JournalCheck: Sendable, Equatable {
    /// The first record that does not fit, or nil when the chain is whole.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public enum Kind: String, Sendable {
            /// The record's hash does not match its content.
            case edited
            /// Its `prev` is not the previous record's hash.
            case unlinked
            /// Its `seq` does not follow the previous one.
            case sequence
            /// The line cannot be read as a record, or has no end of line.
            case cut
        }

        public var file: String
        public var line: Int
        public var seq: Int64?
        public var kind: Kind
        public var reason: String

        public var description: String {
            "\(file):\(line)" + (seq.map { " (seq \($0))" } ?? "") + ": \(reason)"
        }
    }

    /// Records that check out, before the problem if any.
    public var records: Int
    /// The hash of the last good record (the `prev` given when there is none).
    public var head: String
    public var problem: Problem?
}

public enum Journal {
    /// Checks a journal file's chain. `link` is the hash its first record
    /// must hold as `prev` (the head of the file before it), nil when that
    /// is not known (the first file of a boot with no saved journal).
    public static func verify(_ bytes: [UInt8], file: String = "journal.jsonl", link: String? = nil) -> JournalCheck {
        var check = JournalCheck(records: 0, head: link ?? JournalRecord.zeroHash, problem: nil)
        var previous: JournalRecord?
        var start = 0
        var number = 0
        while start < bytes.count {
            number += 1
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n"))
            let text = bytes[start..<(end ?? bytes.count)]
            start = (end ?? bytes.count) + 1
            func fail(_ kind: JournalCheck.Problem.Kind, _ seq: Int64?, _ reason: String) -> JournalCheck {
                check.problem = .init(file: file, line: number, seq: seq, kind: kind, reason: reason)
                return check
            }
            let record: JournalRecord
            do {
                record = try JournalRecord.parse(text)
            } catch {
                return fail(.cut, nil, "cannot be read (cut or damaged): \(error)")
            }
            guard Array(record.line.utf8) == Array(text), record.hashMatches else {
                return fail(.edited, record.seq, "edited: the record's hash does not match its content")
            }
            if let previous {
                guard record.prev == previous.hash else {
                    return fail(.unlinked, record.seq, "does not link to the record before it (seq \(previous.seq), line \(number - 1)): a record was removed or records were reordered")
                }
                guard record.seq == previous.seq + 1 else {
                    return fail(.sequence, record.seq, "seq \(record.seq) does not follow \(previous.seq): records were removed or reordered")
                }
            } else if let link, record.prev != link {
                return fail(.unlinked, record.seq, "does not link to the head of the journal before it (\(link.prefix(12))…): records were removed")
            }
            guard end != nil else {
                return fail(.cut, record.seq, "cut: the last record has no end of line")
            }
            previous = record
            check.records += 1
            check.head = record.hash
        }
        return check
    }

    /// The last complete record of a journal's tail (for the next append),
    /// or nil when there is none that reads.
    public static func lastRecord(_ tail: some BidirectionalCollection<UInt8>) -> JournalRecord? {
        let lines = tail.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        // A line that does not end in a newline is a cut write: skip it.
        let complete = tail.last == UInt8(ascii: "\n") ? lines[...] : lines.dropLast()
        for line in complete.reversed() {
            if let record = try? JournalRecord.parse(line) { return record }
        }
        return nil
    }
}

/// The journal in RAM: /run/log/journal.jsonl, and journal.1.jsonl, the
/// file it last rotated to.
///
/// Several processes append (PID 1 and the boot worker in stage 1, the
/// supervisor, `spirit upgrade`, `spirit ask` in the user's shell, the
/// Sentinel). Each appends itself under flock(2) on journal.lock rather
/// than through the supervisor's socket: the boot worker writes before any
/// supervisor runs, and a record of the supervisor stopping must not need
/// the supervisor. The lock is a file of its own so that rotation (a
/// rename) cannot leave a writer holding the lock of the old file.
public struct JournalFile: Sendable {
    public var directory: String
    public var process: String
    /// When journal.jsonl reaches this size it becomes journal.1.jsonl
    /// (replacing the one before) and a new file starts, its first record
    /// linked to the last of the old: at most twice this in RAM.
    public var capBytes: Int64

    public static let defaultCapBytes: Int64 = 1 << 20

    public init(directory: String = "/run/log", process: String, capBytes: Int64 = JournalFile.defaultCapBytes) {
        self.directory = directory
        self.process = process
        self.capBytes = capBytes
    }

    public var path: String { directory + "/journal.jsonl" }
    public var rotatedPath: String { directory + "/journal.1.jsonl" }
    var lockPath: String { directory + "/journal.lock" }

    /// Appends a record. A journal that cannot be written must not stop
    /// what it records (the boot, a restart): the error is returned for the
    /// caller to show.
    @discardableResult
    public func append(_ kind: String, _ fields: [(String, String)] = []) -> SystemError? {
        do {
            _ = try write(kind, fields)
            return nil
        } catch {
            return error
        }
    }

    /// Appends a record and returns it.
    public func write(_ kind: String, _ fields: [(String, String)]) throws(SystemError) -> JournalRecord {
        try Kernel.makeDirectory(directory, parents: true)
        let lock = try Kernel.open(lockPath, O_RDWR | O_CREAT, mode: 0o644)
        defer { Kernel.close(lock) } // closing releases the lock
        // A writer holds it for one append: two seconds is far more than enough.
        try Kernel.lock(lock, lockPath, milliseconds: 2000)
        var fd = try Kernel.open(path, O_RDWR | O_CREAT | O_APPEND, mode: 0o644)
        defer { Kernel.close(fd) }
        var size = try Kernel.status(of: fd, path).size
        if size >= capBytes {
            Kernel.close(fd)
            try Kernel.renameFile(path, to: rotatedPath)
            fd = try Kernel.open(path, O_RDWR | O_CREAT | O_APPEND, mode: 0o644)
            size = 0
        }
        var last: JournalRecord?
        if size > 0 {
            let (tail, complete) = try Self.tail(fd, size: size, path)
            last = Journal.lastRecord(tail)
            // A write cut short (a crash): end its line so that this record
            // starts its own; `verify` names the cut one.
            if !complete { try Kernel.write(fd, "\n", path) }
        } else if let rotated = try? Kernel.readFile(rotatedPath) {
            last = Journal.lastRecord(rotated)
        }
        let now = Int64(time(nil))
        let record = JournalRecord(seq: (last?.seq ?? 0) + 1, timeMillis: Kernel.bootTimeMicros() / 1000,
                                   wallSeconds: now >= 1_577_836_800 ? now : nil, kind: kind, process: process,
                                   fields: fields, prev: last?.hash ?? JournalRecord.zeroHash)
        try Kernel.write(fd, record.line + "\n", path)
        return record
    }

    /// The last 64 KiB of the file (all of it when no whole record is in
    /// them), and whether it ends with a newline.
    static func tail(_ fd: CInt, size: Int64, _ path: String) throws(SystemError) -> ([UInt8], Bool) {
        var count = min(size, 65536)
        while true {
            var bytes = [UInt8](repeating: 0, count: Int(count))
            try bytes.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in try Kernel.read(fd, into: raw, at: size - count, path) }
            }.get()
            if count == size || Journal.lastRecord(bytes) != nil { return (bytes, bytes.last == UInt8(ascii: "\n")) }
            count = size
        }
    }

    /// Checks journal.1.jsonl (when there is one) and journal.jsonl, the
    /// second linked to the first.
    public func verify() throws(SystemError) -> JournalCheck {
        var link: String?
        var records = 0
        if Kernel.exists(rotatedPath) {
            let check = Journal.verify(try Kernel.readFile(rotatedPath), file: rotatedPath)
            if check.problem != nil { return check }
            link = check.head
            records = check.records
        }
        var check = Journal.verify(try Kernel.readFile(path), file: path, link: link)
        check.records += records
        return check
    }

    /// The last record (its hash is the head), or nil when there is no
    /// journal; read from the file's tail (`spiritctl status` asks often).
    public func head() -> JournalRecord? {
        guard let fd = try? Kernel.open(path, O_RDONLY) else { return nil }
        defer { Kernel.close(fd) }
        guard let size = try? Kernel.status(of: fd, path).size, size > 0,
              let (tail, _) = try? Self.tail(fd, size: size, path) else { return nil }
        return Journal.lastRecord(tail)
    }
}
