import Glibc
import Sentinel
import SpiritCore
import Testing

@Suite struct ServiceLogTests {
    @Test func errorLinesAreFoundInAnyCaseAndNegationsAreNot() {
        #expect(LogErrors.error(in: "1234.567 ERROR: disk on fire") == "ERROR: disk on fire")
        #expect(LogErrors.error(in: "1234.567 level=error msg=\"no route\"") != nil)
        #expect(LogErrors.error(in: "Traceback (most recent call last):") != nil)
        #expect(LogErrors.error(in: "12.000 thread 'main' panicked at src/main.rs") != nil)
        #expect(LogErrors.error(in: "12.000 Segmentation fault (core dumped)") != nil)
        #expect(LogErrors.error(in: "12.000 finished with 0 errors") == nil)
        #expect(LogErrors.error(in: "12.000 no error") == nil)
        #expect(LogErrors.error(in: "12.000 serving on :10809") == nil)
        #expect(LogErrors.error(in: "12.000 terrorist-free zone") == nil, "a word, not a substring")
        // The supervisor's own notes are its events, not the service's words.
        #expect(LogErrors.error(in: "12.000 spirit: exited with status 1 (error)") == nil)
        #expect(LogErrors.error(in: "12.000 " + String(repeating: "x", count: 500) + " error")!.count == 240)
    }

    @Test func zramTakesItsShareOfTheRAM() throws {
        let zram = try ZramStats.parse("1073741824 268435456 300000000 0 300000000 0 0 0 0\n")
        #expect(Int(zramRAMPercent(zram, memoryTotal: 1_200_000_000)) == 25)
        #expect(zramRAMPercent(zram, memoryTotal: 0) == 0)
    }

    @Test func theTailReadsOnlyNewLinesAcrossRotationAndNewLogs() throws {
        var template = Array("/tmp/spirit-logs-XXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        defer { _ = system("rm -rf '\(directory)'") }
        func append(_ name: String, _ text: String) throws { try Kernel.writeFile(directory + "/" + name, text, append: true) }
        try append("web.log", "1.0 error: old, before the Sentinel\n")
        try append("spirit.log", "1.0 web: error\n")
        var tail = ServiceLogTail(directory: directory)
        #expect(tail.read().isEmpty, "what was there at the start is history")

        try append("web.log", "2.0 ok\n2.1 fatal: gone\n2.2 half a li")
        try append("sentinel.log", "2.0 incident log-errors: error\n")
        try append("db.log", "2.0 ERROR one\n")
        var seen = tail.read()
        #expect(seen.compactMap(\.subject).sorted() == ["db", "web"], "a log that appears later is read from its start; spirit and sentinel are not read")
        #expect(seen.allSatisfy { $0.signal == .serviceLogError })
        #expect(seen.first { $0.subject == "web" }?.evidence == ["web.log: fatal: gone"])

        // The half line waits for its end; then the log rotates and the rest of the old file is read too.
        try append("web.log", "ne error\n")
        #expect(rename(directory + "/web.log", directory + "/web.log.1") == 0)
        try append("web.log.1", "3.0 panic in the old file\n")
        try append("web.log", "4.0 error in the new file\n")
        seen = tail.read()
        #expect(seen.flatMap(\.evidence) == ["web.log: half a line error", "web.log: panic in the old file", "web.log: error in the new file"])
        #expect(tail.read().isEmpty)
    }
}
