import Glibc
import SpiritCore
import Testing

@Suite struct JournalTests {
    /// A chain of `count` records as the file holds them.
    static func chain(_ count: Int, link: String = JournalRecord.zeroHash) -> [JournalRecord] {
        var records: [JournalRecord] = []
        var prev = link
        for seq in 1...count {
            let record = JournalRecord(seq: Int64(seq), timeMillis: Int64(seq * 100), wallSeconds: seq == 1 ? nil : 1_795_000_000 + Int64(seq),
                                       kind: "service.start", process: "supervisor",
                                       fields: [("service", "svc\(seq)"), ("reason", "boot \"quoted\"\n")], prev: prev)
            records.append(record)
            prev = record.hash
        }
        return records
    }

    static func file(_ records: [JournalRecord]) -> [UInt8] {
        Array(records.map { $0.line + "\n" }.joined().utf8)
    }

    @Test func recordRoundTripsAndHashesItsCanonicalForm() throws {
        let record = Self.chain(1)[0]
        #expect(record.hash.count == 64)
        #expect(record.canonical == #"{"seq":1,"time_ms":100,"kind":"service.start","process":"supervisor","fields":{"service":"svc1","reason":"boot \"quoted\"\n"},"prev":"\#(JournalRecord.zeroHash)"}"#)
        #expect(record.hash == Hex.encode(SHA256Digest.of(Array(record.canonical.utf8))))
        let back = try JournalRecord.parse(Array(record.line.utf8))
        #expect(back == record)
        #expect(back.hashMatches)
        #expect(back.fields.map(\.0) == ["service", "reason"])
    }

    @Test func commandLinePairsBecomeFieldsInOrder() throws {
        let fields = try #require(JournalRecord.fields(pairs: ["root", "switched", "mount_problems", "0"]))
        #expect(fields.map(\.0) == ["root", "mount_problems"] && fields.map(\.1) == ["switched", "0"])
        #expect(JournalRecord.fields(pairs: [String]())?.isEmpty == true)
        #expect(JournalRecord.fields(pairs: ["root", "switched", "alone"]) == nil)
    }

    @Test func aWholeChainVerifies() {
        let records = Self.chain(5)
        let check = Journal.verify(Self.file(records))
        #expect(check.problem == nil)
        #expect(check.records == 5)
        #expect(check.head == records[4].hash)
        #expect(Journal.verify([]).problem == nil)
    }

    @Test func aFlippedByteIsAnEditedRecord() {
        var bytes = Self.file(Self.chain(4))
        // The third record's "svc3" becomes "svd3": still JSON, not the hash.
        let text = String(decoding: bytes, as: UTF8.self)
        let at = text.utf8.distance(from: text.startIndex, to: text.firstRange(of: "svc3")!.lowerBound) + 2
        #expect(bytes[at] == UInt8(ascii: "c"))
        bytes[at] = UInt8(ascii: "d")
        let check = Journal.verify(bytes)
        #expect(check.problem?.line == 3)
        #expect(check.problem?.seq == 3)
        #expect(check.problem?.kind == .edited)
        #expect(check.records == 2)
    }

    @Test func aFlippedByteThatBreaksTheJSONIsNamedToo() {
        var bytes = Self.file(Self.chain(3))
        let second = bytes.firstIndex(of: UInt8(ascii: "\n"))! + 1
        bytes[second] = UInt8(ascii: "[")
        #expect(Journal.verify(bytes).problem?.line == 2)
        #expect(Journal.verify(bytes).problem?.kind == .cut)
    }

    @Test func spacesAddedToARecordAreAnEdit() {
        var records = Self.file(Self.chain(2))
        records.insert(UInt8(ascii: " "), at: 1)
        #expect(Journal.verify(records).problem?.kind == .edited)
        #expect(Journal.verify(records).problem?.line == 1)
    }

    @Test func aRemovedRecordBreaksTheLink() {
        var records = Self.chain(5)
        records.remove(at: 2)
        let check = Journal.verify(Self.file(records))
        #expect(check.problem?.line == 3)
        #expect(check.problem?.seq == 4)
        #expect(check.problem?.kind == .unlinked)
        #expect(check.problem?.description.contains("removed") == true)
    }

    @Test func aReorderedPairBreaksTheLink() {
        var records = Self.chain(5)
        records.swapAt(1, 2)
        let check = Journal.verify(Self.file(records))
        #expect(check.problem?.line == 2)
        #expect(check.problem?.seq == 3)
        #expect(check.problem?.kind == .unlinked)
    }

    @Test func aTruncatedFileIsCut() {
        let bytes = Self.file(Self.chain(3))
        let check = Journal.verify(Array(bytes.dropLast(20)))
        #expect(check.problem?.line == 3)
        #expect(check.problem?.kind == .cut)
        #expect(check.records == 2)
        // Cut just before the last newline: the record reads, but was not finished.
        #expect(Journal.verify(Array(bytes.dropLast())).problem?.kind == .cut)
    }

    @Test func theFirstRecordMustHoldTheLinkGiven() {
        let head = Self.chain(1)[0].hash
        let next = Self.chain(2, link: head)
        #expect(Journal.verify(Self.file(next), link: head).problem == nil)
        #expect(Journal.verify(Self.file(next), link: JournalRecord.zeroHash).problem?.kind == .unlinked)
    }

    @Test func lastRecordSkipsACutLine() {
        let records = Self.chain(3)
        var bytes = Self.file(records)
        bytes += Array("{\"seq\":4,\"ti".utf8)
        #expect(Journal.lastRecord(bytes) == records[2])
        #expect(Journal.lastRecord(Array(bytes.suffix(records[2].line.utf8.count + 30))) == records[2])
        #expect(Journal.lastRecord([UInt8]()) == nil)
    }

    @Test func parseRefusesWhatIsNotARecord() {
        #expect(throws: SpiritError.self) { try JournalRecord.parse(Array("{}".utf8)) }
        #expect(throws: SpiritError.self) { try JournalRecord.parse(Array("not json".utf8)) }
        #expect(throws: SpiritError.self) {
            try JournalRecord.parse(Array(#"{"seq":1,"time_ms":1,"kind":"k","process":"p","fields":{"n":1},"prev":"","hash":""}"#.utf8))
        }
    }

    @Test func writersAppendLinkAndRotate() throws {
        var template = Array("/tmp/spirit-journal-XXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        defer { _ = system("rm -rf '\(directory)'") }
        let worker = JournalFile(directory: directory + "/run/log", process: "worker", capBytes: 1500)
        let supervisor = JournalFile(directory: directory + "/run/log", process: "supervisor", capBytes: 1500)
        let first = try worker.write("boot.flags", [("flags", "crom.debug=1")])
        #expect(first.seq == 1 && first.prev == JournalRecord.zeroHash)
        let second = try supervisor.write("service.start", [("service", "sshd")])
        #expect(second.seq == 2 && second.prev == first.hash)
        // A write cut short: the next record starts its own line and links
        // to the last whole one; verify names the cut line.
        try Kernel.writeFile(worker.path, "{\"seq\":3,\"tim", append: true)
        let third = try worker.write("boot.ready")
        #expect(third.prev == second.hash && third.seq == 3)
        #expect(try worker.verify().problem?.line == 3)
        #expect(try worker.verify().problem?.kind == .cut)
        // Past the cap, the file rotates and the new one links to the old head.
        try Kernel.writeFile(worker.path, String(decoding: Self.file(Self.chain(1)), as: UTF8.self))
        var last = Self.chain(1)[0]
        for _ in 0..<12 { last = try worker.write("service.restart", [("service", "sentinel"), ("reason", "exited 1")]) }
        #expect(Kernel.exists(worker.rotatedPath))
        let check = try worker.verify()
        #expect(check.problem == nil)
        #expect(check.head == last.hash)
        #expect(worker.head() == last)
        let kept = try Journal.verify(Kernel.readFile(worker.rotatedPath)).records
        let current = try Journal.verify(Kernel.readFile(worker.path)).records
        #expect(check.records == kept + current && kept > 1)
    }

    @Test func aLockHeldTooLongIsAnErrorNotAHang() throws {
        var template = Array("/tmp/spirit-journal-lock-XXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        defer { _ = system("rm -rf '\(directory)'") }
        let path = directory + "/journal.lock"
        let holder = try Kernel.open(path, O_RDWR | O_CREAT)
        try Kernel.lock(holder, path, milliseconds: 50)
        let waiter = try Kernel.open(path, O_RDWR)
        defer { Kernel.close(waiter) }
        let start = Kernel.bootTimeMicros()
        #expect(throws: SystemError.self) { try Kernel.lock(waiter, path, milliseconds: 50) }
        #expect(Kernel.bootTimeMicros() - start < 1_000_000)
        Kernel.close(holder)
        try Kernel.lock(waiter, path, milliseconds: 50)
    }
}

extension JournalFile {
    fileprivate func write(_ kind: String) throws -> JournalRecord { try write(kind, []) }
}
