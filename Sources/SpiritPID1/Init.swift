/// spirit-init, PID 1 (ARCHITECTURE.md, "PID 1 is small"): block and
/// consume every signal, mount the early filesystems, reap every child and
/// orphan, keep one worker alive (`spirit boot-worker` in stage 1,
/// `spirit supervise` in stage 2), open the rescue shell when the boot
/// worker fails, enter the root it built, and own the one shutdown path.
/// Everything else is /bin/spirit's. Embedded Swift, linked statically with
/// musl: no runtime to start, no /proc needed before main, and about
/// 100 kB of memory. The decisions are InitCore's, unit-tested on the host.
/// PID 1 never returns.
///
/// Signals (the conventions of busybox's reboot/halt/poweroff applets):
///   SIGTERM, SIGINT (ctrl-alt-del)  stop everything, then restart
///   SIGUSR1                         stop everything, then halt
///   SIGUSR2, SIGPWR                 stop everything, then power off
///   SIGCHLD                         reap
///   SIGHUP from the supervisor      every enabled service has settled:
///                                   `spirit: ready` (stage 2)
///   any other                       ignored (noted with crom.debug=1)
@_cdecl("main")
func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    let started = Sys.bootTimeMicros()
    // Before any child exists, so that no signal is ever delivered the
    // default way to PID 1 (the kernel drops those it would not handle).
    let blocked = Sys.blockAllSignals()
    guard Sys.pid == 1 else {
        Sys.writeAll(2, line(text("spirit: error: init must run as process 1 (this is process "), text(Sys.pid),
                             text("); try 'spirit help'\n")).bytes)
        return 100
    }
    var stage = 1
    for index in 1..<Int(max(argc, 1)) where Sys.cString(argv[index]) == Init.switchedRootFlag { stage = 2 }
    var mountProblems = Init.earlyMounts()
    if blocked < 0 { mountProblems.append(SysError(operation: text("block every signal"), code: -blocked).text) }
    Init.ensureConsole()
    var process = Init(stage: stage, flags: Init.readFlags(stage: stage))
    process.start(started: started, mainStarted: Sys.bootTimeMicros(), problems: mountProblems)
}

struct Init {
    /// Stage 1 runs from the initramfs; stage 2 from the RAM root, after
    /// switch_root exec'ed /sbin/init with `--switched-root`.
    let stage: Int
    let flags: InitFlags
    let console: Console
    var children = ChildTable()
    var supervisorPacing = RestartPacing()
    var shellPacing = RestartPacing()
    var announcedReady = false
    /// Stage 2's `boot.stage2` journal record, for the first supervisor to
    /// write before anything else (`spirit supervise --record …`). PID 1
    /// has no SHA-256 for the chained journal; a helper process of its own
    /// was the first cold exec of /bin/spirit from the image, waited for
    /// before the supervisor's (about 300 ms under TCG).
    var supervisorRecord: [Text] = []

    static let switchedRootFlag = Text("--switched-root")
    /// The multi-call binary that does everything PID 1 does not.
    static let spirit = Text("/bin/spirit")
    static let shellPath = Text("/bin/sh")
    /// The environment of shells and tools started by PID 1 (Spawn.baseEnvironment).
    static let environment = [Text("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), Text("HOME=/root"), Text("TERM=linux")]
    /// The boot worker, the supervisor and the rescue watcher hash only
    /// their own small tables: no reason for the Swift runtime to wait for
    /// the kernel's random pool to seed Hasher (about a second under QEMU).
    static let workerEnvironment = environment + [Text("SWIFT_DETERMINISTIC_HASHING=1")]

    init(stage: Int, flags: InitFlags) {
        self.stage = stage
        self.flags = flags
        console = Console(debug: flags.debug)
    }

    /// Stage 2 reads the flags the boot worker checked (boot-config.json);
    /// stage 1 has only the kernel's command line.
    static func readFlags(stage: Int) -> InitFlags {
        if stage == 2, let bytes = try? Sys.readFile(RunFile.bootConfig), let flags = InitFlags.parse(bootConfig: bytes) {
            return flags
        }
        return InitFlags.parse(commandLine: (try? Sys.readFile(Text("/proc/cmdline"))) ?? [])
    }

    /// /proc, /sys, /dev, /dev/pts, /dev/shm, /run, each unless already
    /// mounted. A failure is reported, not fatal: the worker will say what
    /// cannot work without it.
    static func earlyMounts() -> [Text] {
        var problems: [Text] = []
        // /proc first: the others are looked up in its mountinfo.
        if !Sys.exists(Text("/proc/self")), let proc = EarlyMount.table.first {
            do {
                try Sys.makeDirectory(Text(proc.target))
                try Sys.mount(proc)
            } catch {
                problems.append(error.text)
            }
        }
        let mountInfo = (try? Sys.readFile(Text("/proc/self/mountinfo"))) ?? []
        for spec in EarlyMount.table where !EarlyMount.mounted(spec.target, mountInfo: mountInfo) {
            do {
                try Sys.makeDirectory(Text(spec.target))
                try Sys.mount(spec)
            } catch {
                problems.append(error.text)
            }
        }
        return problems
    }

    /// The kernel opens /dev/console as fds 0, 1 and 2 of PID 1 if the
    /// initramfs has the node; if it had not, open it now from devtmpfs.
    static func ensureConsole() {
        guard !Sys.isOpen(1), let fd = try? Sys.open(Text("/dev/console"), how: 1) else { return }
        for target: Int32 in 0...2 where !Sys.isOpen(target) { Sys.duplicate(fd, onto: target) }
        if fd > 2 { Sys.close(fd) }
    }

    mutating func start(started: Int64, mainStarted: Int64, problems: [Text]) -> Never {
        console.info(line(text("Crom-OS Spirit "), Init.version, text(": init is process "), text(Sys.pid), text(", stage "),
                          text(Int32(stage)), text(", kernel "), Sys.kernelRelease()))
        for problem in problems { console.error(problem) }
        // Services and tools talk to each other on 127.0.0.1 (spiritctl's
        // peers, `spirit net scan --to 127.0.0.1`); the kernel leaves lo down.
        do {
            try Sys.loopbackUp()
        } catch {
            console.warning(error.text)
        }
        let now = Sys.bootTimeMicros()
        if stage == 1 {
            console.debug {
                var text = Text("early mounts:")
                for spec in EarlyMount.table {
                    text.append("\n")
                    text.append(spec.shell)
                }
                return text
            }
            record(step: "kernel", process: "kernel", pid: 0, start: 0, end: started, ok: true,
                   detail: text("from the kernel's start to the first instruction of PID 1"))
            record(step: "runtime", process: "init", pid: Sys.pid, start: started, end: mainStarted, ok: true,
                   detail: text("from PID 1's first instruction to its main: no runtime to start (Embedded Swift)"))
            var detail: Text? = nil
            if !problems.isEmpty { detail = Init.joined(problems) }
            if let problem = record(step: "early-mounts", process: "init", pid: Sys.pid, start: mainStarted, end: now,
                                    ok: problems.isEmpty, detail: detail) {
                console.error(line(text("the boot timeline cannot be written: "), problem.text))
            }
        } else {
            record(step: "stage2", process: "init", pid: Sys.pid, start: started, end: now, ok: problems.isEmpty,
                   detail: text("from the exec of the root's init to its main"))
            supervisorRecord = [text("--record"), text("boot.stage2"), text("root"), text("switched"), text("mount_problems"),
                                Init.joined(problems)]
        }
        do {
            try Sys.reboot(PowerAction.ctrlAltDelOff, text("turn ctrl-alt-del into SIGINT (reboot(2))"))
        } catch {
            console.warning(line(error.text, text("; ctrl-alt-del will restart at once")))
        }
        let signals: Int32?
        do {
            signals = try Sys.signalFD()
        } catch {
            // Without a signalfd PID 1 cannot learn of its children or of a
            // shutdown request; reaping by polling is all that is left.
            signals = nil
            console.error(line(error.text, text("; reaping by polling, shutdown by signal is off")))
        }
        if stage == 1 {
            startWorker()
        } else {
            startSupervisor()
        }
        while true {
            guard let signals else {
                Sys.sleep(milliseconds: 200)
                reap()
                continue
            }
            let next: (signal: Int32, sender: Int32)
            do {
                next = try Sys.nextSignal(signals)
            } catch {
                // Reaping goes on by polling while the signalfd fails.
                console.error(error.text)
                Sys.sleep(milliseconds: 100)
                reap()
                continue
            }
            switch SignalAction.of(signal: next.signal, sender: next.sender, stage: stage, supervisor: children.supervisor) {
            case .reap:
                reap()
            case .shutdown(let action, let reason):
                shutdown(action, reason: reason.text)
            case .ready:
                becomeReady()
            case .ignore:
                console.debug {
                    var message = Text("ignored ")
                    LinuxSignal.appendName(next.signal, to: &message)
                    message.append(" from process ")
                    message.append(Int64(next.sender))
                    return message
                }
            }
        }
    }

    /// `a; b; c`.
    static func joined(_ problems: [Text]) -> Text {
        var text = Text()
        for (index, problem) in problems.enumerated() {
            if index > 0 { text.append("; ") }
            text.append(problem)
        }
        return text
    }

    /// The version /bin/spirit reports: the Makefile copies SpiritVersion.string
    /// into a generated Version.swift, so that the two cannot differ.
    static var version: Text { Text(spiritVersion) }
}

/// The files in /run/spirit that PID 1 shares with the worker and the tools (SpiritCore's RunFiles).
enum RunFile {
    static let directory = Text("/run/spirit")
    static let bootConfig = Text("/run/spirit/boot-config.json")
    static let workerPID = Text("/run/spirit/worker.pid")
    /// A streaming boot's `spirit nodus hydrate` (crom.nodus.stream=1).
    static let hydratorPID = Text("/run/spirit/hydrate.pid")
    static let rescueShellPID = Text("/run/spirit/rescue-shell.pid")
    static let rescueReason = Text("/run/spirit/rescue-reason")
    static let rootReady = Text("/run/spirit/root-ready")
    static let timelineJournal = Text("/run/spirit/timeline.jsonl")
    static let timelineDocument = Text("/run/spirit/timeline.json")
}
