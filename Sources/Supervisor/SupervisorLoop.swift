import Glibc
import SpiritCore
import SystemPackage

/// The supervisor process (`spirit supervise`): a child subreaper that
/// starts the services, reaps them (its own children and their orphans),
/// restarts them, keeps their logs and answers the control socket. In
/// stage 2 PID 1 starts it and is told through SIGHUP (and the ready file)
/// when every enabled service has settled; SIGTERM stops every service in
/// reverse dependency order, after which it exits 0.
///
/// One thread, one EventLoop: the signalfd (SIGCHLD, SIGTERM), the control
/// socket and its followers, each service's notify socket and output pipe,
/// with the engine's next deadline as the timeout.
public final class SupervisorLoop {
    let paths: SupervisorPaths
    let console: Console
    /// Under PID 1 in stage 2 (not a test in a directory): cgroups, and
    /// PID 1 to tell.
    let systemMode: Bool
    let clock = BootClock()
    let timeline: Timeline
    var engine: ServiceEngine! = nil
    var spawner: ProcessSpawner! = nil
    var logs: [String: ServiceLog] = [:]
    /// The supervisor's own lines (/run/log/spirit.log).
    let ownLog: ServiceLog
    var pipes: [CInt: String] = [:]
    var notifySockets: [CInt: String] = [:]
    var followers: [CInt: String] = [:]
    /// `events follow` connections: each gets the status when it changes.
    var statusFollowers: Set<CInt> = []
    var control: Socket?
    var signals: SignalQueue! = nil
    let events = EventLoop()
    var shutdownStarted: Int64? = nil
    /// Starts not yet in the timeline (a notify service before READY=1):
    /// if the process ends first, its start goes in as failed.
    var unreadyStarts: [String: (pid: Int32, at: Int64)] = [:]
    /// Every start, stop and restart, with its reason (/run/log/journal.jsonl).
    let journal: JournalFile
    /// Why a service will next start or stop, when it is not the boot's
    /// wish: asked over the control socket, or a restart after an exit.
    var journalReasons: [String: String] = [:]

    /// A journal record of PID 1's, written first (`--record`).
    public struct InitRecord: Sendable {
        public var kind: String
        public var fields: [(String, String)]

        public init(kind: String, fields: [(String, String)]) {
            self.kind = kind
            self.fields = fields
        }
    }
    let initRecord: InitRecord?

    public init(paths: SupervisorPaths, console: Console, systemMode: Bool, initRecord: InitRecord? = nil) {
        self.paths = paths
        self.console = console
        self.systemMode = systemMode
        self.initRecord = initRecord
        timeline = Timeline(directory: paths.run, process: "supervisor")
        journal = JournalFile(directory: paths.logs, process: "supervisor")
        ownLog = ServiceLog(name: "spirit", directory: paths.logs, maxBytes: 1 << 20, ringLines: 1000)
    }

    func say(_ level: LogLevel, _ message: String, service: String? = nil) {
        console.log(level, message)
        let now = clock.nowMicros
        ownLog.note(message, at: now)
        if let service {
            // In the service's own log, without its name.
            let prefix = "service \(service): "
            logs[service]?.note(message.hasPrefix(prefix) ? String(message.dropFirst(prefix.count)) : message, at: now)
        }
    }

    public func run() -> Int32 {
        do {
            try SignalQueue.blockAll()
            signals = try SignalQueue()
        } catch {
            console.error("\(error)")
            return 111
        }
        do {
            try Reaper.becomeSubreaper()
        } catch {
            console.warning("\(error); orphans go to PID 1")
        }
        for directory in [paths.run, paths.notify, paths.pids, paths.logs] {
            do {
                try Kernel.makeDirectory(directory, mode: 0o755, parents: true)
            } catch {
                console.error("\(error)")
                return 111
            }
        }
        // PID 1's record comes before the first service's.
        if let initRecord, let problem = JournalFile(directory: paths.logs, process: "init").append(initRecord.kind, initRecord.fields) {
            say(.error, "the journal cannot be written: \(problem)")
        }
        let cgroupRoot = systemMode ? prepareCgroups() : nil
        if systemMode { stopLeftovers() }
        spawner = ProcessSpawner(paths: paths, cgroupRoot: cgroupRoot, console: console)

        let (definitions, errors) = ServiceDirectory.load(directory: paths.services)
        for error in errors { say(.error, "\(error); the service is left out") }
        engine = ServiceEngine(services: definitions, spawner: spawner, clock: clock)
        for definition in definitions { prepare(definition) }

        Kernel.remove(paths.ready)
        do {
            control = try Socket.listenUnix(paths.control)
            // Anyone may connect; SO_PEERCRED then answers only root, with a
            // message that says so instead of a bare EACCES.
            try Kernel.setMode(paths.control, 0o666)
        } catch {
            say(.error, "\(error); spiritctl cannot reach the supervisor")
        }
        say(.info, "supervisor: \(definitions.count) services in \(paths.services)" + (definitions.isEmpty ? "" :
            " (" + definitions.map(\.name).sorted().joined(separator: ", ") + ")"))
        let starting = clock.nowMicros
        engine.startEnabled()
        recordStart(until: starting)
        _ = handleNotices()
        return loop()
    }

    /// The `supervisor` step of the timeline: from its process's start
    /// (its exec, and the binary's first pages read from the image) to its
    /// first service's start. Under TCG that was 250–600 ms of stage 2 that
    /// no step showed.
    /// (Its start is when CSpirit's early constructor ran, just after the exec.)
    func recordStart(until starting: Int64) {
        let started = Kernel.processStartMicros
        guard started > 0 else { return }
        _ = timeline.record(TimelineStep(step: "supervisor", process: "supervisor", pid: Kernel.pid, startMicros: started,
                                         endMicros: starting, ok: true,
                                         detail: "from its process's start to its first service's: its exec, cgroups, the service files"))
    }

    /// Its log, and its notify socket for a notify service.
    func prepare(_ definition: ServiceDefinition) {
        if logs[definition.name] == nil {
            logs[definition.name] = ServiceLog(name: definition.name, directory: paths.logs, maxBytes: definition.logMaxBytes,
                                               ringLines: definition.logRingLines)
            logs[definition.name]?.onLines = { [weak self] lines in self?.sendToFollowers(definition.name, lines) }
        }
        if definition.readiness == .notify, !notifySockets.values.contains(definition.name) {
            do {
                let socket = try Socket.bindUnixDatagram(spawner.notifySocket(definition.name))
                notifySockets[socket.fd] = definition.name
                events.watch(socket.fd) { [unowned self] fd in readNotification(fd, definition.name) }
            } catch {
                say(.error, "\(error)", service: definition.name)
            }
        }
    }

    func loop() -> Int32 {
        events.watch(signals.fd) { [unowned self] _ in readSignals() }
        if let control { events.watch(control.fd) { [unowned self] _ in acceptConnection() } }
        while true {
            let timeout = engine.nextDeadline.map { Int(clamping: max(0, ($0 - clock.nowMicros + 999) / 1000)) }
            do {
                try events.runOnce(milliseconds: timeout)
            } catch {
                console.error("\(error)")
                return 111
            }
            engine.tick()
            if let code = handleNotices() { return code }
        }
    }

    /// SIGCHLD: reap; SIGTERM, SIGINT: stop every service (the loop ends
    /// when they have stopped).
    func readSignals() {
        guard let (signal, _) = try? signals.next() else { return }
        switch signal {
        case SIGCHLD:
            Reaper.reap { pid, status in
                if let index = engine.services.firstIndex(where: { $0.pid == pid }) {
                    let name = engine.services[index].definition.name
                    Kernel.remove(paths.pids + "/" + name + ".pid")
                    // What it wrote before it ended goes into its log before the
                    // line that says it ended.
                    for (fd, owner) in pipes where owner == name { readOutput(fd, name) }
                }
                engine.childExited(pid: pid, status: status)
            }
        case SIGTERM, SIGINT:
            if shutdownStarted == nil {
                shutdownStarted = clock.nowMicros
                let running = engine.services.filter { $0.pid != nil }.map(\.definition.name)
                say(.info, "shutdown: stopping \(running.count) services" + (running.isEmpty ? "" : " (\(running.joined(separator: ", ")))"))
                engine.stopAll()
            }
        default:
            break
        }
    }

    func finish() {
        // The last lines of services that just ended.
        for (fd, name) in pipes {
            readOutput(fd, name)
        }
        if control != nil { Kernel.remove(paths.control) }
        for log in logs.values { log.close() }
        ownLog.close()
    }

    func readOutput(_ fd: CInt, _ name: String) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        // A few reads at most, so that a chatty service cannot starve the rest.
        for _ in 0..<4 {
            let n: Int?
            do {
                n = try buffer.withMutableBytes { raw throws(SystemError) in try Kernel.read(fd, into: raw, "the output of \(name)") }
            } catch {
                n = 0 // a broken pipe ends the output as its end does
            }
            guard let n else { return } // nothing more for now
            if n > 0 {
                logs[name]?.append(buffer[0..<n], at: clock.nowMicros)
                continue
            }
            // End of file: the service and everything it started closed it.
            logs[name]?.finish(at: clock.nowMicros)
            pipes[fd] = nil
            events.unwatch(fd)
            Kernel.close(fd)
            return
        }
    }

    func readNotification(_ fd: CInt, _ name: String) {
        let socket = Socket(fd: fd, name: spawner.notifySocket(name))
        var buffer = [UInt8](repeating: 0, count: 4096)
        while let n = (try? buffer.withMutableBytes({ raw throws(SystemError) in try socket.readIfReady(into: raw) })) ?? nil, n > 0 {
            engine.notified(name, message: String(decoding: buffer[0..<n], as: UTF8.self))
        }
    }
}
