import Glibc
import SpiritCore
import Synchronization

/// The daemon's requests, each on its own thread: one line on the control
/// socket (`start NAME`, `stop NAME …`, …), `exec` with a second line (the
/// command, a JSON array), answered as ControlChannel answers.
extension VMDaemon {
    func answer(_ connection: Socket, request: String, uid: Int) {
        defer { connection.close() }
        func reply(_ text: String) { _ = try? Kernel.write(connection.fd, text, socket: true, "a control connection") }
        guard uid == 0 else {
            return reply(ControlChannel.error(code: 111, "permission denied: the VM manager answers only root (you are uid \(uid))"))
        }
        let words = request.split(separator: " ").map(String.init)
        do throws(VMError) {
            switch (words.first ?? "", words.count) {
            case ("list", 1):
                reply(ControlChannel.ok(listJSON()))
            case ("reload", 1):
                reload()
                reply(ControlChannel.ok(""))
            case ("start", 2), ("start", 3):
                reply(ControlChannel.ok(try start(try instance(words[1]), fresh: words.count == 3 && words[2] == "fresh", mustRestore: false)))
            case ("restore", 2):
                reply(ControlChannel.ok(try start(try instance(words[1]), fresh: false, mustRestore: true)))
            case ("stop", 5):
                let instance = try instance(words[1])
                if words[3] == "save" {
                    reply(ControlChannel.ok(try save(instance)))
                } else {
                    reply(ControlChannel.ok(try stop(instance, force: words[2] == "force", timeoutMilliseconds: Int64(words[4]) ?? 30_000)))
                }
            case ("pause", 2), ("resume", 2):
                reply(ControlChannel.ok(try pauseOrResume(try instance(words[1]), pause: words[0] == "pause")))
            case ("save", 2):
                reply(ControlChannel.ok(try save(try instance(words[1]))))
            case ("exec", 4), ("exec", 5):
                guard let line = connection.readLine(limit: 1 << 20, milliseconds: 2000),
                      let argv = (try? JSONReader.parse(line))?.array?.compactMap(\.string), !argv.isEmpty else {
                    throw VMError("exec: the command (a JSON array of strings on the second line) is missing", code: 100)
                }
                var input: [UInt8]?
                if words.count == 5 {
                    // `stdin`: the command's input, base64 on a third line.
                    guard words[4] == "stdin", let text = connection.readLine(limit: VMClient.inputLimit * 2, milliseconds: 2000),
                          let bytes = Base64.decode(text) else {
                        throw VMError("exec: the input (base64 on the third line) is missing or broken", code: 100)
                    }
                    input = bytes
                }
                let result = try exec(try instance(words[1]), argv, shell: words[3] == "shell", input: input,
                                      milliseconds: Int(words[2]) ?? 60_000)
                reply(ControlChannel.ok(JSONValue.object([
                    ("status", .int(result.shellStatus)),
                    ("exitcode", result.exitCode.map { .int($0) } ?? .null),
                    ("signal", result.signal.map { .int($0) } ?? .null),
                    ("stdout", .string(Base64.encode(result.stdout))),
                    ("stderr", .string(Base64.encode(result.stderr))),
                    ("truncated", .bool(result.stdoutTruncated || result.stderrTruncated)),
                ]).text))
            default:
                throw VMError("not a request: '\(request)'", code: 100)
            }
        } catch {
            reply(ControlChannel.error(code: Int(error.code), error.description))
        }
    }

    func listJSON() -> String {
        let all = lock.withLock { instances.values.sorted { $0.name < $1.name } }
        let items: [JSONValue] = all.map { instance in
            let snapshot = instance.snapshot
            let agent = instance.definition.agent == .none ? "none" : snapshot.agentReady ? "ready" : snapshot.state.hasProcess ? "waiting" : "-"
            var members: [(String, JSONValue)] = [
                ("name", .string(instance.name)), ("state", .string(snapshot.state.rawValue)), ("agent", .string(agent)),
                ("memory-mib", .int(snapshot.memoryMiB)), ("saved", .bool(Kernel.exists(instance.paths.stateRecord))),
            ]
            if let pid = snapshot.pid { members.append(("pid", .int(pid))) }
            if let reason = snapshot.reason { members.append(("reason", .string(reason))) }
            return .object(members)
        }
        return JSONValue.object([("vms", .array(items))]).text
    }

    /// Runs `body` with `monitor` held; typed errors pass through.
    func locked<T>(_ monitor: Monitor, _ body: () throws(VMError) -> T) throws(VMError) -> T {
        let result: Result<T, VMError> = monitor.withLock { Result { () throws(VMError) in try body() } }
        return try result.get()
    }

    func transition(_ instance: VMInstance, _ event: VMEvent) throws(VMError) -> [VMAction] {
        try locked(instance.stateLock) { () throws(VMError) in try instance.lifecycle.handle(event, now: clock.nowMilliseconds) }
    }

    // MARK: start and restore

    func start(_ instance: VMInstance, fresh: Bool, mustRestore: Bool) throws(VMError) -> String {
        try locked(instance.operation) { () throws(VMError) in
            let files = instance.paths
            if fresh {
                Kernel.remove(files.stateRecord)
                Kernel.remove(files.stateStream)
            }
            let saved = Kernel.exists(files.stateRecord) && Kernel.exists(files.stateStream)
            if mustRestore, !saved { throw VMError("\(instance.name) has no saved state to restore", code: 100) }
            var record: SavedState?
            if saved {
                // Checked before anything starts: a state that does not
                // match is never loaded, and the VM is not booted instead.
                let state = try loadSavedState(instance)
                if let why = state.mismatch(with: try currentState(instance, like: state)) {
                    throw VMError("unable to restore \(instance.name): \(why); it was not started "
                                  + "(spirit vm start \(instance.name) --fresh boots it and deletes the state)")
                }
                record = state
            }
            try preflight(instance)
            let started = clock.nowMilliseconds
            var actions = try transition(instance, .start(hasSavedState: saved))
            guard actions == [.launch(incoming: saved)] else { throw VMError("bug: start gave \(actions)") }
            do throws(VMError) {
                try prepare(instance, keepOverlays: saved)
                try launch(instance, incoming: saved)
                let status = try connectQMP(instance, milliseconds: 20_000)
                actions = try transition(instance, .launched(running: status == "running"))
            } catch {
                let why = qemuLogTail(instance).map { "\(error.description): \($0)" } ?? error.description
                try fail(instance, why)
                throw VMError("unable to start \(instance.name): \(why)")
            }
            guard actions == [.migrateIn], let record else {
                return "\(instance.name) started (QEMU \(instance.snapshot.pid ?? 0)) in \(clock.nowMilliseconds - started) ms"
            }
            do throws(VMError) {
                try restoreStream(instance, record)
                for action in try transition(instance, .restoreCompleted) {
                    switch action {
                    case .resume: try instance.qmp?.execute("cont")
                    case .discardSavedState:
                        Kernel.remove(files.stateRecord)
                        Kernel.remove(files.stateStream)
                    default: break
                    }
                }
            } catch {
                try fail(instance, error.description)
                throw VMError("unable to restore \(instance.name): \(error.description); it was not started "
                              + "(spirit vm start \(instance.name) --fresh boots it and deletes the state)")
            }
            let restored = clock.nowMilliseconds - started
            let clockNote = fixGuestClock(instance)
            return "\(instance.name) restored from its saved state in \(restored) ms\(clockNote)"
        }
    }

    /// Marks the VM failed and ends its QEMU if one runs.
    func fail(_ instance: VMInstance, _ why: String) throws(VMError) {
        let actions = (try? transition(instance, .failed(why))) ?? []
        if actions.contains(.kill), let pid = instance.snapshot.pid { try? Kernel.kill(pid, SIGKILL) }
        instance.closeClients()
        if instance.snapshot.pid == nil { stopTPM(instance) }
    }

    /// The run directory, the disks' overlays, the firmware vars, the TPM.
    func prepare(_ instance: VMInstance, keepOverlays: Bool) throws(VMError) {
        let vm = instance.definition
        let files = instance.paths
        do {
            try Kernel.makeDirectory(files.directory, mode: 0o700, parents: true)
            try Kernel.makeDirectory(files.persistent, mode: 0o700, parents: true)
        } catch {
            throw VMError("\(error)")
        }
        for socket in [files.qmpSocket, files.agentSocket, files.consoleSocket, files.tpmSocket, files.pidFile] { Kernel.remove(socket) }
        for disk in vm.disks {
            guard disk.overlay else { continue }
            if keepOverlays, Kernel.exists(files.overlay(disk.name)) { continue }
            Kernel.remove(files.overlay(disk.name))
            let qemuImg = String(vm.qemu.split(separator: "/").dropLast().joined(separator: "/")).prefixedWithSlash + "/qemu-img"
            do {
                try Spawn.run(qemuImg, QEMUCommandLine.overlayCreation(disk, files, qemuImg: qemuImg))
            } catch {
                throw VMError("unable to make the overlay of the disk \(disk.name): \(error)")
            }
        }
        if vm.firmware != .bios, !Kernel.exists(files.ovmfVars) {
            do {
                let vars = try Kernel.readFile(vm.ovmfVars)
                let fd = try Kernel.open(files.ovmfVars + ".new", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
                defer { Kernel.close(fd) }
                try vars.withUnsafeBytes { raw in Result { () throws(SystemError) in try Kernel.write(fd, raw, files.ovmfVars) } }.get()
                try Kernel.renameFile(files.ovmfVars + ".new", to: files.ovmfVars)
            } catch {
                throw VMError("unable to copy the UEFI vars \(vm.ovmfVars): \(error)")
            }
        }
        if vm.tpm {
            do {
                try Kernel.makeDirectory(files.tpmState, mode: 0o700)
                let log = try Kernel.open(files.directory + "/swtpm.log", O_WRONLY | O_CREAT | O_APPEND, mode: 0o600)
                defer { Kernel.close(log) }
                let pid = try Spawn.spawn("/usr/bin/swtpm", QEMUCommandLine.tpmCommand(files),
                                          options: Spawn.Options(newSession: true, outputFD: log, nullStdin: true))
                instance.stateLock.withLock { instance.tpmPID = pid }
            } catch {
                throw VMError("unable to start swtpm for \(instance.name): \(error) (is the swtpm package there?)")
            }
            let deadline = clock.nowMilliseconds + 5000
            while !Kernel.exists(files.tpmSocket), clock.nowMilliseconds < deadline { clock.sleep(milliseconds: 20) }
        }
    }

    /// What a start needs, checked before anything is done: the disks are
    /// there, and none that is a block device is mounted in Spirit.
    func preflight(_ instance: VMInstance) throws(VMError) {
        // KVM wanted and /dev/kvm not there yet: the modules service loads
        // the hypervisor's modules only after `spirit: ready`. QEMU's
        // kvm:tcg would otherwise fall back to TCG without a word.
        if instance.definition.accelerator != "tcg", !Kernel.exists("/dev/kvm"), let loadHypervisor {
            hypervisorTried.withLock { tried in
                guard !tried else { return }
                tried = true
                console.info("vm: \(instance.name) wants KVM and /dev/kvm is not there yet: \(loadHypervisor())")
            }
        }
        for disk in instance.definition.disks {
            guard Kernel.exists(disk.path) else {
                throw VMError("unable to start \(instance.name): the disk \(disk.name) (\(disk.path)) does not exist", code: 100)
            }
            if disk.path.hasPrefix("/dev/"), let why = diskRefusal(disk.path) {
                throw VMError("unable to start \(instance.name): \(why)", code: 100)
            }
        }
    }

    /// Why a block device may not be given to a VM now, or nil: it (or a
    /// partition of it) is mounted in Spirit, or holds a hibernated NTFS.
    func diskRefusal(_ path: String) -> String? {
        let device = Kernel.readLink(path).map { link in
            link.hasPrefix("/") ? link : String(path.split(separator: "/").dropLast().joined(separator: "/")).prefixedWithSlash + "/" + link
        }.map(normalised) ?? path
        let base = String(device.split(separator: "/").last ?? "")
        let partitions = Kernel.listDirectory("/sys/class/block/\(base)")
            .filter { Kernel.exists("/sys/class/block/\(base)/\($0)/partition") }.map { "/dev/" + $0 }
        let mountinfo = (try? Kernel.readText("/proc/self/mountinfo")) ?? ""
        if let why = DiskSafety.refusal(disk: path, device: device, partitions: partitions, mountinfo: mountinfo) { return why }
        for volume in [device] + partitions where isNTFS(volume) {
            if let head = hiberfileHead(volume), DiskSafety.isHibernated(hiberfileHead: head) {
                return "the NTFS on \(volume) (disk \(path)) is hibernated (Windows Fast Startup or hibernation): "
                    + "shut Windows down fully (shutdown /s /t 0, or powercfg -h off) before it runs in a VM"
            }
        }
        return nil
    }

    func isNTFS(_ volume: String) -> Bool {
        guard let fd = try? Kernel.open(volume, O_RDONLY) else { return false }
        defer { Kernel.close(fd) }
        var sector = [UInt8](repeating: 0, count: 512)
        guard (try? sector.withMutableBytes { raw throws(SystemError) in try Kernel.read(fd, into: raw, at: 0, volume) }) != nil else { return false }
        return DiskSafety.isNTFS(bootSector: sector)
    }

    /// The first bytes of hiberfil.sys on an NTFS volume, read with ntfscat
    /// (ntfs-3g's tools read a volume without mounting it); nil when there
    /// is none or no ntfscat. The file is gigabytes: ntfscat is ended after
    /// the first bytes.
    func hiberfileHead(_ volume: String) -> [UInt8]? {
        guard Kernel.exists("/usr/bin/ntfscat") || Kernel.exists("/bin/ntfscat") else {
            console.warning("vm: no ntfscat (ntfs-3g): whether the NTFS on \(volume) is hibernated is not checked")
            return nil
        }
        guard let pipe = try? Kernel.outputPipe() else { return nil }
        defer { Kernel.close(pipe.read) }
        let child = try? Spawn.spawn("/bin/sh", ["sh", "-c", "exec ntfscat \"$0\" hiberfil.sys 2>/dev/null", volume],
                                     options: Spawn.Options(outputFD: pipe.write, nullStdin: true))
        Kernel.close(pipe.write)
        guard let child else { return nil }
        defer {
            try? Kernel.kill(child, SIGKILL)
            _ = try? Spawn.wait(child)
        }
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        let deadline = clock.nowMilliseconds + 5000
        while head.count < 4, clock.nowMilliseconds < deadline {
            var fds = [pollfd(fd: pipe.read, events: Int16(POLLIN), revents: 0)]
            guard (try? Kernel.poll(&fds, milliseconds: 200)) != nil else { break }
            let read: Int?
            do {
                read = try buffer.withMutableBytes { raw throws(SystemError) in try Kernel.read(pipe.read, into: raw, "ntfscat's output") }
            } catch {
                break
            }
            guard let n = read else { continue }
            if n == 0 { break }
            head += buffer[0..<n]
        }
        return head.isEmpty ? nil : head
    }

    func normalised(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") {
            if part == ".." { _ = parts.popLast() } else if part != "." { parts.append(part) }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Spawns QEMU in its own session (and cgroup), its output in qemu.log.
    func launch(_ instance: VMInstance, incoming: Bool) throws(VMError) {
        let files = instance.paths
        let argv = QEMUCommandLine.arguments(instance.definition, instance: files, incoming: incoming)
        var options = Spawn.Options(newSession: true, nullStdin: true)
        var opened: [CInt] = []
        defer { opened.forEach { Kernel.close($0) } }
        do {
            let log = try Kernel.open(files.qemuLog, O_WRONLY | O_CREAT | O_APPEND, mode: 0o600)
            opened.append(log)
            options.outputFD = log
            try Kernel.write(log, "--- \(argv.joined(separator: " "))\n", "\(files.qemuLog)")
        } catch {
            throw VMError("\(error)")
        }
        if let parent = cgroupParent {
            // Its own cgroup beside the daemon's: the supervisor stopping or
            // killing the vm service (its cgroup) leaves the VMs alone.
            let group = parent + "/vm-" + instance.name
            do {
                try Kernel.makeDirectory(group)
                let procs = try Kernel.open(group + "/cgroup.procs", O_WRONLY)
                opened.append(procs)
                options.cgroupProcsFD = procs
            } catch {
                console.warning("vm: \(instance.name): runs without its own cgroup: \(error)")
            }
        }
        var environment = Spawn.baseEnvironment
        if let modules = getenv("QEMU_MODULE_DIR") { environment.append("QEMU_MODULE_DIR=" + String(cString: modules)) }
        let pid: pid_t
        do {
            pid = try Spawn.spawn(argv[0], argv, environment: environment, options: options)
        } catch {
            throw VMError("\(error)")
        }
        instance.stateLock.withLock {
            instance.pid = pid
            instance.isChild = true
            instance.agentReady = false
            instance.generation += 1
        }
        startWatcher(instance)
    }

    func qemuLogTail(_ instance: VMInstance) -> String? {
        guard let text = try? Kernel.readText(instance.paths.qemuLog) else { return nil }
        return text.split(separator: "\n").last { !$0.hasPrefix("--- ") }.map { String($0).trimmed }
    }

    // MARK: stop

    func stop(_ instance: VMInstance, force: Bool, timeoutMilliseconds: Int64) throws(VMError) -> String {
        try locked(instance.operation) { () throws(VMError) in
            let ready = instance.snapshot.agentReady
            let started = clock.nowMilliseconds
            var actions = try locked(instance.stateLock) { () throws(VMError) in
                instance.lifecycle.deadlines.agentMilliseconds = timeoutMilliseconds
                instance.lifecycle.deadlines.acpiMilliseconds = timeoutMilliseconds
                return try instance.lifecycle.handle(.stop(force: force, agentReady: ready), now: clock.nowMilliseconds)
            }
            var steps: [String] = []
            while true {
                for action in actions {
                    steps.append(perform(instance, action))
                }
                if instance.snapshot.state != .stopping { break }
                clock.sleep(milliseconds: 50)
                actions = instance.stateLock.withLock {
                    instance.lifecycle.state == .stopping ? instance.lifecycle.tick(now: clock.nowMilliseconds) : []
                }
            }
            instance.closeClients()
            let snapshot = instance.snapshot
            return "\(instance.name) \(snapshot.state.rawValue) in \(clock.nowMilliseconds - started) ms (\(steps.joined(separator: ", ")))"
        }
    }

    /// One step of a stop; a step that cannot be taken goes to the next at once.
    func perform(_ instance: VMInstance, _ action: VMAction) -> String {
        do throws(VMError) {
            switch action {
            case .agentShutdown:
                // Not behind a command the agent is running (an @NAME may
                // take minutes): the power button instead.
                let sent: Result<Void, VMError>? = instance.agentLock.withLockIfFree {
                    Result { () throws(VMError) in try agentClient(instance).shutdown() }
                }
                guard let sent else { throw VMError("the agent is busy with a command") }
                try sent.get()
                return "guest-shutdown"
            case .acpiPowerdown:
                guard let qmp = instance.qmp else { throw VMError("no QMP") }
                try qmp.execute("system_powerdown")
                return "ACPI power button"
            case .quit:
                _ = try? instance.qmp?.execute("quit", milliseconds: 2000)
                return "quit"
            case .kill:
                if let pid = instance.snapshot.pid { try? Kernel.kill(pid, SIGKILL) }
                return "SIGKILL"
            default:
                return "\(action)"
            }
        } catch {
            let next = instance.stateLock.withLock { instance.lifecycle.tick(now: instance.lifecycle.deadline ?? 0) }
            let step = action == .agentShutdown ? "guest-shutdown" : action == .acpiPowerdown ? "ACPI power button" : "\(action)"
            return "\(step) failed (\(error.description))" + next.map { ", " + perform(instance, $0) }.joined()
        }
    }

    // MARK: pause and resume

    func pauseOrResume(_ instance: VMInstance, pause: Bool) throws(VMError) -> String {
        try locked(instance.operation) { () throws(VMError) in
            _ = try transition(instance, pause ? .pause : .resume)
            guard let qmp = instance.qmp else { throw VMError("\(instance.name): no QMP connection") }
            try qmp.execute(pause ? "stop" : "cont")
            _ = try transition(instance, pause ? .paused : .resumed)
            return "\(instance.name) \(pause ? "paused" : "running")"
        }
    }

    // MARK: save

    /// stop + migrate to a file the daemon opened (getfd + `fd:`: QEMU 7.2
    /// has no `file:` URI), then quit; the record is written last.
    func save(_ instance: VMInstance) throws(VMError) -> String {
        try locked(instance.operation) { () throws(VMError) in
            guard let qmp = instance.qmp, instance.snapshot.state.hasProcess else {
                throw VMError("\(instance.name) is \(instance.snapshot.state.rawValue): only a running or paused VM can be saved", code: 100)
            }
            let files = instance.paths
            let started = clock.nowMilliseconds
            let blocked = try qmp.execute("query-migrate")["blocked-reasons"]?.array?.compactMap(\.string) ?? []
            _ = try transition(instance, .save(blockedReasons: blocked))
            let partial = files.stateStream + ".partial"
            var migrated: JSONValue
            do throws(VMError) {
                Kernel.remove(files.stateRecord)
                try qmp.execute("stop")
                let fd: CInt
                do {
                    fd = try Kernel.open(partial, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
                } catch {
                    throw VMError("\(error)")
                }
                do throws(VMError) {
                    try qmp.execute("getfd", [("fdname", .string("statefd"))], passing: fd)
                } catch {
                    Kernel.close(fd)
                    throw error
                }
                Kernel.close(fd)
                try qmp.execute("migrate", [("uri", .string("fd:statefd"))])
                migrated = try waitForMigration(qmp, what: "the save")
            } catch {
                Kernel.remove(partial)
                for action in (try? transition(instance, .failed("save failed: \(error.description)"))) ?? [] where action == .resume {
                    _ = try? qmp.execute("cont")
                }
                throw VMError("unable to save \(instance.name): \(error.description) (it runs on)")
            }
            let savedMilliseconds = clock.nowMilliseconds - started
            do {
                try Kernel.renameFile(partial, to: files.stateStream)
            } catch {
                throw VMError("\(error)")
            }
            _ = try transition(instance, .saveCompleted)
            _ = try? qmp.execute("quit", milliseconds: 2000)
            let deadline = clock.nowMilliseconds + 10_000
            while instance.snapshot.pid != nil, clock.nowMilliseconds < deadline { clock.sleep(milliseconds: 20) }
            if let pid = instance.snapshot.pid { try? Kernel.kill(pid, SIGKILL) }
            instance.closeClients()
            // The overlays are final once QEMU has closed them.
            var record = try currentState(instance, like: nil)
            record.savedAt = WallClock.nanoseconds / 1_000_000_000
            do {
                try Kernel.writeFileAtomically(files.stateRecord, record.json, mode: 0o600)
            } catch {
                throw VMError("\(error)")
            }
            let downtime = migrated["downtime"]?.integer.map { ", downtime \($0) ms" } ?? ""
            return "\(instance.name) saved in \(savedMilliseconds) ms\(downtime): \(record.streamBytes) bytes in \(files.stateStream)"
        }
    }

    /// Polls query-migrate until `completed`; `failed` is an error with
    /// QEMU's own words.
    func waitForMigration(_ qmp: QMPClient, what: String) throws(VMError) -> JSONValue {
        let deadline = clock.nowMilliseconds + 600_000
        while clock.nowMilliseconds < deadline {
            let answer = try qmp.execute("query-migrate")
            switch answer["status"]?.string {
            case "completed": return answer
            case "failed", "cancelled":
                throw VMError("\(what) failed: \(answer["error-desc"]?.string ?? answer.text)")
            default: clock.sleep(milliseconds: 20)
            }
        }
        throw VMError("\(what) did not end within 10 minutes")
    }

    func loadSavedState(_ instance: VMInstance) throws(VMError) -> SavedState {
        do {
            return try SavedState.parse(try Kernel.readText(instance.paths.stateRecord))
        } catch let error as VMError {
            throw error
        } catch {
            throw VMError("\(error)")
        }
    }

    /// What the machine has now, in a state record's terms: the stream as
    /// it is on disk (measured and hashed), the disks, the definition.
    func currentState(_ instance: VMInstance, like saved: SavedState?) throws(VMError) -> SavedState {
        let files = instance.paths
        var disks: [SavedState.PinnedDisk] = []
        for disk in instance.definition.disks {
            let overlay = disk.overlay ? files.overlay(disk.name) : nil
            disks.append(SavedState.PinnedDisk(name: disk.name, path: disk.path, size: diskSize(disk.path),
                                               overlay: overlay, overlaySize: overlay.flatMap { try? Kernel.status($0).size }))
        }
        let (bytes, sha) = try hashFile(files.stateStream)
        let version = saved == nil ? instance.snapshotVersion : saved!.qemuVersion
        return SavedState(definitionSHA256: instance.definitionSHA256, qemuVersion: version, disks: disks,
                          streamBytes: bytes, streamSHA256: sha, savedAt: saved?.savedAt ?? 0)
    }

    func diskSize(_ path: String) -> Int64 {
        if path.hasPrefix("/dev/"), let device = Kernel.readLink(path).map({ String($0.split(separator: "/").last ?? "") }) ?? path.split(separator: "/").last.map(String.init),
           let sectors = (try? Kernel.readText("/sys/class/block/\(device)/size")).flatMap({ Int64($0.trimmed) }) {
            return sectors * 512
        }
        return (try? Kernel.status(path).size) ?? -1
    }

    func hashFile(_ path: String) throws(VMError) -> (Int64, String) {
        var hash = SHA256Stream()
        var total: Int64 = 0
        do {
            let fd = try Kernel.open(path, O_RDONLY)
            defer { Kernel.close(fd) }
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = try buffer.withMutableBytes { raw throws(SystemError) in try Kernel.read(fd, into: raw, path) ?? 0 }
                if n == 0 { break }
                buffer.withUnsafeBytes { hash.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                total += Int64(n)
            }
        } catch {
            throw VMError("\(error)")
        }
        return (total, hash.hex())
    }

    /// The new QEMU (paused, `-incoming defer`) loads the stream: the
    /// version is checked first, then getfd + migrate-incoming.
    func restoreStream(_ instance: VMInstance, _ record: SavedState) throws(VMError) {
        guard let qmp = instance.qmp else { throw VMError("no QMP connection") }
        guard qmp.version == record.qemuVersion else {
            throw VMError("it was saved by QEMU \(record.qemuVersion), this is QEMU \(qmp.version)")
        }
        let fd: CInt
        do {
            fd = try Kernel.open(instance.paths.stateStream, O_RDONLY)
        } catch {
            throw VMError("\(error)")
        }
        defer { Kernel.close(fd) }
        try qmp.execute("getfd", [("fdname", .string("statefd"))], passing: fd)
        try qmp.execute("migrate-incoming", [("uri", .string("fd:statefd"))])
        _ = try waitForMigration(qmp, what: "the restore")
    }

    /// After a restore the guest's clock is where it was at the save: the
    /// agent sets it (a second or two after `cont`, once it answers).
    func fixGuestClock(_ instance: VMInstance) -> String {
        guard instance.definition.agent != .none else { return "" }
        let result: Result<Void, VMError> = instance.agentLock.withLock {
            Result { () throws(VMError) in
                let agent = try agentClient(instance)
                guard try agent.sync(milliseconds: 3000) else { throw VMError("the agent did not answer") }
                try agent.setTime(nanoseconds: WallClock.nanoseconds)
            }
        }
        switch result {
        case .success:
            instance.stateLock.withLock { instance.agentReady = true }
            return "; guest clock set"
        case .failure(let error):
            return "; guest clock not set: \(error.description)"
        }
    }

    // MARK: exec

    func exec(_ instance: VMInstance, _ argv: [String], shell: Bool, input: [UInt8]?, milliseconds: Int) throws(VMError) -> GuestExecResult {
        let snapshot = instance.snapshot
        guard snapshot.state == .running else {
            throw VMError("\(instance.name) is \(snapshot.state.rawValue): exec needs a running VM", code: 100)
        }
        guard instance.definition.agent != .none else {
            throw VMError("\(instance.name) has no guest agent (agent = \"none\")", code: 100)
        }
        var path = argv[0]
        var arguments = Array(argv.dropFirst())
        if shell { (path, arguments) = GuestCommand.shell(argv, os: instance.definition.os) }
        let result: Result<GuestExecResult, VMError> = instance.agentLock.withLock {
            Result { () throws(VMError) in
                do throws(VMError) {
                    let agent = try agentClient(instance)
                    if !agent.synchronized, try !agent.sync(milliseconds: 2000) {
                        throw VMError("the guest agent of \(instance.name) does not answer (is qemu-ga running in the guest?)")
                    }
                    return try agent.exec(path, arguments, input: input, milliseconds: milliseconds)
                } catch {
                    instance.agentStream?.close()
                    instance.agentStream = nil
                    instance.agent = nil
                    throw error
                }
            }
        }
        instance.stateLock.withLock { instance.agentReady = (try? result.get()) != nil }
        return try result.get()
    }
}

extension String {
    var prefixedWithSlash: String { hasPrefix("/") ? self : "/" + self }
}

extension VMInstance {
    var snapshotVersion: String { stateLock.withLock { qemuVersion } }
}
