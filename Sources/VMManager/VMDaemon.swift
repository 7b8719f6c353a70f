import Glibc
import SpiritCore
import Synchronization

/// `spirit vm daemon`: the VM manager's I/O shell. The main thread reads
/// signals and accepts control connections; each request runs on a thread
/// of its own (a start or an exec may take seconds); each QEMU has a watcher
/// thread that sees it end and keeps the guest agent's readiness. QEMU runs
/// in its own session (and cgroup when the supervisor's cgroup2 tree is
/// there), so that the daemon can stop and start again without taking the
/// VMs with it: a new daemon re-adopts them from their pid file and QMP
/// socket.
public final class VMDaemon: @unchecked Sendable {
    /// The exit status that tells the supervisor "nothing to do here" (the
    /// service's `exit.not-applicable`).
    public static let notApplicableExit: Int32 = 64

    let paths: VMPaths
    let console: Console
    let clock = BootClock()
    let lock = Monitor()
    var instances: [String: VMInstance] = [:]
    /// The `spirit` binary the `@NAME` wrappers run.
    let spiritBinary: String
    /// /sys/fs/cgroup/spirit when the supervisor made it (cgroup2).
    let cgroupParent: String?
    /// Loads the hypervisor's modules and says how it went: for a VM that
    /// wants KVM before the modules service has loaded them (after
    /// `spirit: ready`). Nil where this daemon does not own the machine
    /// (host tests under --root).
    let loadHypervisor: (@Sendable () -> String)?
    /// Held while the hypervisor's modules load; true once they were tried
    /// (on a CPU without VMX or SVM /dev/kvm never comes: tried once).
    let hypervisorTried = Mutex(false)

    init(paths: VMPaths, console: Console, cgroupParent: String?, loadHypervisor: (@Sendable () -> String)? = nil) {
        self.paths = paths
        self.console = console
        self.spiritBinary = Kernel.readLink("/proc/self/exe") ?? "/bin/spirit"
        self.cgroupParent = cgroupParent
        self.loadHypervisor = loadHypervisor
    }

    /// Runs the daemon; returns its exit status.
    public static func run(paths: VMPaths, console: Console, cgroupRoot: String = "/sys/fs/cgroup",
                           loadHypervisor: (@Sendable () -> String)? = nil) -> Int32 {
        // Nothing to do without definitions and without a QEMU in this tree
        // (the vm layer not mounted); with either, `spirit vm define` and
        // `start` need the daemon.
        let definitions = Kernel.listDirectory(paths.definitions).filter { $0.hasSuffix(".toml") }
        if definitions.isEmpty, !Kernel.exists(paths.root + "/usr/bin/qemu-system-x86_64") {
            console.notice("vm: no VM definitions in \(paths.definitions) and no QEMU here: nothing to do")
            return notApplicableExit
        }
        let signals: SignalQueue
        let control: Socket
        do {
            try SignalQueue.blockAll()
            signals = try SignalQueue()
            try Kernel.makeDirectory(paths.run, parents: true)
            try Kernel.makeDirectory(paths.wrappers, parents: true)
            control = try Socket.listenUnix(paths.controlSocket)
        } catch {
            console.error("vm: \(error)")
            return 111
        }
        let parent = cgroupRoot + "/spirit"
        let daemon = VMDaemon(paths: paths, console: console,
                              cgroupParent: Kernel.exists(parent + "/cgroup.procs") ? parent : nil, loadHypervisor: loadHypervisor)
        daemon.reload()
        ServiceNotify.ready()
        let events = EventLoop()
        var running = true
        events.watch(signals.fd) { _ in
            guard let (signal, _) = try? signals.next() else { return }
            if [SIGTERM, SIGINT].contains(signal) { running = false }
            // SIGHUP: read the definitions again (what `spirit vm define` asks for).
            if signal == SIGHUP { daemon.reload() }
        }
        events.watch(control.fd) { _ in
            guard let (connection, request, uid) = ControlChannel.accept(on: control) else { return }
            do {
                try Threads.start { daemon.answer(connection, request: request ?? "", uid: uid) }
            } catch {
                _ = try? Kernel.write(connection.fd, ControlChannel.error(code: 111, "\(error)"), socket: true, "a control connection")
                connection.close()
            }
        }
        while running {
            do {
                try events.runOnce(milliseconds: nil)
            } catch {
                console.error("vm: \(error)")
                return 111
            }
        }
        // The VMs go on: QEMU is in its own session; the next daemon adopts them.
        Kernel.remove(paths.controlSocket)
        console.notice("vm: the daemon ends; \(daemon.runningCount()) VM(s) keep running")
        return 0
    }

    func runningCount() -> Int {
        lock.withLock { instances.values.filter { $0.snapshot.state.hasProcess }.count }
    }

    func instance(_ name: String) throws(VMError) -> VMInstance {
        guard let instance = lock.withLock({ instances[name] }) else {
            throw VMError("no VM named '\(name)' (define it: spirit vm define FILE)", code: 100)
        }
        return instance
    }

    /// Reads the definitions: new ones are added (and adopted when a QEMU of
    /// theirs runs), changed ones take effect at their next start.
    func reload() {
        var wrappers: Set<String> = []
        for file in Kernel.listDirectory(paths.definitions) where file.hasSuffix(".toml") {
            let path = paths.definitions + "/" + file
            let definition: VMDefinition
            let text: String
            do {
                text = try Kernel.readText(path)
                definition = try VMDefinition.parse(text, path: path)
            } catch {
                console.error("vm: \(error)")
                continue
            }
            wrappers.insert("@" + definition.name)
            writeWrapper(definition.name)
            if let existing = lock.withLock({ instances[definition.name] }) {
                existing.update(definition, text: text)
                continue
            }
            let instancePaths = paths.instance(definition.name)
            let saved = Kernel.exists(instancePaths.stateRecord)
            let instance = VMInstance(definition: definition, text: text, paths: instancePaths, state: saved ? .saved : .defined)
            lock.withLock { instances[definition.name] = instance }
            adopt(instance)
        }
        for stale in Kernel.listDirectory(paths.wrappers) where stale.hasPrefix("@") && !wrappers.contains(stale) {
            Kernel.remove(paths.wrappers + "/" + stale)
        }
    }

    /// `@NAME`: a two-line script on the shells' PATH. ash has no
    /// command_not_found hook, but '@' is an ordinary character in a command
    /// name, so a file called `@windows` is a command like any other.
    func writeWrapper(_ name: String) {
        let root = paths.root.isEmpty ? "" : "SPIRIT_VM_ROOT=\(shellQuoted(paths.root)) "
        let script = "#!/bin/sh\n# \(name)'s guest runs what follows '@\(name)' (spirit vm daemon writes this file).\n"
            + "\(root)exec \(shellQuoted(spiritBinary)) vm at \(name) \"$@\"\n"
        do {
            try Kernel.writeFileAtomically(paths.wrappers + "/@" + name, script, mode: 0o755)
        } catch {
            console.warning("vm: @\(name) will not work: \(error)")
        }
    }

    /// A QEMU that a previous daemon started and that still runs: its pid
    /// file names it, /proc says it is still this VM's QEMU, and QMP answers.
    func adopt(_ instance: VMInstance) {
        guard let text = try? Kernel.readText(instance.paths.pidFile), let pid = pid_t(text.trimmed), pid > 0,
              let command = try? Kernel.readFile("/proc/\(pid)/cmdline"),
              String(decoding: command, as: UTF8.self).contains("guest=\(instance.name)\u{0}") else { return }
        do {
            let status = try connectQMP(instance, milliseconds: 3000)
            instance.stateLock.withLock {
                instance.pid = pid
                instance.isChild = false
                instance.generation += 1
                instance.lifecycle = VMLifecycle(name: instance.name, state: status == "running" ? .running : .paused)
            }
            console.notice("vm: \(instance.name): adopted QEMU \(pid) (\(status))")
            startWatcher(instance)
        } catch {
            console.warning("vm: \(instance.name): QEMU \(pid) runs but \(error): not adopted")
        }
    }

    /// Connects QMP (the socket appears a moment after QEMU starts), and
    /// returns query-status's `status`.
    @discardableResult
    func connectQMP(_ instance: VMInstance, milliseconds: Int) throws(VMError) -> String {
        let deadline = clock.nowMilliseconds + Int64(milliseconds)
        var lastError = VMError("QEMU's QMP socket \(instance.paths.qmpSocket) did not appear")
        while clock.nowMilliseconds < deadline {
            do throws(VMError) {
                let stream = try SocketStream(connectingTo: instance.paths.qmpSocket)
                let client = QMPClient(stream: stream, clock: clock)
                do {
                    try client.handshake()
                } catch {
                    stream.close()
                    throw error
                }
                instance.qmpStream?.close()
                instance.qmpStream = stream
                instance.qmp = client
                instance.stateLock.withLock { instance.qemuVersion = client.version }
                return try client.execute("query-status")["status"]?.string ?? "unknown"
            } catch {
                lastError = error
                if let pid = instance.snapshot.pid, !processExists(pid) { break }
                clock.sleep(milliseconds: 50)
            }
        }
        throw lastError
    }

    func processExists(_ pid: pid_t) -> Bool {
        (try? Kernel.kill(pid, 0)) != nil
    }

    /// The thread that sees QEMU end and keeps the agent's readiness: every
    /// 200 ms it checks the process; every second, while the agent has not
    /// answered, it tries a sync.
    func startWatcher(_ instance: VMInstance) {
        let generation = instance.stateLock.withLock { instance.generation }
        do {
            try Threads.start { [self] in
                var round = 0
                while true {
                    let (pid, isChild, current, ready) = instance.stateLock.withLock {
                        (instance.pid, instance.isChild, instance.generation, instance.agentReady)
                    }
                    guard let pid, current == generation else { return }
                    var ended: ExitStatus?? = nil
                    if isChild {
                        switch Result(catching: { () throws(SystemError) in try Spawn.wait(pid, noHang: true) }) {
                        case .success(let status?): ended = .some(status.status)
                        case .success(nil): break
                        case .failure: ended = .some(nil)
                        }
                    } else if !processExists(pid) {
                        ended = .some(nil)
                    }
                    if let ended {
                        processEnded(instance, generation: generation, status: ended)
                        return
                    }
                    if round % 5 == 0, !ready, instance.definition.agent != .none {
                        let answered = pingAgent(instance)
                        instance.stateLock.withLock { if instance.generation == generation { instance.agentReady = answered } }
                    }
                    round += 1
                    Kernel.sleep(milliseconds: 200)
                }
            }
        } catch {
            console.error("vm: \(instance.name): cannot watch QEMU: \(error)")
        }
    }

    func processEnded(_ instance: VMInstance, generation: Int, status: ExitStatus?) {
        instance.stateLock.withLock {
            guard instance.generation == generation else { return }
            _ = try? instance.lifecycle.handle(.exited(status), now: clock.nowMilliseconds)
            instance.pid = nil
            instance.agentReady = false
        }
        instance.agentLock.withLock {
            instance.agentStream?.close()
            instance.agentStream = nil
            instance.agent = nil
        }
        Kernel.remove(instance.paths.pidFile)
        stopTPM(instance)
        if let parent = cgroupParent { try? Kernel.removeDirectory(parent + "/vm-" + instance.name) }
        console.notice("vm: \(instance.name): QEMU \(status?.description ?? "ended")")
        returnGPU(instance)
    }

    /// A VM that `spirit gpu passthrough NAME` started has ended: its
    /// devices go back to their native drivers and the HUD starts again.
    /// `spirit gpu return` does it in a process of its own: it loads
    /// modules through ModuleLoader, which this daemon does not import.
    func returnGPU(_ instance: VMInstance) {
        guard Kernel.exists(paths.gpuRecord(instance.name)) else { return }
        var environment = Spawn.baseEnvironment
        if !paths.root.isEmpty { environment.append("SPIRIT_VM_ROOT=" + paths.root) }
        do {
            try Spawn.run(spiritBinary, [spiritBinary, "gpu", "return", instance.name, "--recorded-only"], environment: environment)
            console.notice("vm: \(instance.name): the GPU is back on its drivers")
        } catch {
            console.error("vm: \(instance.name): the GPU did not come back: \(error) (spirit gpu return \(instance.name) tries again)")
        }
    }

    /// swtpm ends with its QEMU (--terminate); it is this daemon's child to
    /// collect (after a daemon restart it is the supervisor's).
    func stopTPM(_ instance: VMInstance) {
        guard let pid = instance.stateLock.withLock({ () -> pid_t? in defer { instance.tpmPID = nil }; return instance.tpmPID }) else { return }
        try? Kernel.kill(pid, SIGTERM)
        _ = try? Spawn.wait(pid)
    }

    /// A sync with the agent (connecting first); whether it answered. A
    /// conversation in progress (an exec) counts as an answer.
    func pingAgent(_ instance: VMInstance, milliseconds: Int = 500) -> Bool {
        instance.agentLock.withLockIfFree {
            do {
                let agent = try agentClient(instance)
                return try agent.sync(milliseconds: milliseconds)
            } catch {
                instance.agentStream?.close()
                instance.agentStream = nil
                instance.agent = nil
                return false
            }
        } ?? true
    }

    /// Under agentLock: the connected client.
    func agentClient(_ instance: VMInstance) throws(VMError) -> GuestAgentClient {
        if let agent = instance.agent { return agent }
        let stream = try SocketStream(connectingTo: instance.paths.agentSocket)
        let agent = GuestAgentClient(stream: stream, clock: clock, firstSyncID: Int64(Kernel.bootTimeMicros() % 1_000_000_000))
        instance.agentStream = stream
        instance.agent = agent
        return agent
    }

    func shellQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
