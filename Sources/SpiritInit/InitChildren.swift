import BootCascade
import Glibc
import Overlay
import SpiritCore
import SystemPackage

/// PID 1's children: the boot worker (stage 1), the supervisor (stage 2),
/// the rescue and console shells, and every orphan, each reaped here.
extension InitProcess {
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
        Reaper.reap { pid, status in ended(pid, status) }
    }

    mutating func ended(_ pid: pid_t, _ status: ExitStatus) {
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
            Kernel.remove(RunFiles.rescueShellPID)
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

    mutating func workerEnded(_ status: ExitStatus) {
        if status == .exited(0), Kernel.exists(RunFiles.rootReady) {
            Kernel.remove(RunFiles.rootReady)
            Kernel.remove(RunFiles.workerPID)
            switchRoot()
            return
        }
        var reason = "the boot worker \(status)"
        if status == .exited(RunFiles.rescueExitStatus), let text = try? Kernel.readText(RunFiles.rescueReason) {
            reason = String(text.split(separator: "\n").first ?? Substring(reason))
        }
        Kernel.remove(RunFiles.rescueReason)
        Kernel.remove(RunFiles.workerPID)
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
            try? Kernel.writeFile(RunFiles.rescueShellPID, "\(shell ?? 0)\n")
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
        do {
            try SwitchRoot.check(newRoot: newRoot, initPath: initPath)
        } catch {
            enterRescue(reason: "\(error)")
            return
        }
        stopEveryProcess(grace: 0)
        let plan = RootPlan.switchRoot(newRoot: newRoot, initPath: initPath, arguments: [Self.switchedRootFlag])
        console.debug("switch_root plan:\n" + plan.shell)
        do {
            try PlanRunner(timeline: timeline, note: { [console] in console.debug("switch_root: \($0)") }).run(plan)
        } catch {
            enterRescue(reason: error.phase == "exec" ? "\(SystemError("exec \(initPath) in the new root", (error.underlying as? SystemError)?.errno ?? .ioError))"
                                                      : "switch_root failed: \(error)")
        }
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

    /// Stage 2 with its services settled: `spirit: ready` and the timeline's
    /// summary, then a shell on the console, as on a live system, unless
    /// crom.console=off.
    mutating func becomeReady() {
        guard !announcedReady else { return }
        announcedReady = true
        console.info("ready")
        let now = Kernel.bootTimeMicros()
        timeline.record(TimelineStep(step: "ready", process: "init", pid: Kernel.pid, startMicros: now, endMicros: now, ok: true))
        if let document = try? Kernel.readFile(timeline.documentPath), let steps = try? TimelineStep.steps(document: document) {
            console.info("timeline: " + TimelineStep.summary(steps) + " ('spirit timeline' shows it all)")
        }
        // After these lines, not before: the shell's prompt must not share a line with them.
        if config.console, shell == nil { startConsoleShell() }
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
}
