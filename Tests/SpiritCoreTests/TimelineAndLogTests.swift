import Glibc
import SpiritCore
import SystemPackage
import Testing

@Suite struct TimelineTests {
    @Test func millisecondsFromMicroseconds() {
        #expect(formatMilliseconds(0) == "0.000")
        #expect(formatMilliseconds(1) == "0.001")
        #expect(formatMilliseconds(2_684_611) == "2684.611")
        #expect(formatMilliseconds(1_000_000) == "1000.000")
        #expect(formatMilliseconds(-1500) == "-1.500")
    }

    @Test func stepAsJSON() {
        let step = TimelineStep(step: "modules", process: "worker", pid: 86, startMicros: 3_945_049, endMicros: 5_419_742,
                                ok: true, detail: "48 \"loaded\"\n")
        #expect(step.json == #"{"step":"modules","process":"worker","pid":86,"start_ms":3945.049,"end_ms":5419.742,"duration_ms":1474.693,"ok":true,"detail":"48 \"loaded\"\n"}"#)
    }

    @Test func jsonEscapes() {
        #expect(jsonString("a\\b\t\u{1}é") == #""a\\b\t\u0001é""#)
    }

    @Test func documentWrapsTheJournal() {
        let journal = "{\"step\":\"a\"}\n{\"step\":\"b\"}\nhalf-writ"
        #expect(Timeline.document(journal: journal) == "{\"clock\":\"CLOCK_BOOTTIME\",\"unit\":\"ms\",\"steps\":[\n{\"step\":\"a\"},\n{\"step\":\"b\"}\n]}\n")
    }

    @Test func recordAppendsAndRewritesTheDocument() throws {
        var template = Array("/tmp/spirit-timeline-XXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        defer { _ = system("rm -rf '\(directory)'") }
        let timeline = Timeline(directory: directory + "/run/spirit", process: "test")
        #expect(timeline.record(TimelineStep(step: "one", process: "test", pid: 1, startMicros: 0, endMicros: 5, ok: true)) == nil)
        let value = try timeline.measure("two") { 42 }
        #expect(value == 42)
        #expect(throws: SpiritError.self) {
            try timeline.measure("three") { () throws -> Int in throw SpiritError("broken") }
        }
        let document = try Kernel.readText(timeline.documentPath)
        #expect(document.hasPrefix("{\"clock\":\"CLOCK_BOOTTIME\""))
        let steps = document.split(separator: "\n").filter { $0.hasPrefix("{\"step\"") }
        #expect(steps.count == 3)
        #expect(steps[2].contains("\"step\":\"three\"") && steps[2].contains("\"ok\":false") && steps[2].contains("\"detail\":\"broken\""))
    }
}

@Suite struct LogFormatTests {
    @Test func consoleLinesStartWithSpirit() {
        #expect(LogFormat.consoleLines(.info, "ready") == ["spirit: ready"])
        #expect(LogFormat.consoleLines(.warning, "crom.x=1: unknown") == ["spirit: warning: crom.x=1: unknown"])
        #expect(LogFormat.consoleLines(.error, "unable to mount") == ["spirit: error: unable to mount"])
        #expect(LogFormat.consoleLines(.debug, "a\nb") == ["spirit: debug: a", "spirit: debug: b"])
        #expect(LogFormat.consoleLines(.critical, "rescue: no image", untagged: true) == ["spirit: rescue: no image"])
    }

    @Test func kmsgLinesCarryFacilityUserAndLevel() {
        #expect(LogFormat.kmsgLines(.info, "ready") == ["<14>spirit: ready"])
        #expect(LogFormat.kmsgLines(.warning, "w") == ["<12>spirit: warning: w"])
        #expect(LogFormat.kmsgLines(.error, "e\nf") == ["<11>spirit: error: e", "<11>spirit: error: f"])
    }
}

@Suite struct MountTests {
    @Test func specPrintsAsTheShellCommand() {
        #expect(EarlyMounts.table[0].description == "mount -t proc -o nosuid,nodev,noexec proc /proc")
        #expect(EarlyMounts.table.map(\.target) == ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run"])
        let remount = MountSpec(source: "/dev/vda", target: "/mnt", fstype: "", flags: [.remount, .readOnly])
        #expect(remount.description == "mount -o ro,remount /dev/vda /mnt")
        let squash = MountSpec(source: "/dev/loop0", target: "/sysroot/lower", fstype: "squashfs", flags: [.readOnly])
        #expect(squash.optionSummary == "squashfs, ro")
    }

    @Test func mountinfoParses() {
        let text = """
        22 1 0:21 / /proc rw,nosuid,nodev,noexec - proc proc rw
        23 1 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw,size=496k
        36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue
        garbage line
        """
        let entries = MountInfoEntry.parse(text)
        #expect(entries.count == 3)
        #expect(entries[0].id == 22 && entries[0].parentID == 1 && entries[0].mountPoint == "/proc")
        #expect(entries[0].fstype == "proc" && entries[0].source == "proc" && entries[0].options == "rw,nosuid,nodev,noexec")
        #expect(entries[1].fstype == "devtmpfs")
        #expect(entries[2].mountPoint == "/mnt two")
        #expect(entries[2].source == "/dev/root")
    }

    @Test func errorsSayTheWholeOperation() {
        let error = SystemError("mount /dev/loop0 on /sysroot/lower (squashfs, ro)", .operationNotSupportedByDevice, hint: "is the squashfs module loaded?")
        #expect(error.description == "unable to mount /dev/loop0 on /sysroot/lower (squashfs, ro): No such device — is the squashfs module loaded?")
    }

    @Test func signalNames() {
        #expect(Signal.describe(SIGSEGV) == "SIGSEGV (Segmentation fault)")
        #expect(ExitStatus.signaled(SIGKILL).description == "was killed by SIGKILL (Killed)")
        #expect(ExitStatus.exited(3).description == "exited with status 3")
    }
}

@Suite struct TimelineReadBackTests {
    let steps = [
        TimelineStep(step: "kernel", process: "kernel", pid: 0, startMicros: 0, endMicros: 3_129_114, ok: true),
        TimelineStep(step: "verify", process: "worker", pid: 87, startMicros: 7_000_000, endMicros: 7_000_106, ok: false,
                     detail: "the image does not match"),
    ]

    @Test func stepsRoundTripThroughTheDocument() throws {
        let document = Timeline.document(journal: steps.map(\.json).joined(separator: "\n"))
        #expect(try TimelineStep.steps(document: Array(document.utf8)) == steps)
    }

    @Test func summaryAndTable() {
        #expect(TimelineStep.summary(steps) == "kernel 3129, verify 0 ms; at 7000 ms of CLOCK_BOOTTIME")
        let table = TimelineStep.table(steps).split(separator: "\n")
        #expect(table.count == 3)
        #expect(table[1].hasPrefix("kernel        kernel         0.000   3129.114   3129.114"))
        #expect(table[2].hasSuffix("FAILED: the image does not match"))
    }

    @Test func notATimeline() {
        #expect(throws: (any Error).self) { try TimelineStep.steps(document: Array("{}".utf8)) }
    }
}
