import Sentinel
import SpiritCore
import Testing

/// Messages in the exact formats Linux 6.1 prints (mm/oom_kill.c,
/// mm/memcontrol.c, arch/x86/mm/fault.c, block/blk-core.c, fs/ext4,
/// fs/squashfs, kernel/hung_task.c, arch/x86/kernel/cpu/mce/therm_throt.c).
@Suite struct KernelEventTests {
    @Test func oomKills() {
        #expect(KernelEvent.parse("Out of memory: Killed process 812 (leaky) total-vm:1049876kB, anon-rss:1012736kB, file-rss:4kB, shmem-rss:0kB, UID:0 pgtables:2028kB oom_score_adj:0")
            == .oomKilled(pid: 812, command: "leaky", cgroupLimit: false))
        #expect(KernelEvent.parse("Memory cgroup out of memory: Killed process 4242 (my (odd) tool) total-vm:35000kB, anon-rss:32768kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:100kB oom_score_adj:0")
            == .oomKilled(pid: 4242, command: "my (odd) tool", cgroupLimit: true))
        #expect(KernelEvent.parse("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/spirit/leaky,task_memcg=/spirit/leaky,task=leaky,pid=4242,uid=0")
            == .oomSummary(pid: 4242, task: "leaky", taskCgroup: "/spirit/leaky", constraint: "CONSTRAINT_MEMCG"))
    }

    @Test func otherEvents() {
        #expect(KernelEvent.parse("crashy[1234]: segfault at 0 ip 000055d4c0a0b139 sp 00007ffc3e6b3c10 error 6 in crashy[55d4c0a0b000+1000] likely on CPU 1 (core 1, socket 0)")
            == .segfault(pid: 1234, command: "crashy"))
        #expect(KernelEvent.parse("I/O error, dev sda, sector 2048 op 0x0:(READ) flags 0x80700 phys_seg 1 prio class 2") == .ioError(device: "sda", sector: 2048))
        #expect(KernelEvent.parse("blk_update_request: I/O error, dev sdb, sector 77 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 0") == .ioError(device: "sdb", sector: 77))
        #expect(KernelEvent.parse("EXT4-fs error (device zram0): ext4_lookup:1855: inode #2: comm ls: iget: bad extra_isize 65535") == .ext4Error(device: "zram0"))
        #expect(KernelEvent.parse("SQUASHFS error: Unable to read data cache entry [2a05f]") == .squashfsError)
        #expect(KernelEvent.parse("INFO: task kworker/0:1:57 blocked for more than 120 seconds.") == .hungTask(command: "kworker/0:1", pid: 57, seconds: 120))
        #expect(KernelEvent.parse("CPU2: Package temperature is above threshold, cpu clock is throttled (total events = 12)") == .thermalThrottle(cpu: 2))
        #expect(KernelEvent.parse("CPU0: Core temperature above threshold, cpu clock throttled (total events = 1)") == .thermalThrottle(cpu: 0))
    }

    @Test func malformedAndTruncatedAreNotEvents() {
        for message in [
            "", "Out of memory: Killed process", "Out of memory: Killed process x (leaky) total-vm:1kB", "Out of memory: Killed process 12",
            "Memory cgroup out of memory: Killed process 12 leaky", "oom-kill:constraint=CONSTRAINT_NONE,task=x", "oom-kill:",
            "x: segfault at 0", "crashy[abc]: segfault at 0 ip 0", "I/O error, dev sda", "I/O error, dev , sector 1",
            "EXT4-fs error (device ", "INFO: task x blocked for more than 120 seconds.", "INFO: task x:1 blocked for more than ",
            "CPU: Package temperature is above threshold, cpu clock is throttled", "NET: Registered PF_INET6 protocol family",
        ] {
            #expect(KernelEvent.parse(message) == nil, "\(message)")
        }
    }

    @Test func cgroupPathsMapToServices() {
        #expect(ServiceCgroup.service("/spirit/leaky") == "leaky")
        #expect(ServiceCgroup.service("/spirit/vm-win/qemu") == "vm-win")
        #expect(ServiceCgroup.service("/") == nil)
        #expect(ServiceCgroup.service("/system.slice/x") == nil)
        #expect(ServiceCgroup.service("/spirit/") == nil)
    }

    /// The summary names the cgroup, the kill follows: one observation for
    /// the service with both lines. A kill without a summary (rate-limited,
    /// or a pid already gone) is the system's, not a crash.
    @Test func joinerMapsTheKillToItsService() {
        var joiner = KernelEventJoiner()
        let summary = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/spirit/leaky,task_memcg=/spirit/leaky,task=leaky,pid=4242,uid=0"
        let kill = "Memory cgroup out of memory: Killed process 4242 (leaky) total-vm:35000kB, anon-rss:32768kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:100kB oom_score_adj:0"
        #expect(joiner.add(summary) == nil)
        #expect(joiner.add(kill) == Observation(signal: .kmsgOOMKill, subject: "leaky", evidence: [summary, kill]))
        let other = "Out of memory: Killed process 99 (gone) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:0kB oom_score_adj:0"
        #expect(joiner.add(other) == Observation(signal: .kmsgOOMKill, subject: nil, evidence: [other]))
        #expect(joiner.add("random line") == nil)
        // A segfault of a service's main process is that service's.
        let segfault = "crashy[1234]: segfault at 0 ip 000055d4c0a0b139 sp 00007ffc3e6b3c10 error 6 in crashy[55d4c0a0b000+1000]"
        #expect(joiner.add(segfault, services: [1234: "crashy"]) == Observation(signal: .kmsgSegfault, subject: "crashy", evidence: [segfault]))
        #expect(joiner.add(segfault, services: [99: "other"]) == Observation(signal: .kmsgSegfault, subject: nil, evidence: [segfault]))
    }

    /// The record framing is SpiritCore's, shared with the HUD.
    @Test func recordThenEvent() throws {
        let record = try KernelLogLine.parse("3,1502,93201833,-;Memory cgroup out of memory: Killed process 4242 (leaky) total-vm:35000kB, anon-rss:32768kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:100kB oom_score_adj:0\n SUBSYSTEM=memory\n")
        #expect(record.level == 3 && record.sequence == 1502)
        #expect(KernelEvent.parse(record.message) == .oomKilled(pid: 4242, command: "leaky", cgroupLimit: true))
    }
}

@Suite struct ReadingTests {
    @Test func pressure() throws {
        let memory = try Pressure.parse("some avg10=12.00 avg60=3.50 avg300=0.80 total=4315227\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", source: "m")
        #expect(memory.some == PressureLine(avg10: 12, avg60: 3.5, avg300: 0.8, total: 4_315_227))
        #expect(memory.full == PressureLine(avg10: 0, avg60: 0, avg300: 0, total: 0))
        let cpu = try Pressure.parse("some avg10=100.00 avg60=99.99 avg300=0.00 total=18446744073709551615\n", source: "c")
        #expect(cpu.some.avg10 == 100 && cpu.full == nil && cpu.some.total == .max)
        #expect(throws: SampleError("m", "no 'some' line")) { try Pressure.parse("", source: "m") }
        #expect(throws: SampleError.self) { try Pressure.parse("some avg10=1.00 avg60=1.00", source: "m") }
        #expect(throws: SampleError.self) { try Pressure.parse("some avg10=101.00 avg60=1.00 avg300=1.00 total=1", source: "m") }
        #expect(throws: SampleError.self) { try Pressure.parse("half avg10=1.00 avg60=1.00 avg300=1.00 total=1", source: "m") }
    }

    @Test func memoryEventsZramAndThermal() throws {
        #expect(try MemoryEvents.parse("low 0\nhigh 0\nmax 37\noom 2\noom_kill 2\noom_group_kill 0\n", source: "e")["oom_kill"] == 2)
        #expect(throws: SampleError.self) { try MemoryEvents.parse("oom_kill x\n", source: "e") }
        let zram = try ZramStats.parse("   413696    61440   131072        0   131072        0        0        0        0\n")
        #expect(zram == ZramStats(original: 413_696, compressed: 61_440, memoryUsed: 131_072, memoryLimit: 0))
        #expect(zram.ratio > 3.1 && zram.ratio < 3.2)
        #expect(try ZramStats.parse("0 0 0 0 0 0 0").ratio == 0)
        #expect(throws: SampleError.self) { try ZramStats.parse("1 2") }
        #expect(try ThermalZone.milliCelsius("45000\n", source: "t") == 45000)
        #expect(throws: SampleError.self) { try ThermalZone.milliCelsius("hot", source: "t") }
        let trips = [(type: "passive", milliCelsius: 90000), (type: "critical", milliCelsius: 105_000)]
        #expect(ThermalZone(name: "x86_pkg_temp", milliCelsius: 60000, trips: trips).tripLevel == 0)
        #expect(ThermalZone(name: "x86_pkg_temp", milliCelsius: 90000, trips: trips).tripLevel == 1)
        #expect(ThermalZone(name: "x86_pkg_temp", milliCelsius: 105_000, trips: trips).tripLevel == 2)
        #expect(usedPercent(blocks: 1000, free: 50, available: 50) == 95)
        #expect(usedPercent(blocks: 0, free: 0, available: 0) == 0)
    }
}
