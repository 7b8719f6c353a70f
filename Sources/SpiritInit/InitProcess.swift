import BootCascade
import Glibc
import Overlay
import SpiritCore
import SystemPackage

/// PID 1. It does only what only PID 1 can do (ARCHITECTURE.md, "PID 1 is
/// small"): block and consume every signal, mount the early filesystems,
/// reap every child and orphan, keep one boot worker alive, open the rescue
/// shell when the worker fails, and own the one shutdown path. The boot work
/// itself runs in the worker, so that a Swift runtime error there ends a
/// child, not the machine. PID 1 never returns.
///
/// Signals (the conventions of busybox's reboot/halt/poweroff applets):
///   SIGTERM, SIGINT (ctrl-alt-del)  stop everything, then restart
///   SIGUSR1                         stop everything, then halt
///   SIGUSR2, SIGPWR                 stop everything, then power off
///   SIGCHLD                         reap
///   SIGHUP from the supervisor      every enabled service has settled:
///                                   `spirit: ready` (stage 2)
///   any other                       ignored (noted with crom.debug=1)
struct InitProcess {
    /// Stage 1 runs from the initramfs; stage 2 from the RAM root, after
    /// switch_root exec'ed /sbin/init with `--switched-root`.
    let stage: Int
    let config: BootConfig
    var console: Console
    let timeline = Timeline(process: "init")
    let journal = JournalFile(process: "init")
    var worker: pid_t?
    var shell: pid_t?
    /// Beside the stage-1 rescue shell: announces media that appears.
    var rescueWatcher: pid_t?
    var shellStarted: Int64 = 0
    /// Stage 2: the service supervisor (`spirit supervise`), PID 1's one
    /// worker after switch_root.
    var supervisor: pid_t?
    var supervisorStarted: Int64 = 0
    var announcedReady = false

    static let switchedRootFlag = "--switched-root"

    static func main(arguments: [String] = []) -> Never {
        let started = Kernel.processStartMicros
        let mainStarted = Kernel.bootTimeMicros()
        // Before any thread exists, so that every thread inherits the mask
        // and no signal is ever delivered the default way to PID 1.
        try? SignalQueue.blockAll()
        guard Kernel.pid == 1 else {
            Console.tool.error("init must run as process 1 (this is process \(Kernel.pid)); try 'spirit help'")
            exit(100)
        }
        let mountProblems = Self.earlyMounts()
        Self.ensureConsole()

        // Stage 2 reads the flags the boot worker checked (boot-config.json);
        // stage 1 has only the kernel's command line.
        let config = BootConfig.current()
        var process = InitProcess(stage: arguments.contains(switchedRootFlag) ? 2 : 1, config: config,
                                  console: Console(debug: config.debug))
        process.start(started: started, mainStarted: mainStarted, mountProblems: mountProblems)
    }

    /// /proc (if the constructor could not), /sys, /dev, /dev/pts, /dev/shm,
    /// /run. A failure is reported, not fatal: the worker will say what
    /// cannot work without it.
    static func earlyMounts() -> [String] {
        var problems: [String] = []
        if let problem = Kernel.earlyProcProblem {
            problems.append("the early constructor could not mount /proc: \(problem)")
        }
        let mounted = Set(MountInfoEntry.parse((try? Kernel.readText("/proc/self/mountinfo")) ?? "").map(\.mountPoint))
        for spec in EarlyMounts.table where !mounted.contains(spec.target) {
            do {
                try Kernel.makeDirectory(spec.target)
                try Kernel.mount(spec)
            } catch {
                problems.append("\(error)")
            }
        }
        return problems
    }

    /// The kernel opens /dev/console as fds 0, 1 and 2 of PID 1 if the
    /// initramfs has the node; if it had not, open it now from devtmpfs.
    static func ensureConsole() {
        guard !Kernel.isOpen(1), let fd = try? Kernel.open("/dev/console", O_RDWR | O_NOCTTY) else { return }
        for target: CInt in 0...2 where !Kernel.isOpen(target) { try? Kernel.duplicate(fd, onto: target) }
        if fd > 2 { Kernel.close(fd) }
    }

    mutating func start(started: Int64, mainStarted: Int64, mountProblems: [String]) -> Never {
        console.info("Crom-OS Spirit \(SpiritVersion.string): init is process \(Kernel.pid), stage \(stage), kernel \(Kernel.release())")
        for problem in mountProblems { console.error(problem) }
        // Services and tools talk to each other on 127.0.0.1 (spiritctl's
        // peers, `spirit net scan --to 127.0.0.1`); the kernel leaves lo down.
        do {
            try Kernel.bringLoopbackUp()
        } catch {
            console.warning("\(error)")
        }
        let now = Kernel.bootTimeMicros()
        if stage == 1 {
            console.debug("early mounts:\n" + EarlyMounts.table.map(\.description).joined(separator: "\n"))
            timeline.record(TimelineStep(step: "kernel", process: "kernel", pid: 0, startMicros: 0, endMicros: started, ok: true,
                                         detail: "from the kernel's start to the first instruction of PID 1"))
            timeline.record(TimelineStep(step: "runtime", process: "init", pid: Kernel.pid, startMicros: started, endMicros: mainStarted,
                                         ok: true, detail: "from the early constructor to main: the Swift runtime starting"))
            if let problem = timeline.record(TimelineStep(step: "early-mounts", process: "init", pid: Kernel.pid, startMicros: mainStarted,
                                                          endMicros: now, ok: mountProblems.isEmpty,
                                                          detail: mountProblems.isEmpty ? nil : mountProblems.joined(separator: "; "))) {
                console.error("the boot timeline cannot be written: \(problem)")
            }
        } else {
            timeline.record(TimelineStep(step: "stage2", process: "init", pid: Kernel.pid, startMicros: started, endMicros: now,
                                         ok: mountProblems.isEmpty, detail: "from the exec of the root's init to its main"))
            if let problem = journal.append("boot.stage2", [("root", "switched"), ("mount_problems", mountProblems.joined(separator: "; "))]) {
                console.error("the journal cannot be written: \(problem)")
            }
        }
        do {
            try Kernel.disableCtrlAltDel()
        } catch {
            console.warning("\(error); ctrl-alt-del will restart at once")
        }
        let signals: SignalQueue?
        do {
            signals = try SignalQueue()
        } catch {
            // Without a signalfd PID 1 cannot learn of its children or of a
            // shutdown request; reaping by polling is all that is left.
            signals = nil
            console.error("\(error); reaping by polling, shutdown by signal is off")
        }
        if stage == 1 {
            startWorker()
        } else {
            startSupervisor()
        }
        while true {
            guard let signals else {
                Kernel.sleep(milliseconds: 200)
                reap()
                continue
            }
            let signal: CInt
            let sender: pid_t
            do {
                (signal, sender) = try signals.next()
            } catch {
                console.error("\(error)")
                Kernel.sleep(milliseconds: 100)
                continue
            }
            switch signal {
            case SIGCHLD:
                reap()
            case SIGTERM:
                shutdown(.reboot, reason: "SIGTERM from process \(sender)")
            case SIGINT:
                shutdown(.reboot, reason: "ctrl-alt-del")
            case SIGUSR1:
                shutdown(.halt, reason: "SIGUSR1 from process \(sender)")
            case SIGUSR2:
                shutdown(.poweroff, reason: "SIGUSR2 from process \(sender)")
            case SIGPWR:
                shutdown(.poweroff, reason: "SIGPWR (power failure)")
            case SIGHUP where stage == 2 && sender != 0 && sender == supervisor:
                becomeReady()
            default:
                console.debug("ignored \(Signal.name(signal)) from process \(sender)")
            }
        }
    }
}
