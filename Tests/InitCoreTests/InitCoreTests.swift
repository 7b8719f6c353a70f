import Glibc
import InitCore
import SpiritCore
import Testing

/// InitCore is PID 1's logic in the Embedded subset; these check it, and
/// check that its copies of SpiritCore's formats and tables still agree.
@Suite struct InitCoreTests {
    func string(_ text: Text) -> String { String(decoding: text.bytes, as: UTF8.self) }
    func bytes(_ string: String) -> [UInt8] { Array(string.utf8) }

    @Test func aPidFileHoldsOneWholeNumberAboveOne() {
        #expect(WorkerOutcome.pid(fromFile: bytes("1234\n")) == 1234)
        #expect(WorkerOutcome.pid(fromFile: bytes("77")) == 77)
        #expect(WorkerOutcome.pid(fromFile: bytes("")) == nil)
        #expect(WorkerOutcome.pid(fromFile: bytes("1\n")) == nil) // PID 1 is never spared from itself
        #expect(WorkerOutcome.pid(fromFile: bytes("12a\n")) == nil)
        #expect(WorkerOutcome.pid(fromFile: bytes("-5\n")) == nil)
        #expect(WorkerOutcome.pid(fromFile: bytes("99999999999\n")) == nil)
    }

    @Test func signalNumbersAndNamesAreGlibcs() {
        #expect(LinuxSignal.hangup == SIGHUP && LinuxSignal.interrupt == SIGINT && LinuxSignal.kill == SIGKILL)
        #expect(LinuxSignal.user1 == SIGUSR1 && LinuxSignal.user2 == SIGUSR2 && LinuxSignal.terminate == SIGTERM)
        #expect(LinuxSignal.child == SIGCHLD && LinuxSignal.proceed == SIGCONT && LinuxSignal.power == SIGPWR)
        for signal: Int32 in 1...64 {
            var text = Text()
            LinuxSignal.appendDescription(signal, to: &text)
            #expect(string(text) == Signal.describe(signal), "signal \(signal)")
        }
    }

    @Test func signalsMapToActions() {
        func action(_ signal: Int32, sender: Int32 = 42, stage: Int = 2, supervisor: Int32? = 42) -> SignalAction {
            SignalAction.of(signal: signal, sender: sender, stage: stage, supervisor: supervisor)
        }
        #expect(action(SIGCHLD) == .reap)
        #expect(action(SIGTERM) == .shutdown(.reboot, .signal(SIGTERM, from: 42)))
        #expect(action(SIGINT) == .shutdown(.reboot, .ctrlAltDel))
        #expect(action(SIGUSR1) == .shutdown(.halt, .signal(SIGUSR1, from: 42)))
        #expect(action(SIGUSR2, sender: 7) == .shutdown(.poweroff, .signal(SIGUSR2, from: 7)))
        #expect(action(SIGPWR) == .shutdown(.poweroff, .powerFailure))
        // SIGHUP is `ready` only from the supervisor, in stage 2.
        #expect(action(SIGHUP) == .ready)
        #expect(action(SIGHUP, sender: 43) == .ignore)
        #expect(action(SIGHUP, sender: 0, supervisor: nil) == .ignore)
        #expect(action(SIGHUP, stage: 1) == .ignore)
        #expect(action(SIGWINCH) == .ignore && action(SIGQUIT) == .ignore)
    }

    @Test func shutdownReasonsReadAsBefore() {
        #expect(string(ShutdownReason.signal(SIGTERM, from: 311).text) == "SIGTERM from process 311")
        #expect(string(ShutdownReason.signal(SIGUSR2, from: 1).text) == "SIGUSR2 from process 1")
        #expect(string(ShutdownReason.ctrlAltDel.text) == "ctrl-alt-del")
        #expect(string(ShutdownReason.powerFailure.text) == "SIGPWR (power failure)")
        for action in [InitCore.PowerAction.reboot, InitCore.PowerAction.halt, InitCore.PowerAction.poweroff] {
            let core = SpiritCore.PowerAction(rawValue: "\(action.word)")
            #expect(core != nil)
        }
        #expect(PowerAction.reboot.rebootCommand == 0x0123_4567 && PowerAction.halt.rebootCommand == 0xCDEF_0123)
        #expect(PowerAction.poweroff.rebootCommand == 0x4321_FEDC && PowerAction.ctrlAltDelOff == 0)
    }

    @Test func waitStatusesDecodeAndDescribeAsSpawnDoes() {
        #expect(ChildExit(waitStatus: 3 << 8) == .exited(3))
        #expect(ChildExit(waitStatus: 0) == .exited(0))
        #expect(ChildExit(waitStatus: SIGSEGV) == .signaled(SIGSEGV))
        #expect(ChildExit(waitStatus: SIGKILL | 0x80) == .signaled(SIGKILL)) // with a core dump
        var text = Text()
        ChildExit.signaled(SIGSEGV).describe(into: &text)
        #expect(string(text) == ExitStatus.signaled(SIGSEGV).description)
        #expect(string(text) == "was killed by SIGSEGV (Segmentation fault)")
        text = Text()
        ChildExit.exited(111).describe(into: &text)
        #expect(string(text) == ExitStatus.exited(111).description)
    }

    @Test func theChildTableGivesEachPidItsRoleOnce() {
        var table = ChildTable()
        table.worker = 10
        table.shell = 11
        table.rescueWatcher = 12
        table.supervisor = 13
        #expect(table.ended(12) == .rescueWatcher && table.rescueWatcher == nil)
        #expect(table.ended(12) == .orphan)
        #expect(table.ended(10) == .worker && table.worker == nil)
        #expect(table.ended(13) == .supervisor && table.supervisor == nil)
        #expect(table.ended(11) == .shell && table.shell == nil)
        #expect(table.ended(99) == .orphan)
        #expect(table == ChildTable())
    }

    @Test func theWorkersEndChoosesSwitchRootOrRescue() {
        #expect(WorkerOutcome.after(.exited(0), rootReady: true) == .switchRoot)
        #expect(WorkerOutcome.after(.exited(0), rootReady: false) == .rescue(readReason: false))
        #expect(WorkerOutcome.after(.exited(RunFiles.rescueExitStatus), rootReady: false) == .rescue(readReason: true))
        #expect(WorkerOutcome.after(.exited(RunFiles.rescueExitStatus), rootReady: true) == .rescue(readReason: true))
        #expect(WorkerOutcome.after(.signaled(SIGSEGV), rootReady: true) == .rescue(readReason: false))
        #expect(WorkerOutcome.rescueExitStatus == RunFiles.rescueExitStatus)
        #expect(WorkerOutcome.reason(fromFile: bytes("no system image found\nmore\n")) == bytes("no system image found"))
        #expect(WorkerOutcome.reason(fromFile: bytes("\n")) == nil && WorkerOutcome.reason(fromFile: []) == nil)
    }

    @Test func aChildThatDiesAtOnceWaitsASecond() {
        var pacing = RestartPacing()
        #expect(pacing.delayMillis(now: 500) == 0) // the first start, even early in the boot
        pacing.started(at: 500)
        #expect(pacing.delayMillis(now: 600_000) == 1000)
        #expect(pacing.delayMillis(now: 1_000_499) == 1000)
        #expect(pacing.delayMillis(now: 1_000_500) == 0)
        pacing.started(at: 5_000_000)
        #expect(pacing.delayMillis(now: 5_000_001) == 1000)
    }

    @Test func flagsAreReadAsBootConfigReadsThem() {
        let lines = [
            "console=ttyS0 quiet", "crom.debug=1", "crom.debug", "crom.debug=0 crom.console=off", "crom.debug=YES crom.console=0",
            "crom.debug=maybe crom.console=bogus", "crom.debug=1 crom.debug=0", "x=\"a b crom.debug=1\" crom.console=on",
            "\"crom.debug=1\"", "crom.console",
        ]
        for line in lines {
            let config = BootConfig.parse(line).0
            #expect(InitFlags.parse(commandLine: bytes(line)) == InitFlags(debug: config.debug, console: config.console), "\(line)")
            let json = bytes(config.json(warnings: []))
            #expect(InitFlags.parse(bootConfig: json) == InitFlags(debug: config.debug, console: config.console), "\(line)")
        }
        // Arguments after `--` are init's, not the kernel's.
        #expect(InitFlags.parse(commandLine: bytes("quiet -- crom.debug=1")) == InitFlags())
        #expect(InitFlags.parse(bootConfig: bytes("{}")) == nil)
    }

    @Test func consoleLinesAreLogFormats() {
        let messages = ["ready", "early mounts:\nmount a\nmount b", "", "a\n"]
        let levels: [(InitCore.LogLevel, SpiritCore.LogLevel)] = [
            (.critical, .critical), (.error, .error), (.warning, .warning), (.info, .info), (.debug, .debug),
        ]
        for message in messages {
            for (level, coreLevel) in levels {
                for untagged in [false, true] {
                    let text = Text(bytes: bytes(message))
                    #expect(string(ConsoleFormat.console(level, text, untagged: untagged))
                        == LogFormat.consoleLines(coreLevel, message, untagged: untagged).joined(separator: "\n") + "\n")
                    #expect(ConsoleFormat.kmsg(level, text, untagged: untagged).map(string)
                        == LogFormat.kmsgLines(coreLevel, message, untagged: untagged))
                }
            }
        }
        #expect(ConsoleFormat.kernelEchoBelow(printk: bytes("4\t4\t1\t7\n")) == 4)
        #expect(ConsoleFormat.kernelEchoBelow(printk: bytes("15 4 1 7")) == 15)
        #expect(ConsoleFormat.kernelEchoBelow(printk: []) == 0)
    }

    @Test func timelineRecordsAreTimelineSteps() {
        let cases: [(Int64, Int64, Bool, String?)] = [(0, 3_129_004, true, "from the kernel's start"), (5, 5, false, nil),
                                                      (1_000, 2_000_999, true, "a \"quoted\"\nline\t\u{1}")]
        for (start, end, ok, detail) in cases {
            let record = TimelineFormat.record(step: "early-mounts", process: "init", pid: 1, startMicros: start, endMicros: end,
                                               ok: ok, detail: detail.map { Text(bytes: bytes($0)) })
            #expect(string(record) == TimelineStep(step: "early-mounts", process: "init", pid: 1, startMicros: start,
                                                   endMicros: end, ok: ok, detail: detail).json)
        }
    }

    @Test func theTimelineDocumentAndSummaryMatchSpiritCores() throws {
        let steps = [
            TimelineStep(step: "kernel", process: "kernel", pid: 0, startMicros: 0, endMicros: 3_129_400, ok: true),
            TimelineStep(step: "runtime", process: "init", pid: 1, startMicros: 3_129_400, endMicros: 3_129_400, ok: true),
            TimelineStep(step: "service:\"odd\"", process: "supervisor", pid: 90, startMicros: 4_000_000, endMicros: 6_500_500,
                         ok: false, detail: "x"),
            TimelineStep(step: "ready", process: "init", pid: 1, startMicros: 7_416_000, endMicros: 7_416_000, ok: true),
        ]
        let journal = steps.map { $0.json + "\n" }.joined() + "not a record\n"
        let document = TimelineFormat.document(journal: bytes(journal))
        #expect(string(document) == Timeline.document(journal: journal))
        let parsed = try TimelineStep.steps(document: document.bytes)
        #expect(parsed == steps)
        #expect(string(TimelineFormat.summary(journal: bytes(journal))) == TimelineStep.summary(parsed))
        #expect(string(TimelineFormat.summary(journal: [])) == TimelineStep.summary([]))
        // A damaged line with a figure that would overflow is passed over, not a trap in PID 1.
        let damaged = "{\"step\":\"x\",\"process\":\"init\",\"start_ms\":99999999999999999999,\"end_ms\":1.0}\n"
        #expect(string(TimelineFormat.summary(journal: bytes(damaged + journal))) == TimelineStep.summary(parsed))
    }

    @Test func theEarlyMountsAreSpiritCoresTable() {
        #expect(EarlyMount.table.count == EarlyMounts.table.count)
        for (mount, spec) in zip(EarlyMount.table, EarlyMounts.table) {
            #expect(string(mount.shell) == spec.description)
            #expect(string(mount.operation) == "mount \(spec.source) on \(spec.target) (\(spec.optionSummary))")
            #expect(mount.flags == spec.flags.rawValue)
        }
        let mountInfo = bytes("22 1 0:21 / /proc rw,nosuid - proc proc rw\n23 1 0:5 / /dev rw - devtmpfs devtmpfs rw\n")
        #expect(EarlyMount.mounted("/proc", mountInfo: mountInfo) && EarlyMount.mounted("/dev", mountInfo: mountInfo))
        #expect(!EarlyMount.mounted("/run", mountInfo: mountInfo) && !EarlyMount.mounted("/dev/pts", mountInfo: mountInfo))
    }
}
