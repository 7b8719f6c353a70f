/// The one shutdown path of PID 1.
extension Init {
    /// SIGTERM, SIGHUP and SIGCONT to every process but PID 1; after
    /// `grace` seconds, SIGKILL to what is left; returns when PID 1 has no
    /// child. SIGHUP because interactive shells ignore SIGTERM and leave on
    /// a hangup: without it, every shutdown with a console shell waited the
    /// whole grace period.
    func stopEveryProcess(grace seconds: Int) {
        if seconds > 0 {
            Sys.kill(-1, LinuxSignal.terminate)
            Sys.kill(-1, LinuxSignal.hangup)
            Sys.kill(-1, LinuxSignal.proceed)
            if Init.waitForNoChildren(milliseconds: seconds * 1000) { return }
            console.info(line(text("shutdown: processes still running after "), text(Int32(seconds)), text(" s get SIGKILL")))
        }
        Sys.kill(-1, LinuxSignal.kill)
        _ = Init.waitForNoChildren(milliseconds: 3000)
    }

    /// Reaps until PID 1 has no child left (ECHILD) or time is up.
    static func waitForNoChildren(milliseconds: Int) -> Bool {
        let deadline = Sys.bootTimeMicros() + Int64(milliseconds) * 1000
        while true {
            do {
                while try Sys.reap() != nil {}
            } catch {
                return true // ECHILD: none left
            }
            if Sys.bootTimeMicros() >= deadline { return false }
            Sys.sleep(milliseconds: 10)
        }
    }

    /// How long PID 1 waits for the supervisor to stop the services (each
    /// has its own stop timeout, after which the supervisor kills it).
    static let supervisorStopMicros: Int64 = 120_000_000

    /// Asks the supervisor (SIGTERM) to stop the services in reverse
    /// dependency order; waits for it to exit, reaping what else ends meanwhile.
    mutating func stopServices() {
        guard let supervisor = children.supervisor else { return }
        Sys.kill(supervisor, LinuxSignal.terminate)
        let deadline = Sys.bootTimeMicros() + Init.supervisorStopMicros
        while Sys.bootTimeMicros() < deadline {
            while let (pid, exit) = (try? Sys.reap()) ?? nil {
                guard pid == supervisor else { continue }
                children.supervisor = nil
                if exit != .exited(0) { console.error(line(text("shutdown: the supervisor "), text(exit))) }
                return
            }
            Sys.sleep(milliseconds: 20)
        }
        console.error(line(text("shutdown: the supervisor did not stop the services within "),
                           text(Int32(Init.supervisorStopMicros / 1_000_000)), text(" s")))
    }

    /// Hangs up the console shell's session (an interactive shell ignores
    /// SIGTERM), waits up to a second for the shell, then ends the line its
    /// last prompt may have left open.
    func stopConsoleShell(_ shell: Int32) {
        Sys.kill(-shell, LinuxSignal.hangup)
        Sys.kill(-shell, LinuxSignal.proceed)
        let deadline = Sys.bootTimeMicros() + 1_000_000
        while Sys.bootTimeMicros() < deadline {
            do {
                if try Sys.reap(shell) != nil { break }
            } catch {
                break // already reaped
            }
            Sys.sleep(milliseconds: 10)
        }
        console.newLine()
    }

    /// How long `spirit shutdown-finish` may take (the journal's copy to
    /// the boot medium, swapoff, unmounting) before PID 1 goes on without it.
    static let finishMilliseconds = 60_000

    /// The one shutdown path: stop the services, then every process; then
    /// `spirit shutdown-finish` saves the journal, swaps off and unmounts;
    /// sync, reboot(2). If the helper cannot run, sync and reboot anyway.
    mutating func shutdown(_ action: PowerAction, reason: Text) -> Never {
        // The console shell leaves first: the shell that asked (busybox's
        // reboot signals and returns at once) prints its next prompt, and
        // it must not share a line with the shutdown lines.
        if let shell = children.shell { stopConsoleShell(shell) }
        console.info(line(text("shutdown: "), Text(action.word), text(", asked by "), reason))
        journal(text("shutdown"), [text("action"), Text(action.word), text("asked_by"), reason])
        let start = Sys.bootTimeMicros()
        stopServices()
        stopEveryProcess(grace: 5)
        Sys.sync()
        var startText = Text()
        startText.append(start)
        let finished = runHelper([text("spirit"), text("shutdown-finish"), Text(action.word), startText],
                                 milliseconds: Init.finishMilliseconds)
        Sys.sync()
        if finished != .exited(0) {
            // The helper prints the last line itself; without it, say that
            // the filesystems stay as they are (their data is synced).
            var took = Text()
            took.appendMilliseconds(Sys.bootTimeMicros() - start)
            let why = finished.map { line(text("spirit shutdown-finish "), text($0)) } ?? text("spirit shutdown-finish did not start")
            console.info(line(text("shutdown: every process stopped, filesystems left mounted ("), why, text("), in "), took,
                              text(" ms; "), Text(action.word), text(" now")))
        }
        do {
            try Sys.reboot(action.rebootCommand, line(Text(action.word), text(" (reboot(2))")))
        } catch {
            console.error(error.text)
        }
        // PID 1 must never exit: if reboot(2) failed, there is nothing left
        // to do but wait.
        while true { Sys.sleep(milliseconds: 60_000) }
    }
}
