import Glibc
import SpiritCore

/// `spirit journal [--json] [--follow] [-n N] [--dir DIR]` and
/// `spirit journal verify [--dir DIR]`: the chained journal of the boot's
/// decisions, the services, upgrades, `spirit ask` and the Sentinel (see
/// Journal.swift), for people, as its JSON lines, or checked.
enum JournalCommand {
    static let usage = "journal [--json] [--follow] [-n N] [--dir DIR] | journal verify [--dir DIR]"

    static func run(_ arguments: [String]) -> Int32 {
        var json = false, follow = false, verify = false
        var count: Int?
        var directory = "/run/log"
        var rest = arguments[...]
        while let word = rest.popFirst() {
            switch word {
            case "--json": json = true
            case "-f", "--follow": follow = true
            case "verify" where !verify: verify = true
            case "-n":
                guard let value = rest.popFirst(), let number = Int(value), number >= 0 else {
                    return Usage.fail("-n takes a number of records; usage: spirit \(usage)")
                }
                count = number
            case "--dir":
                guard let value = rest.popFirst() else { return Usage.fail("--dir takes a DIR; usage: spirit \(usage)") }
                directory = value
            default:
                return Usage.fail("unexpected '\(word)'; usage: spirit \(usage)")
            }
        }
        let journal = JournalFile(directory: directory, process: "journal")
        if verify {
            guard !json, !follow, count == nil else { return Usage.fail("verify takes only --dir; usage: spirit \(usage)") }
            return check(journal)
        }
        return exitStatus {
            var bytes: [UInt8] = []
            if Kernel.exists(journal.rotatedPath) { bytes = try Kernel.readFile(journal.rotatedPath) }
            let current = try Kernel.readFile(journal.path)
            bytes += current
            var lines = bytes.split(separator: UInt8(ascii: "\n"))[...]
            if let count { lines = lines.suffix(count) }
            for line in lines { show(line, json: json) }
            if follow { try self.follow(journal, from: Int64(current.count), json: json) }
        }
    }

    static func check(_ journal: JournalFile) -> Int32 {
        do {
            let check = try journal.verify()
            if let problem = check.problem {
                Console.tool.error("journal: \(problem)")
                print("records before it that check out: \(check.records); their head: \(check.head)")
                return 1
            }
            print("journal: \(check.records) records, the chain is whole; head \(check.head)")
            return 0
        } catch {
            Console.tool.error("\(error)")
            return 111
        }
    }

    static func show(_ line: some Collection<UInt8>, json: Bool) {
        if json {
            print(String(decoding: line, as: UTF8.self))
        } else if let record = try? JournalRecord.parse(line) {
            print(record.summary)
        } else {
            print("?? " + String(decoding: line, as: UTF8.self))
        }
    }

    /// New records as they are written, by their size: after a rotation
    /// (the file is shorter), from the new file's start.
    static func follow(_ journal: JournalFile, from start: Int64, json: Bool) throws -> Never {
        var offset = start
        var pending: [UInt8] = []
        while true {
            Kernel.sleep(milliseconds: 250)
            guard let size = try? Kernel.status(journal.path).size else { continue }
            if size < offset { offset = 0; pending = [] }
            guard size > offset else { continue }
            let fd = try Kernel.open(journal.path, O_RDONLY)
            var bytes = [UInt8](repeating: 0, count: Int(size - offset))
            let read = bytes.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in try Kernel.read(fd, into: raw, at: offset, journal.path) }
            }
            Kernel.close(fd)
            try read.get()
            offset = size
            pending += bytes
            while let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                show(pending[..<end], json: json)
                pending.removeSubrange(...end)
            }
            fflush(nil) // a pipe (`spirit journal -f | grep`) sees each record as it comes
        }
    }
}
