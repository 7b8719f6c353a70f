import BootCascade
import CSpirit
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
        let started = spirit_process_start_us()
        let mainStarted = Kernel.bootTimeMicros()
        // Before any thread exists, so that every thread inherits the mask
        // and no signal is ever delivered the default way to PID 1.
        _ = spirit_block_all_signals()
        guard Kernel.pid == 1 else {
            Console.tool.error("init must run as process 1 (this is process \(Kernel.pid)); try 'spirit help'")
            exit(100)
        }
        let mountProblems = Self.earlyMounts()
        Self.ensureConsole()

        let commandLine = (try? Kernel.readText("/proc/cmdline")) ?? ""
        let (config, _) = BootConfig.parse(commandLine)
        var process = InitProcess(stage: arguments.contains(switchedRootFlag) ? 2 : 1, config: config,
                                  console: Console(debug: config.debug))
        process.start(started: started, mainStarted: mainStarted, mountProblems: mountProblems)
    }

    /// /proc (if the constructor could not), /sys, /dev, /dev/pts, /dev/shm,
    /// /run. A failure is reported, not fatal: the worker will say what
    /// cannot work without it.
    static func earlyMounts() -> [String] {
        var problems: [String] = []
        if spirit_early_proc_status() < 0 {
            problems.append("the early constructor could not mount /proc (errno \(-spirit_early_proc_status()))")
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
        guard fcntl(1, F_GETFD) < 0 else { return }
        let fd = open("/dev/console", O_RDWR | O_NOCTTY)
        guard fd >= 0 else { return }
        for target: CInt in 0...2 where fcntl(target, F_GETFD) < 0 { dup2(fd, target) }
        if fd > 2 { close(fd) }
    }

    mutating func start(started: Int64, mainStarted: Int64, mountProblems: [String]) -> Never {
        console.info("Crom-OS Spirit \(SpiritVersion.string): init is process \(Kernel.pid), stage \(stage), kernel \(Kernel.release())")
        for problem in mountProblems { console.error(problem) }
        // Services and tools talk to each other on 127.0.0.1 (spiritctl's
        // peers, `spirit net scan --to 127.0.0.1`); the kernel leaves lo down.
        let loopback = spirit_loopback_up()
        if loopback < 0 { console.warning("\(SystemError("bring the loopback interface up", Errno(rawValue: -loopback)))") }
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
        }
        do {
            try Kernel.disableCtrlAltDel()
        } catch {
            console.warning("\(error); ctrl-alt-del will restart at once")
        }
        let signals = spirit_signalfd_all()
        if signals < 0 {
            // Without a signalfd PID 1 cannot learn of its children or of a
            // shutdown request; reaping by polling is all that is left.
            console.error("unable to read signals (signalfd): errno \(-signals); reaping by polling, shutdown by signal is off")
        }
        if stage == 1 {
            startWorker()
        } else {
            startSupervisor()
        }
        while true {
            if signals < 0 {
                Kernel.sleep(milliseconds: 200)
                reap()
                continue
            }
            var sender: pid_t = 0
            let signal = spirit_signalfd_read(signals, &sender)
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
            case ..<0:
                console.error("unable to read a signal: errno \(-signal)")
                Kernel.sleep(milliseconds: 100)
            default:
                console.debug("ignored \(Signal.name(signal)) from process \(sender)")
            }
        }
    }

    mutating func startWorker() {
        do {
            // The worker too must not wait for the kernel's random pool to
            // seed Hasher (see early.c); it handles only boot-time data.
            let pid = try Spawn.spawn("/proc/self/exe", ["spirit", "boot-worker"],
                                      environment: Spawn.baseEnvironment + ["SWIFT_DETERMINISTIC_HASHING=1"])
            worker = pid
            try? Kernel.writeFile(RunFiles.workerPID, "\(pid)\n")
            console.debug("boot worker is process \(pid)")
        } catch {
            worker = nil
            enterRescue(reason: "the boot worker cannot start: \(error)")
        }
    }

    /// Collects every child that has ended: the worker, the rescue shell and
    /// any orphan the kernel handed to PID 1.
    mutating func reap() {
        while let (pid, status) = (try? Spawn.wait(-1, noHang: true)) ?? nil {
            if pid == worker {
                worker = nil
                workerEnded(status)
            } else if pid == supervisor {
                supervisor = nil
                supervisorEnded(status)
            } else if pid == rescueWatcher {
                rescueWatcher = nil
                console.debug("the rescue watcher \(status)")
            } else if pid == shell {
                shell = nil
                unlink(CascadeFiles.rescueShellPID)
                if let watcher = rescueWatcher {
                    try? Kernel.kill(watcher, SIGTERM)
                    rescueWatcher = nil
                }
                if stage == 1 {
                    console.info("the rescue shell ended; trying the boot again")
                    startWorker()
                } else {
                    startConsoleShell()
                }
            } else {
                console.debug("reaped process \(pid), which \(status)")
            }
        }
    }

    mutating func workerEnded(_ status: ExitStatus) {
        if status == .exited(0), Kernel.exists(RunFiles.rootReady) {
            unlink(RunFiles.rootReady)
            unlink(RunFiles.workerPID)
            switchRoot()
            return
        }
        var reason = "the boot worker \(status)"
        if status == .exited(RunFiles.rescueExitStatus), let text = try? Kernel.readText(RunFiles.rescueReason) {
            reason = String(text.split(separator: "\n").first ?? Substring(reason))
        }
        unlink(RunFiles.rescueReason)
        unlink(RunFiles.workerPID)
        // Whatever the worker started (a break shell, a DHCP client) goes
        // with it, so that the rescue shell is alone on the console.
        stopEveryProcess(grace: 0)
        // A shell the worker started may have left its prompt on the line.
        console.newLine()
        enterRescue(reason: reason)
    }

    mutating func enterRescue(reason: String) {
        console.rescue(reason)
        let tty = Spawn.consoleTerminal()
        // Said before the shell starts: its prompt must not share a line
        // with these.
        console.info("rescue shell on \(tty): 'exit' tries the boot again, 'poweroff' or 'reboot' stops the machine")
        console.info("rescue tools: spirit-diag, spirit-mount DEVICE, spirit-fetch URL, spirit-usb [DEVICE], spirit-net scan")
        do {
            shell = try Spawn.spawn("/bin/sh", ["-sh"], options: .init(newSession: true, tty: tty))
            try? Kernel.writeFile(CascadeFiles.rescueShellPID, "\(shell ?? 0)\n")
            if stage == 1, rescueWatcher == nil {
                rescueWatcher = try? Spawn.spawn("/proc/self/exe", ["spirit", "rescue-watch"],
                                                 environment: Spawn.baseEnvironment + ["SWIFT_DETERMINISTIC_HASHING=1"])
            }
        } catch {
            shell = nil
            console.error("\(error); waiting for ctrl-alt-del or a signal")
        }
    }

    /// Enters the root the worker assembled and execs its init. Only a
    /// failure returns, into the rescue shell.
    mutating func switchRoot() {
        let newRoot = RootLayout().sysroot
        let initPath = "/sbin/init"
        let start = Kernel.bootTimeMicros()
        do {
            try SwitchRoot.check(newRoot: newRoot, initPath: initPath)
        } catch {
            enterRescue(reason: "\(error)")
            return
        }
        stopEveryProcess(grace: 0)
        do {
            try SwitchRoot.enter(newRoot: newRoot, console: console)
        } catch {
            enterRescue(reason: "switch_root failed: \(error)")
            return
        }
        timeline.record(TimelineStep(step: "switch_root", process: "init", pid: Kernel.pid, startMicros: start,
                                     endMicros: Kernel.bootTimeMicros(), ok: true, detail: "into \(newRoot), exec \(initPath)"))
        let arguments = ["init", Self.switchedRootFlag]
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = Spawn.baseEnvironment.map { strdup($0) } + [nil]
        execve(initPath, argv, envp)
        enterRescue(reason: "\(SystemError("exec \(initPath) in the new root", Errno(rawValue: spirit_errno())))")
    }

    /// Stage 2: the supervisor starts the services and sends SIGHUP when
    /// every enabled one has settled (ready, or failed). Started again,
    /// after a pause if it died at once, whenever it dies.
    mutating func startSupervisor() {
        if Kernel.bootTimeMicros() - supervisorStarted < 1_000_000 { Kernel.sleep(milliseconds: 1000) }
        supervisorStarted = Kernel.bootTimeMicros()
        do {
            // Like the worker, it hashes only its own data (service names,
            // fds): no reason to wait for the random pool (see early.c).
            supervisor = try Spawn.spawn("/proc/self/exe", ["spirit", "supervise"],
                                         environment: Spawn.baseEnvironment + ["SWIFT_DETERMINISTIC_HASHING=1"])
            console.debug("the supervisor is process \(supervisor ?? 0)")
        } catch {
            supervisor = nil
            console.error("the supervisor cannot start: \(error); no service runs")
            becomeReady()
        }
    }

    mutating func supervisorEnded(_ status: ExitStatus) {
        console.error("the supervisor \(status); starting a new one")
        // The console stays usable even when the supervisor cannot reach ready.
        if !announcedReady, config.console, shell == nil { startConsoleShell() }
        startSupervisor()
    }

    /// Stage 2 with its services settled: the console gets a shell, as on a
    /// live system, unless crom.console=off; then `spirit: ready`.
    mutating func becomeReady() {
        guard !announcedReady else { return }
        announcedReady = true
        if config.console, shell == nil { startConsoleShell() }
        console.info("ready")
        let now = Kernel.bootTimeMicros()
        timeline.record(TimelineStep(step: "ready", process: "init", pid: Kernel.pid, startMicros: now, endMicros: now, ok: true))
        if let document = try? Kernel.readFile(timeline.documentPath), let steps = try? TimelineStep.steps(document: document) {
            console.info("timeline: " + TimelineStep.summary(steps) + " ('spirit timeline' shows it all)")
        }
    }

    /// A login shell on the console terminal, started again when it ends
    /// (after a pause if it ended at once, so a broken shell cannot spin).
    mutating func startConsoleShell() {
        if Kernel.bootTimeMicros() - shellStarted < 1_000_000 { Kernel.sleep(milliseconds: 1000) }
        shellStarted = Kernel.bootTimeMicros()
        do {
            shell = try Spawn.spawn("/bin/sh", ["-sh"], options: .init(newSession: true, tty: Spawn.consoleTerminal()))
        } catch {
            shell = nil
            console.error("\(error); no shell on the console")
        }
    }

    /// SIGTERM, SIGHUP and SIGCONT to every process but PID 1; after
    /// `grace` seconds, SIGKILL to what is left; returns when PID 1 has no
    /// child. SIGHUP because interactive shells ignore SIGTERM and leave on
    /// a hangup: without it, every shutdown with a console shell waited the
    /// whole grace period (5085 ms of a `make run` poweroff).
    func stopEveryProcess(grace seconds: Int) {
        if seconds > 0 {
            try? Kernel.kill(-1, SIGTERM)
            try? Kernel.kill(-1, SIGHUP)
            try? Kernel.kill(-1, SIGCONT)
            if waitForNoChildren(milliseconds: seconds * 1000) { return }
            console.info("shutdown: processes still running after \(seconds) s get SIGKILL")
        }
        try? Kernel.kill(-1, SIGKILL)
        _ = waitForNoChildren(milliseconds: 3000)
    }

    /// Reaps until PID 1 has no child left (ECHILD) or time is up.
    func waitForNoChildren(milliseconds: Int) -> Bool {
        let deadline = Kernel.bootTimeMicros() + Int64(milliseconds) * 1000
        while true {
            do {
                while try Spawn.wait(-1, noHang: true) != nil {}
            } catch {
                return true // ECHILD: nothing left
            }
            if Kernel.bootTimeMicros() >= deadline { return false }
            Kernel.sleep(milliseconds: 20)
        }
    }

    /// Asks the supervisor (SIGTERM) to stop the services in reverse
    /// dependency order, each within its stop timeout; waits for it to
    /// exit, reaping what else ends meanwhile.
    func stopServices() {
        guard let supervisor else { return }
        try? Kernel.kill(supervisor, SIGTERM)
        let deadline = Kernel.bootTimeMicros() + Self.supervisorStopMicros
        while Kernel.bootTimeMicros() < deadline {
            while let (pid, status) = (try? Spawn.wait(-1, noHang: true)) ?? nil {
                if pid == supervisor {
                    if status != .exited(0) { console.error("shutdown: the supervisor \(status)") }
                    return
                }
            }
            Kernel.sleep(milliseconds: 20)
        }
        console.error("shutdown: the supervisor did not stop the services within \(Self.supervisorStopMicros / 1_000_000) s")
    }

    /// How long PID 1 waits for the supervisor to stop the services (each
    /// has its own stop timeout, after which the supervisor kills it).
    static let supervisorStopMicros: Int64 = 120_000_000

    /// Hangs up the console shell's session (an interactive shell ignores
    /// SIGTERM), waits up to a second for the shell, then ends the line its
    /// last prompt may have left open.
    func stopConsoleShell(_ shell: pid_t) {
        try? Kernel.kill(-shell, SIGHUP)
        try? Kernel.kill(-shell, SIGCONT)
        let deadline = Kernel.bootTimeMicros() + 1_000_000
        while Kernel.bootTimeMicros() < deadline {
            do {
                if try Spawn.wait(shell, noHang: true) != nil { break }
            } catch {
                break // already reaped
            }
            Kernel.sleep(milliseconds: 10)
        }
        console.newLine()
    }

    /// The one shutdown path: stop the services, then every process, swap
    /// off, unmount, sync, reboot(2).
    func shutdown(_ action: PowerAction, reason: String) -> Never {
        // The console shell leaves first: the shell that asked (busybox's
        // reboot signals and returns at once) prints its next prompt, and
        // it must not share a line with the shutdown lines.
        if let shell { stopConsoleShell(shell) }
        console.info("shutdown: \(action.rawValue), asked by \(reason)")
        let start = Kernel.bootTimeMicros()
        stopServices()
        stopEveryProcess(grace: 5)
        Kernel.sync()
        Shutdown.swapOff(console: console)
        let summary = Shutdown.unmountAll(console: console)
        Kernel.sync()
        console.info("shutdown: every process stopped, \(summary), in \(formatMilliseconds(Kernel.bootTimeMicros() - start)) ms; \(action.rawValue) now")
        do {
            try Kernel.reboot(action)
        } catch {
            console.error("\(error)")
        }
        // PID 1 must never exit: if reboot(2) failed, there is nothing left
        // to do but wait.
        while true { Kernel.sleep(milliseconds: 60_000) }
    }
}
