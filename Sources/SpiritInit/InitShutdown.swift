import BootCascade
import Glibc
import Overlay
import SpiritCore
import SystemPackage

/// The one shutdown path of PID 1.
extension InitProcess {
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
        Reaper.reapUntilNone(milliseconds: milliseconds)
    }

    /// Asks the supervisor (SIGTERM) to stop the services in reverse
    /// dependency order, each within its stop timeout; waits for it to
    /// exit, reaping what else ends meanwhile.
    func stopServices() {
        guard let supervisor else { return }
        try? Kernel.kill(supervisor, SIGTERM)
        let deadline = Kernel.bootTimeMicros() + Self.supervisorStopMicros
        while Kernel.bootTimeMicros() < deadline {
            var ended: ExitStatus?
            Reaper.reap { pid, status in if pid == supervisor { ended = status } }
            if let ended {
                if ended != .exited(0) { console.error("shutdown: the supervisor \(ended)") }
                return
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
        journal.append("shutdown", [("action", action.rawValue), ("asked_by", reason)])
        let start = Kernel.bootTimeMicros()
        stopServices()
        stopEveryProcess(grace: 5)
        // Every writer has stopped: the journal is whole.
        if let medium = try? BootMedium(json: Kernel.readFile(RunFiles.bootMedium)), let line = JournalMedium.save(journal, medium: medium) {
            console.info("shutdown: " + line)
        }
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
