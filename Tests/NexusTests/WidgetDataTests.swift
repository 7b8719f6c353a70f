@testable import Nexus
import SpiritCore
import Testing

/// Two readings of /proc/stat one second apart on a 2-core machine (the
/// shape of Linux 6.1's file: 10 counters a cpu line, then intr, ctxt …).
let procStat1 = """
    cpu  10000 0 2000 80000 1000 0 0 0 0 0
    cpu0 6000 0 1000 40000 500 0 0 0 0 0
    cpu1 4000 0 1000 40000 500 0 0 0 0 0
    intr 1234567 44 9 0 0 0 0 0 0 1
    ctxt 987654
    btime 1764000000
    processes 4242
    procs_running 2
    """
let procStat2 = """
    cpu  10150 0 2050 80150 1050 0 0 0 0 0
    cpu0 6100 0 1050 40025 525 0 0 0 0 0
    cpu1 4050 0 1000 40125 525 0 0 0 0 0
    intr 1234999 44 9 0 0 0 0 0 0 1
    """

let meminfo = """
    MemTotal:        2031616 kB
    MemFree:          812000 kB
    MemAvailable:    1523712 kB
    Buffers:           10240 kB
    Cached:           600000 kB
    Shmem:            409600 kB
    HugePages_Total:       0
    Hugepagesize:       2048 kB
    """

@Suite struct CPUAndMemoryTests {
    @Test func busyFractionsBetweenTwoReadings() throws {
        let first = try CPUSample.parse(procStat1), second = try CPUSample.parse(procStat2)
        #expect(first.cores.map(\.name) == ["cpu0", "cpu1"])
        #expect(first.all.total == 93000 && first.all.idle == 81000)
        let usage = second.usage(since: first)
        // all: 400 ticks passed, 200 of them idle or waiting for I/O.
        #expect(usage.all == 0.5)
        // cpu0: user +100, system +50, idle +25, iowait +25; cpu1: +50, 0, +125, +25.
        #expect(usage.cores == [0.75, 0.25])
        // Counters that went back (a core taken offline and on again) read 0, not nonsense.
        #expect(first.usage(since: second).all == 0)
    }

    @Test func aCoreThatCameOnlineReadsZero() throws {
        let first = try CPUSample.parse("cpu 100 0 100 800 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0\ncpu1 50 0 50 400 0 0 0 0\n")
        let second = try CPUSample.parse("cpu 250 0 150 1000 0 0 0 0\ncpu0 190 0 100 410 0 0 0 0\ncpu1 60 0 50 590 0 0 0 0\ncpu2 1 0 0 1 0 0 0 0\n")
        let usage = second.usage(since: first)
        #expect(usage.all == 0.5)                     // 200 busy of 400
        #expect(usage.cores[0] == 190.0 / 200.0)      // 190 busy of 200
        #expect(usage.cores[1] == 10.0 / 200.0)
        #expect(usage.cores[2] == 0)                  // came online between the readings
        #expect(first.usage(since: first).all == 0)   // no time passed
    }

    @Test func badStatSaysWhichLine() {
        #expect(throws: SampleError("/proc/stat", "no 'cpu' line")) { try CPUSample.parse("intr 1\n") }
        #expect(throws: SampleError("/proc/stat", "line 2: 'cpu0 1 2 x 4' is not a cpu line of at least 4 numbers")) {
            try CPUSample.parse("cpu 1 2 3 4\ncpu0 1 2 x 4\n")
        }
    }

    @Test func meminfoInBytes() throws {
        let memory = try MemoryInfo.parse(meminfo)
        #expect(memory.total == 2031616 * 1024 && memory.available == 1523712 * 1024 && memory.shared == 409600 * 1024)
        #expect(memory.used == (2031616 - 1523712) * 1024)
        #expect(abs(memory.usedFraction - 0.25) < 0.001)
        #expect(memory.fields["HugePages_Total"] == 0)
        #expect(throws: SampleError("/proc/meminfo", "no MemTotal")) { try MemoryInfo.parse("MemFree: 1 kB\n") }
        #expect(throws: SampleError("/proc/meminfo", "line 1: 'MemTotal 12 kB' has no ':'")) { try MemoryInfo.parse("MemTotal 12 kB\n") }
        #expect(throws: SampleError("/proc/meminfo", "line 1: unknown unit 'MB'")) { try MemoryInfo.parse("MemTotal: 12 MB\n") }
    }

    @Test func zramOriginalAgainstCompressed() throws {
        // Linux 6.1: 9 fields (huge_pages_since added in 5.15).
        let zram = try ZramStats.parse("104857600 31457280 33554432        0 33554432     1024       0        0        0\n")
        #expect(zram.original == 104857600 && zram.compressed == 31457280 && zram.memoryUsed == 33554432)
        #expect(zram.ratio == 3.125)
        #expect(try ZramStats.parse("0 0 0 0 0 0 0").ratio == 0)
        #expect(throws: SampleError("mm_stat", "'12 x' is not a line of at least 3 numbers")) { try ZramStats.parse("12 x\n") }
    }

    @Test func sizesAndPercentsForPeople() {
        #expect(formatBytes(512) == "512 B")
        #expect(formatBytes(3482) == "3.4 KiB")
        #expect(formatBytes(10_380_902) == "9.9 MiB" && formatBytes(13_107_200) == "13 MiB")
        #expect(formatBytes(157_286_400) == "150 MiB")
        #expect(formatBytes(1_288_490_189) == "1.2 GiB")
        #expect(formatPercent(0.07) == "  7%" && formatPercent(1) == "100%" && formatPercent(-1) == "  0%" && formatPercent(.nan) == "  0%")
    }
}

@Suite struct NetworkTests {
    let netDev = """
        Inter-|   Receive                                                |  Transmit
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
            lo:    1200      12    0    0    0     0          0         0     1200      12    0    0    0     0       0          0
          eth0: 5000000    4000    0    0    0     0          0         0   250000    2000    0    0    0     0       0          0
        """

    @Test func procNetDevCounters() throws {
        let counters = try InterfaceCounters.parseNetDev(netDev)
        #expect(counters == [InterfaceCounters(name: "lo", rxBytes: 1200, txBytes: 1200),
                             InterfaceCounters(name: "eth0", rxBytes: 5_000_000, txBytes: 250_000)])
        #expect(throws: SampleError("/proc/net/dev", "line 1: 'eth0: 1 2 3' is not 'name: 16 counters'")) {
            try InterfaceCounters.parseNetDev("eth0: 1 2 3\n")
        }
    }

    @Test func ratesFromTwoReadings() throws {
        let before = try InterfaceCounters(name: "eth0", rxBytesText: "1000\n", txBytesText: "500\n")
        let after = InterfaceCounters(name: "eth0", rxBytes: 1000 + 3 * 1_048_576, txBytes: 400)
        let rates = after.rates(since: before, elapsedMicros: 2_000_000)
        #expect(rates.rx == 1.5 * 1_048_576)
        #expect(rates.tx == 0) // the counter went back: the interface was recreated
        #expect(after.rates(since: before, elapsedMicros: 0) == (0, 0))
        #expect(throws: SampleError("/sys/class/net/eth0/statistics", "rx_bytes 'x' or tx_bytes '5' is not a number")) {
            try InterfaceCounters(name: "eth0", rxBytesText: "x", txBytesText: "5")
        }
    }
}

@Suite struct SpiritStatusTests {
    @Test func timelineBarsFromTheDocumentTimelineWrites() throws {
        let steps = [
            TimelineStep(step: "kernel", process: "kernel", pid: 0, startMicros: 0, endMicros: 3_000_000, ok: true),
            TimelineStep(step: "modules", process: "init", pid: 1, startMicros: 3_000_000, endMicros: 4_000_000, ok: true),
            TimelineStep(step: "mark", process: "init", pid: 1, startMicros: 4_000_000, endMicros: 4_000_000, ok: true),
            TimelineStep(step: "cascade", process: "init", pid: 1, startMicros: 4_000_000, endMicros: 5_500_000, ok: false, detail: "no nodus"),
            TimelineStep(step: "service:nexus", process: "supervisor", pid: 90, startMicros: 5_500_000, endMicros: 6_000_000, ok: true),
        ]
        // The document exactly as SpiritCore's Timeline writes it.
        let document = Timeline.document(journal: steps.map(\.json).joined(separator: "\n") + "\n")
        let parsed = try BootTimeline.parse(Array(document.utf8))
        #expect(parsed == steps)
        let bars = BootTimeline.bars(parsed)
        #expect(bars.map(\.step) == ["kernel", "modules", "cascade", "service:nexus"])
        #expect(bars[0] == TimelineBar(step: "kernel", start: 0, length: 0.5, milliseconds: 3000, ok: true))
        #expect(bars[2].start == 4.0 / 6.0 && bars[2].length == 0.25 && !bars[2].ok)
        // The two longest, still in time order.
        #expect(BootTimeline.bars(parsed, limit: 2).map(\.step) == ["kernel", "cascade"])
        #expect(BootTimeline.readyMillis(parsed) == 6000)
        #expect(throws: SampleError.self) { try BootTimeline.parse(Array("{\"clock\":1}".utf8)) }
        #expect(BootTimeline.bars([]).isEmpty)
    }

    /// The body of `spiritctl status --json`, in Supervisor's StatusReport.json format.
    let status = """
        ok
        {"now_ms":8123.456,"services":[{"name":"network","state":"running","pid":212,"restarts":0,"ready":true,"enabled":true,"since_ms":7000.100},
        {"name":"nodus","state":"backoff","pid":null,"restarts":3,"ready":false,"enabled":true,"since_ms":8000.000,"last_exit":"exited with status 1"},
        {"name":"sshd","state":"failed","pid":null,"restarts":5,"ready":false,"enabled":true,"since_ms":8100.000,"last_exit":"was killed by SIGSEGV","detail":"crash loop: 6 restarts in 60 s"},
        {"name":"extra","state":"stopped","pid":null,"restarts":0,"ready":false,"enabled":false,"since_ms":0.000}]}
        """

    @Test func servicesFromTheSupervisorsStatus() throws {
        let services = try ServiceSummary.parse(status)
        #expect(services == [
            ServiceSummary(name: "network", state: "running", pid: 212, ready: true),
            ServiceSummary(name: "nodus", state: "backoff", restarts: 3, why: "exited with status 1"),
            ServiceSummary(name: "sshd", state: "failed", restarts: 5, why: "crash loop: 6 restarts in 60 s; was killed by SIGSEGV"),
            ServiceSummary(name: "extra", state: "stopped", enabled: false),
        ])
        #expect(services.filter(\.isAlert).map(\.name) == ["nodus", "sshd"])
        #expect(services.filter(\.isOverdue).isEmpty)
        // Past its ready-timeout: settled for the supervisor, still "starting".
        let overdue = try ServiceSummary.parse("""
            {"services":[{"name":"modules","state":"starting","pid":118,"restarts":0,"ready":false,"enabled":true,"since_ms":7000.000,\
            "detail":"\(ServiceSummary.notReadyInTime) 60000 ms"},{"name":"ai","state":"starting","pid":119,"ready":false}]}
            """)
        #expect(overdue.map(\.isOverdue) == [true, false])
        #expect(throws: SampleError("spiritctl status --json", "no \"services\" list")) { try ServiceSummary.parse("{}") }
        #expect(throws: SampleError("spiritctl status --json", "service 1 has no name or state")) { try ServiceSummary.parse("{\"services\":[{}]}") }
        #expect(throws: SampleError.self) { try ServiceSummary.parse("error 1 no supervisor") }
    }

    @Test func kmsgRecords() throws {
        let line = try KernelLogLine.parse("6,339,5140900,-;NET: Registered PF_INET6 protocol family\n SUBSYSTEM=net\n")
        #expect(line == KernelLogLine(level: 6, sequence: 339, micros: 5_140_900, message: "NET: Registered PF_INET6 protocol family"))
        #expect(line.text == "[    5.140900] NET: Registered PF_INET6 protocol family")
        #expect(!line.isError)
        // Facility 3 (daemon) << 3 | level 3 (error); escaped bytes decoded, a tab becomes a space.
        let error = try KernelLogLine.parse("27,12,12000001,c,more;bochs: \\x09fail \\xc3\\xa9\\x5c")
        #expect(error.level == 3 && error.isError && error.message == "bochs:  fail é\\")
        #expect(error.text == "[   12.000001] bochs:  fail é\\")
        #expect(throws: SampleError("/dev/kmsg", "'no prefix' has no ';' after its prefix")) { try KernelLogLine.parse("no prefix") }
        #expect(throws: SampleError("/dev/kmsg", "'6,x,1,-' is not priority,sequence,microseconds,flags")) { try KernelLogLine.parse("6,x,1,-;m") }
    }

    @Test func theTailKeepsTheLastLinesOnce() {
        var tail = KernelLogTail(capacity: 2)
        for sequence in [1, 2, 2, 3, 1] as [UInt64] {
            tail.append(KernelLogLine(level: 6, sequence: sequence, micros: 0, message: "m\(sequence)"))
        }
        #expect(tail.lines.map(\.message) == ["m2", "m3"])
    }
}
