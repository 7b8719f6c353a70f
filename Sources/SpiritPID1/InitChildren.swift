/// PID 1's children: the boot worker (stage 1), the supervisor (stage 2),
/// the rescue and console shells, and every orphan, each reaped here.
extension Init {
    mutating func startWorker() {
        do {
            let pid = try Sys.spawn(Init.spirit, [text("spirit"), text("boot-worker")], environment: Init.workerEnvironment)
            children.worker = pid
            try? Sys.makeDirectory(RunFile.directory, parents: true)
            try? Sys.writeFile(RunFile.workerPID, line(text(pid), text("\n")).bytes)
            console.debug { line(text("boot worker is process "), text(pid)) }
        } catch {
            children.worker = nil
            enterRescue(reason: line(text("the boot worker cannot start: "), error.text))
        }
    }

    /// Collects every child that has ended: the worker, the supervisor, the
    /// shells and any orphan the kernel handed to PID 1.
    mutating func reap() {
        while let (pid, exit) = (try? Sys.reap()) ?? nil { ended(pid, exit) }
    }

    mutating func ended(_ pid: Int32, _ exit: ChildExit) {
        switch children.ended(pid) {
        case .worker:
            workerEnded(exit)
        case .supervisor:
            supervisorEnded(exit)
        case .rescueWatcher:
            console.debug { line(text("the rescue watcher "), text(exit)) }
        case .shell:
            Sys.remove(RunFile.rescueShellPID)
            if let watcher = children.rescueWatcher {
                Sys.kill(watcher, LinuxSignal.terminate)
                children.rescueWatcher = nil
            }
            if stage == 1 {
                console.info(text("the rescue shell ended; trying the boot again"))
                startWorker()
            } else {
                startConsoleShell()
            }
        case .orphan:
            console.debug { line(text("reaped process "), text(pid), text(", which "), text(exit)) }
        }
    }

    mutating func workerEnded(_ exit: ChildExit) {
        // The worker has moved /run into the new root with the rest of the
        // API filesystems when it says the root is ready.
        var ready = Init.newRoot
        ready.append(RunFile.rootReady)
        var workerPID = Init.newRoot
        workerPID.append(RunFile.workerPID)
        switch WorkerOutcome.after(exit, rootReady: Sys.exists(ready)) {
        case .switchRoot:
            Sys.remove(ready)
            Sys.remove(workerPID)
            switchRoot()
        case .rescue(let readReason):
            var reason = line(text("the boot worker "), text(exit))
            if readReason, let bytes = try? Sys.readFile(RunFile.rescueReason), let first = WorkerOutcome.reason(fromFile: bytes) {
                reason = Text(bytes: first)
            }
            Sys.remove(RunFile.rescueReason)
            Sys.remove(RunFile.workerPID)
            // Whatever the worker started (a break shell, a DHCP client) goes
            // with it, so that the rescue shell is alone on the console.
            stopEveryProcess(grace: 0)
            // A shell the worker started may have left its prompt on the line.
            console.newLine()
            enterRescue(reason: reason)
        }
    }

    mutating func enterRescue(reason: Text) {
        console.rescue(reason)
        let tty = Init.consoleTerminal()
        // Said before the shell starts: its prompt must not share a line with these.
        console.info(line(text("rescue shell on "), tty,
                          text(": 'exit' tries the boot again, 'poweroff' or 'reboot' stops the machine")))
        console.info(text("rescue tools: spirit-diag, spirit-mount DEVICE, spirit-fetch URL, spirit-usb [DEVICE], spirit-net scan"))
        // A shell that ends at once, before a worker that fails at once,
        // must not spin: the same pause as the console shell's.
        let delay = shellPacing.delayMillis(now: Sys.bootTimeMicros())
        if delay > 0 { Sys.sleep(milliseconds: delay) }
        shellPacing.started(at: Sys.bootTimeMicros())
        do {
            let shell = try Sys.spawn(Init.shellPath, [text("-sh")], environment: Init.environment, newSession: true, tty: tty)
            children.shell = shell
            try? Sys.writeFile(RunFile.rescueShellPID, line(text(shell), text("\n")).bytes)
            if stage == 1, children.rescueWatcher == nil {
                children.rescueWatcher = try? Sys.spawn(Init.spirit, [text("spirit"), text("rescue-watch")],
                                                        environment: Init.workerEnvironment)
            }
        } catch {
            children.shell = nil
            console.error(line(error.text, text("; waiting for ctrl-alt-del or a signal")))
        }
    }

    /// The hydrator's pid, if the worker started one that still runs (at
    /// switch_root, when /run and /proc are in the new root already).
    static func hydratorPID() -> Int32? {
        var file = Init.newRoot
        file.append(RunFile.hydratorPID)
        guard let bytes = try? Sys.readFile(file), let pid = WorkerOutcome.pid(fromFile: bytes) else { return nil }
        var proc = Init.newRoot
        proc.append(text("/proc/"))
        proc.append(Int64(pid))
        return Sys.exists(proc) ? pid : nil
    }

    /// The root the worker assembled, and moved /dev, /proc, /sys and /run into.
    static let newRoot = Text("/sysroot")

    /// The last syscalls of switch_root, which only PID 1 can make: the
    /// worker has checked /sysroot, moved the API filesystems into it and
    /// deleted the initramfs's files. Only a failure returns, into the
    /// rescue shell (if one can still start).
    mutating func switchRoot() {
        // A streaming boot's hydrator serves the new root's image and must
        // outlive the switch (it exits once the root reads RAM); the rest
        // of stage 1 goes.
        if let spared = Init.hydratorPID() {
            // The worker has moved /proc and /run into the new root.
            var procfs = Init.newRoot
            procfs.append(text("/proc"))
            Sys.killAll(LinuxSignal.kill, but: spared, procfs: procfs)
            // What was killed is reaped (a SIGKILL ends a process at once
            // unless it is stuck in the kernel); the hydrator stays a child.
            let deadline = Sys.bootTimeMicros() + 200_000
            while Sys.bootTimeMicros() < deadline {
                while let (pid, _) = (try? Sys.reap()) ?? nil, pid != spared {}
                Sys.sleep(milliseconds: 10)
            }
        } else {
            stopEveryProcess(grace: 0)
        }
        let initPath = Text("/sbin/init")
        // The rest of the plan the worker printed (RootPlan.switchRoot).
        console.debug { line(text("switch_root, PID 1's part:\ncd "), Init.newRoot,
                             text("\nmount -o move . /\nchroot .\ncd /\n# exec\nexec "), initPath, text(" "), Init.switchedRootFlag) }
        do {
            try Sys.enterRoot(Init.newRoot)
        } catch {
            enterRescue(reason: line(text("switch_root failed: "), error.text))
            return
        }
        let failure = Sys.execute(initPath, [initPath, Init.switchedRootFlag])
        enterRescue(reason: failure.text)
    }

    /// Stage 2: the supervisor starts the services and sends SIGHUP when
    /// every enabled one has settled (ready, or failed). Started again,
    /// after a pause if it died at once, whenever it dies.
    mutating func startSupervisor() {
        let delay = supervisorPacing.delayMillis(now: Sys.bootTimeMicros())
        if delay > 0 { Sys.sleep(milliseconds: delay) }
        supervisorPacing.started(at: Sys.bootTimeMicros())
        do {
            let pid = try Sys.spawn(Init.spirit, [text("spirit"), text("supervise")] + supervisorRecord,
                                    environment: Init.workerEnvironment)
            // Once: a supervisor started again must not write it twice.
            supervisorRecord = []
            children.supervisor = pid
            console.debug { line(text("the supervisor is process "), text(pid)) }
        } catch {
            children.supervisor = nil
            console.error(line(text("the supervisor cannot start: "), error.text, text("; no service runs")))
            becomeReady()
        }
    }

    mutating func supervisorEnded(_ exit: ChildExit) {
        console.error(line(text("the supervisor "), text(exit), text("; starting a new one")))
        // The console stays usable even when the supervisor cannot reach ready.
        if !announcedReady, flags.console, children.shell == nil { startConsoleShell() }
        startSupervisor()
    }

    /// Stage 2 with its services settled: `spirit: ready` and the timeline's
    /// summary, then a shell on the console, as on a live system, unless
    /// crom.console=off.
    mutating func becomeReady() {
        guard !announcedReady else { return }
        announcedReady = true
        console.info(text("ready"))
        let now = Sys.bootTimeMicros()
        record(step: "ready", process: "init", pid: Sys.pid, start: now, end: now, ok: true)
        if let journal = try? Sys.readFile(RunFile.timelineJournal) {
            console.info(line(text("timeline: "), TimelineFormat.summary(journal: journal), text(" ('spirit timeline' shows it all)")))
        }
        // After these lines, not before: the shell's prompt must not share a line with them.
        if flags.console, children.shell == nil { startConsoleShell() }
    }

    /// A login shell on the console terminal, started again when it ends
    /// (after a pause if it ended at once, so a broken shell cannot spin).
    mutating func startConsoleShell() {
        let delay = shellPacing.delayMillis(now: Sys.bootTimeMicros())
        if delay > 0 { Sys.sleep(milliseconds: delay) }
        shellPacing.started(at: Sys.bootTimeMicros())
        do {
            children.shell = try Sys.spawn(Init.shellPath, [text("-sh")], environment: Init.environment, newSession: true,
                                           tty: Init.consoleTerminal())
        } catch {
            children.shell = nil
            console.error(line(error.text, text("; no shell on the console")))
        }
    }

    /// The terminal behind /dev/console: the last one the kernel lists in
    /// /sys/class/tty/console/active (`tty0 ttyS0` → /dev/ttyS0). A shell
    /// needs the real terminal: /dev/console cannot be a controlling tty.
    static func consoleTerminal() -> Text {
        let active = (try? Sys.readFile(Text("/sys/class/tty/console/active"))) ?? []
        guard let last = active.split(whereSeparator: { $0 == 0x20 || $0 == 0x0A }).last else { return Text("/dev/console") }
        var path = Text("/dev/")
        path.append(bytes: Array(last))
        return path
    }

    /// Appends a step to the boot timeline (timeline.jsonl, one O_APPEND
    /// write a step) and writes timeline.json anew from it. A timeline that
    /// cannot be written must not stop the boot: the error is returned.
    @discardableResult
    func record(step: StaticString, process: StaticString, pid: Int32, start: Int64, end: Int64, ok: Bool,
                detail: Text? = nil) -> SysError? {
        do {
            try Sys.makeDirectory(RunFile.directory, parents: true)
            var record = TimelineFormat.record(step: step, process: process, pid: pid, startMicros: start, endMicros: end,
                                               ok: ok, detail: detail)
            record.append("\n")
            try Sys.writeFile(RunFile.timelineJournal, record.bytes, append: true)
            let journal = try Sys.readFile(RunFile.timelineJournal)
            try Sys.writeFileAtomically(RunFile.timelineDocument, TimelineFormat.document(journal: journal).bytes)
            return nil
        } catch {
            return error
        }
    }

    /// A record in the chained journal (/run/log/journal.jsonl), written by
    /// `spirit init-journal` as process "init": the chain is SHA-256 and
    /// flock, which stay in /bin/spirit. PID 1 waits for it (up to 5 s), so
    /// that the record comes before what follows.
    mutating func journal(_ kind: Text, _ fields: [Text]) {
        guard let exit = runHelper([text("spirit"), text("init-journal"), kind] + fields, milliseconds: 5000) else { return }
        if exit != .exited(0) {
            console.error(line(text("the journal cannot be written: spirit init-journal "), text(exit)))
        }
    }

    /// Runs /bin/spirit with `arguments` and waits for it, at most
    /// `milliseconds` (then SIGKILL, and 5 s more for it to go); what else
    /// ends meanwhile is reaped and noted. nil when it could not start, or
    /// did not end even when killed (stuck in the kernel, say on a stick
    /// pulled out: the shutdown goes on without it); said on the console.
    mutating func runHelper(_ arguments: [Text], milliseconds: Int) -> ChildExit? {
        let pid: Int32
        do {
            pid = try Sys.spawn(Init.spirit, arguments, environment: Init.workerEnvironment)
        } catch {
            console.error(error.text)
            return nil
        }
        let deadline = Sys.bootTimeMicros() + Int64(milliseconds) * 1000
        var killed = false
        while true {
            while let (ended, exit) = (try? Sys.reap()) ?? nil {
                if ended == pid { return exit }
                // A role that ends now (the supervisor during shutdown) is over.
                _ = children.ended(ended)
                console.debug { line(text("reaped process "), text(ended), text(", which "), text(exit)) }
            }
            if !killed, Sys.bootTimeMicros() >= deadline {
                var message = Text("spirit")
                for argument in arguments.dropFirst() {
                    message.append(" ")
                    message.append(argument)
                }
                message.append(" did not end within ")
                message.append(Int64(milliseconds))
                message.append(" ms; killed")
                console.error(message)
                Sys.kill(pid, LinuxSignal.kill)
                killed = true
            }
            if killed, Sys.bootTimeMicros() >= deadline + 5_000_000 {
                console.error(Text("it did not end when killed (stuck in the kernel); going on without it"))
                return nil
            }
            Sys.sleep(milliseconds: 10)
        }
    }
}
