@testable import Nexus
import Glibc
import SpiritCore
import Testing

/// The widgets' readings against a fixture tree that plays /proc, /sys and
/// /run/spirit: what the HUD shows comes from the files, and a file that is
/// missing shows as its reason, not as numbers.
@Suite struct ReadingsTests {
    /// A fresh tree under /tmp with `files` (path → content).
    func tree(_ files: [String: String]) throws -> String {
        let root = "/tmp/spirit-readings-\(Kernel.pid)-\(UInt32.random(in: 0...UInt32.max))"
        try Kernel.makeDirectory(root + "/run", parents: true)
        for (path, content) in files {
            let full = root + "/" + path
            try Kernel.makeDirectory(String(full[..<full.lastIndex(of: "/")!]), parents: true)
            try Kernel.writeFile(full, content)
        }
        return root
    }

    func readings(_ root: String) -> Readings {
        var paths = ReadingPaths()
        paths.proc = root + "/proc"
        paths.sys = root + "/sys"
        paths.run = root + "/run"
        paths.control = root + "/run/control.sock"
        paths.kmsg = root + "/kmsg"
        paths.rootLayer = root + "/no-such-layer"
        return Readings(paths: paths)
    }

    @Test func cpuNeedsTwoReadingsThenShowsEachCore() throws {
        let root = try tree(["proc/stat": procStat1])
        let readings = readings(root)
        #expect(readings.read(.cpu, lines: 5).lines.map(\.text) == ["measuring…"])
        try Kernel.writeFile(root + "/proc/stat", procStat2)
        let content = readings.read(.cpu, lines: 5)
        #expect(content.lines.first?.text.hasPrefix("all ") == true)
        #expect(content.lines.count == 2) // all, then cpu0 and cpu1 on one line
        #expect(readings.cpuFraction > 0 && readings.cpuFraction < 1)
    }

    @Test func memoryWithTheZramLayer() throws {
        let root = try tree(["proc/meminfo": meminfo, "sys/block/zram0/mm_stat": "104857600 20971520 23068672 0 23068672 0 0 0 0\n"])
        let lines = readings(root).read(.memory, lines: 5).lines.map(\.text)
        #expect(lines[0].hasPrefix("RAM "))
        #expect(lines[1].hasPrefix("zram  100 MiB → 22 MiB"), "\(lines)")
    }

    @Test func aMissingFileIsItsReason() throws {
        let root = try tree([:])
        let content = readings(root).read(.memory, lines: 5)
        #expect(content.lines.count == 1 && content.lines[0].tone == .warning)
        #expect(content.lines[0].text.contains(root + "/proc/meminfo"))
        let services = readings(root).read(.services, lines: 5)
        #expect(services.lines[0].text.contains("is the supervisor running?"), "\(services.lines)")
    }

    @Test func theBootTimelineAsBars() throws {
        let root = try tree([:])
        let timeline = Timeline(directory: root + "/run", process: "init")
        timeline.record(TimelineStep(step: "kernel", process: "kernel", pid: 0, startMicros: 0, endMicros: 3_000_000, ok: true))
        timeline.record(TimelineStep(step: "ready", process: "init", pid: 1, startMicros: 9_000_000, endMicros: 9_000_000, ok: true))
        let lines = readings(root).read(.timeline, lines: 6).lines.map(\.text)
        #expect(lines.first?.hasPrefix("kernel") == true && lines.last == "ready at 9000 ms", "\(lines)")
    }

    @Test func kernelLogRecordsSinceTheLastReading() throws {
        let root = try tree(["kmsg": "6,1,1000,-;first line\n"])
        let readings = readings(root)
        // A regular file reads whole, then at its end: one record here.
        #expect(readings.read(.kernelLog, lines: 4).lines.map(\.text).last?.hasSuffix("first line") == true)
    }
}
