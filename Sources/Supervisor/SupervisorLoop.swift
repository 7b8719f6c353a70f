import CSpirit
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
/// One thread, one poll(2): the signalfd (SIGCHLD, SIGTERM), the control
/// socket and its connections, each service's notify socket and output
/// pipe, and the engine's next deadline as the timeout.
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
    var control: CInt = -1
    var signals: CInt = -1
    var shutdownStarted: Int64? = nil
    /// Starts not yet in the timeline (a notify service before READY=1):
    /// if the process ends first, its start goes in as failed.
    var unreadyStarts: [String: (pid: Int32, at: Int64)] = [:]

    public init(paths: SupervisorPaths, console: Console, systemMode: Bool) {
        self.paths = paths
        self.console = console
        self.systemMode = systemMode
        timeline = Timeline(directory: paths.run, process: "supervisor")
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
        _ = spirit_block_all_signals()
        signals = spirit_signalfd_all()
        if signals < 0 {
            console.error("unable to read signals (signalfd): \(Errno(rawValue: -signals))")
            return 111
        }
        let subreaper = spirit_set_child_subreaper()
        if subreaper < 0 { console.warning("unable to become a child subreaper: \(Errno(rawValue: -subreaper)); orphans go to PID 1") }
        for directory in [paths.run, paths.notify, paths.pids, paths.logs] {
            do {
                try Kernel.makeDirectory(directory, mode: 0o755, parents: true)
            } catch {
                console.error("\(error)")
                return 111
            }
        }
        let cgroupRoot = systemMode ? prepareCgroups() : nil
        if systemMode { stopLeftovers() }
        spawner = ProcessSpawner(paths: paths, cgroupRoot: cgroupRoot, console: console)

        let (definitions, errors) = ServiceDirectory.load(directory: paths.services)
        for error in errors { say(.error, "\(error); the service is left out") }
        engine = ServiceEngine(services: definitions, spawner: spawner, clock: clock)
        for definition in definitions { prepare(definition) }

        unlink(paths.run + "/services-ready")
        control = spirit_unix_bind(paths.control, 1)
        if control < 0 {
            say(.error, "\(SystemError("listen on \(paths.control)", Errno(rawValue: -control))); spiritctl cannot reach the supervisor")
        } else {
            // Anyone may connect; SO_PEERCRED then answers only root, with a
            // message that says so instead of a bare EACCES.
            chmod(paths.control, 0o666)
        }
        say(.info, "supervisor: \(definitions.count) services in \(paths.services)" + (definitions.isEmpty ? "" :
            " (" + definitions.map(\.name).sorted().joined(separator: ", ") + ")"))
        engine.startEnabled()
        _ = handleNotices()
        return loop()
    }

    /// Its log, and its notify socket for a notify service.
    func prepare(_ definition: ServiceDefinition) {
        if logs[definition.name] == nil {
            logs[definition.name] = ServiceLog(name: definition.name, directory: paths.logs, maxBytes: definition.logMaxBytes,
                                               ringLines: definition.logRingLines)
            logs[definition.name]?.onLines = { [weak self] lines in self?.sendToFollowers(definition.name, lines) }
        }
        if definition.readiness == .notify, !notifySockets.values.contains(definition.name) {
            let fd = spirit_unix_bind(spawner.notifySocket(definition.name), 0)
            if fd < 0 {
                say(.error, "\(SystemError("make the notify socket \(spawner.notifySocket(definition.name))", Errno(rawValue: -fd)))",
                    service: definition.name)
            } else {
                notifySockets[fd] = definition.name
            }
        }
    }

    /// cgroup2 on /sys/fs/cgroup (mounted here if the kernel has it and
    /// nothing is mounted there), with the memory and cpu controllers on.
    func prepareCgroups() -> String? {
        let root = "/sys/fs/cgroup"
        let mounts = MountInfoEntry.parse((try? Kernel.readText("/proc/self/mountinfo")) ?? "")
        if let mounted = mounts.last(where: { $0.mountPoint == root }) {
            guard mounted.fstype == "cgroup2" else {
                console.warning("\(root) is \(mounted.fstype), not cgroup2: services run without cgroup limits")
                return nil
            }
        } else {
            do {
                try Kernel.makeDirectory(root)
                try Kernel.mount(MountSpec(source: "cgroup2", target: root, fstype: "cgroup2", flags: [.noSUID, .noDev, .noExec]))
            } catch {
                console.warning("\(error): services run without cgroup limits")
                return nil
            }
        }
        do {
            try ProcessSpawner.enableControllers(cgroupRoot: root)
        } catch {
            console.warning("\(error): the memory and cpu limits of services are off")
        }
        return root
    }

    /// A supervisor that died left its services running (they went to
    /// PID 1): stop them before starting them again.
    func stopLeftovers() {
        for file in Kernel.listDirectory(paths.pids) where file.hasSuffix(".pid") {
            let path = paths.pids + "/" + file
            if let text = try? Kernel.readText(path), let pid = Int32(text.trimmed), pid > 1 {
                if (try? Kernel.kill(-pid, SIGKILL)) != nil {
                    say(.warning, "service \(file.dropLast(4)): stopped process \(pid), left by the previous supervisor")
                }
            }
            unlink(path)
        }
    }

    func loop() -> Int32 {
        while true {
            var fds = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
            if control >= 0 { fds.append(pollfd(fd: control, events: Int16(POLLIN), revents: 0)) }
            for fd in notifySockets.keys { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            for fd in pipes.keys { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            for fd in followers.keys { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            var timeout: CInt = -1
            if let deadline = engine.nextDeadline {
                timeout = CInt(clamping: max(0, (deadline - clock.nowMicros + 999) / 1000))
            }
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 {
                if spirit_errno() == EINTR { continue }
                console.error("\(SystemError("wait for events (poll)", Errno(rawValue: spirit_errno())))")
                return 111
            }
            for entry in fds where entry.revents != 0 {
                if entry.fd == signals {
                    if let code = readSignals() { return code }
                } else if entry.fd == control {
                    acceptConnection()
                } else if let name = notifySockets[entry.fd] {
                    readNotification(entry.fd, name)
                } else if let name = pipes[entry.fd] {
                    readOutput(entry.fd, name)
                } else if followers[entry.fd] != nil {
                    // A follower only ever reads: input or a hangup ends it.
                    followers[entry.fd] = nil
                    Glibc.close(entry.fd)
                }
            }
            engine.tick()
            if let code = handleNotices() { return code }
        }
    }

    /// Returns an exit code when the supervisor is done.
    func readSignals() -> Int32? {
        var sender: pid_t = 0
        let signal = spirit_signalfd_read(signals, &sender)
        switch signal {
        case SIGCHLD:
            while let (pid, status) = (try? Spawn.wait(-1, noHang: true)) ?? nil {
                if let index = engine.services.firstIndex(where: { $0.pid == pid }) {
                    let name = engine.services[index].definition.name
                    unlink(paths.pids + "/" + name + ".pid")
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
        return nil
    }

    func handleNotices() -> Int32? {
        for notice in engine.takeNotices() {
            switch notice {
            case .started(let name, let pid, _):
                if let (_, fd) = spawner.startedPipes.last(where: { $0.name == name }) {
                    pipes[fd] = name
                    spawner.startedPipes.removeAll { $0.fd == fd }
                }
                unreadyStarts[name] = (pid, clock.nowMicros)
                console.debug("service \(name): started, process \(pid)")
                logs[name]?.note("started, process \(pid)", at: clock.nowMicros)
            case .ready(let name, let startedAt, let at):
                unreadyStarts[name] = nil
                let pid = engine.services.first { $0.definition.name == name }?.pid ?? 0
                say(.info, "service \(name): ready, process \(pid), in \(formatMilliseconds(at - startedAt)) ms", service: name)
                timeline.record(TimelineStep(step: "service:" + name, process: "supervisor", pid: pid, startMicros: startedAt,
                                             endMicros: at, ok: true, detail: "process \(pid) ready"))
            case .readyTimeout(let name):
                let start = unreadyStarts.removeValue(forKey: name)
                say(.warning, "service \(name): not ready in time (no READY=1 on its NOTIFY_SOCKET); it runs on", service: name)
                let now = clock.nowMicros
                timeline.record(TimelineStep(step: "service:" + name, process: "supervisor", pid: start?.pid ?? 0,
                                             startMicros: start?.at ?? now, endMicros: now, ok: false, detail: "not ready in time"))
            case .exited(let name, let status, let restartIn):
                if let (pid, at) = unreadyStarts.removeValue(forKey: name) {
                    timeline.record(TimelineStep(step: "service:" + name, process: "supervisor", pid: pid, startMicros: at,
                                                 endMicros: clock.nowMicros, ok: false, detail: "\(status) before it was ready"))
                }
                let then = restartIn.map { "; restart in \(($0 + 500) / 1000) ms" } ?? ""
                say(restartIn == nil ? .info : .warning, "service \(name): \(status)\(then)", service: name)
            case .startFailed(let name, let reason, let restartIn):
                let then = restartIn.map { "; again in \(($0 + 500) / 1000) ms" } ?? ""
                say(.error, "service \(name): \(reason)\(then)", service: name)
                let now = clock.nowMicros
                timeline.record(TimelineStep(step: "service:" + name, process: "supervisor", pid: 0, startMicros: now, endMicros: now,
                                             ok: false, detail: reason))
            case .failed(let name, let reason):
                say(.error, "service \(name): failed: \(reason); 'spiritctl start \(name)' tries again", service: name)
            case .stopping(let name, let signal):
                console.debug("service \(name): sent \(Signal.name(signal))")
            case .killed(let name, let after):
                say(.warning, "service \(name): still running \(formatMilliseconds(after)) ms after its stop signal; SIGKILL", service: name)
            case .stopped(let name, let took, let killed):
                let how = killed ? "killed" : "stopped"
                say(.info, (shutdownStarted == nil ? "service \(name): " : "shutdown: \(name) ") + "\(how) in \(formatMilliseconds(took)) ms",
                    service: name)
            case .allReady:
                try? Kernel.writeFile(paths.ready, "\(formatMilliseconds(clock.nowMicros))\n")
                if systemMode, getppid() == 1 {
                    try? Kernel.kill(1, SIGHUP)
                } else {
                    say(.info, "ready")
                }
            case .allStopped:
                if let started = shutdownStarted {
                    say(.info, "shutdown: all services stopped in \(formatMilliseconds(clock.nowMicros - started)) ms")
                    finish()
                    return 0
                }
            }
        }
        return nil
    }

    func finish() {
        // The last lines of services that just ended.
        for (fd, name) in pipes {
            readOutput(fd, name)
        }
        if control >= 0 { unlink(paths.control) }
        for log in logs.values { log.close() }
        ownLog.close()
    }

    func readOutput(_ fd: CInt, _ name: String) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        // A few reads at most, so that a chatty service cannot starve the rest.
        for _ in 0..<4 {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                logs[name]?.append(buffer[0..<n], at: clock.nowMicros)
                continue
            }
            if n < 0, spirit_errno() == EAGAIN || spirit_errno() == EINTR { return }
            // End of file: the service and everything it started closed it.
            logs[name]?.finish(at: clock.nowMicros)
            pipes[fd] = nil
            Glibc.close(fd)
            return
        }
    }

    func readNotification(_ fd: CInt, _ name: String) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            engine.notified(name, message: String(decoding: buffer[0..<n], as: UTF8.self))
        }
    }

    // MARK: - The control socket

    func acceptConnection() {
        let fd = spirit_accept(control)
        guard fd >= 0 else { return }
        // The request is read first even from a stranger, so that the
        // answer is not lost to a connection reset.
        let line = readRequest(fd)
        let uid = spirit_peer_uid(fd)
        guard uid == 0 else {
            reply(fd, error: 111, "permission denied: the control socket answers only root (you are uid \(uid))")
            Glibc.close(fd)
            return
        }
        guard let line else {
            reply(fd, error: 100, "no request (expected one line: status, start S, stop S, restart S or logs S N)")
            Glibc.close(fd)
            return
        }
        guard let request = ControlRequest(line: line) else {
            reply(fd, error: 100, "not a request: '\(line)'")
            Glibc.close(fd)
            return
        }
        if answer(fd, request) {
            followers[fd] = request.service
        } else {
            Glibc.close(fd)
        }
    }

    /// One line, waiting at most a second for it.
    func readRequest(_ fd: CInt) -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while bytes.count < 1024 {
            var wanted = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&wanted, 1, 1000) > 0 else { return nil }
            guard read(fd, &byte, 1) == 1 else { break }
            if byte == 0x0A { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }

    /// Answers; returns true when the connection stays open as a follower.
    func answer(_ fd: CInt, _ request: ControlRequest) -> Bool {
        let now = clock.nowMicros
        if let name = request.service, engine.index(of: name) == nil {
            // A file added since the supervisor started: `start` picks it up.
            guard request.command == .start, Kernel.exists(paths.services + "/" + name + ".toml") else {
                reply(fd, error: 100, "unknown service '\(name)' (no \(paths.services)/\(name).toml)")
                return false
            }
            let path = paths.services + "/" + name + ".toml"
            do {
                let definition = try ServiceDefinition(name: name, file: try ServiceFile.parse(try Kernel.readText(path), path: path))
                engine.add(definition)
                prepare(definition)
            } catch {
                reply(fd, error: 100, "\(error)")
                return false
            }
        }
        switch request.command {
        case .status:
            var services = engine.services
            if let name = request.service { services = services.filter { $0.definition.name == name } }
            reply(fd, request.json ? StatusReport.json(services, now: now) : StatusReport.text(services, now: now))
        case .start, .stop, .restart:
            let name = request.service!
            do {
                switch request.command {
                case .start: try engine.start(name)
                case .stop: try engine.stop(name)
                default: try engine.restart(name)
                }
            } catch {
                reply(fd, error: 100, "\(error)")
                return false
            }
            say(.debug, "service \(name): \(request.command.rawValue) asked through the control socket", service: name)
            let state = engine.services[engine.index(of: name)!].state.rawValue
            reply(fd, request.json ? "{\"service\":\(jsonString(name)),\"state\":\(jsonString(state))}" : "\(name): \(state)")
        case .logs:
            let name = request.service!
            let lines = logs[name]?.last(request.lines) ?? []
            reply(fd, lines.joined(separator: "\n"))
            if request.follow {
                let flags = fcntl(fd, F_GETFL)
                _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
                return true
            }
        }
        return false
    }

    func sendToFollowers(_ name: String, _ lines: [String]) {
        for (fd, service) in followers where service == name {
            if !write(fd, lines.joined(separator: "\n") + "\n") {
                followers[fd] = nil
                Glibc.close(fd)
            }
        }
    }

    func reply(_ fd: CInt, _ body: String) {
        _ = write(fd, "ok\n" + (body.isEmpty ? "" : body + "\n"))
    }

    func reply(_ fd: CInt, error code: Int, _ message: String) {
        _ = write(fd, "error \(code) \(message)\n")
    }

    @discardableResult
    func write(_ fd: CInt, _ text: String) -> Bool {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if spirit_errno() == EINTR { continue }
                return false
            }
            bytes = bytes.dropFirst(n)
        }
        return true
    }
}
