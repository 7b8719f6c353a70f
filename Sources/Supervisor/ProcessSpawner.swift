import Glibc
import SpiritCore
import SystemPackage

/// Where the supervisor keeps its files. Everything hangs off `root` so
/// that a test runs a supervisor in a directory (`spirit supervise --root`).
public struct SupervisorPaths: Sendable {
    public var root: String
    public init(root: String = "") { self.root = root }
    public var services: String { root + "/etc/spirit/services" }
    public var run: String { root + "/run/spirit" }
    public var control: String { run + "/control.sock" }
    public var notify: String { run + "/notify" }
    /// One file per running service with its pid: a supervisor started
    /// after one that died stops what its predecessor left running.
    public var pids: String { run + "/services" }
    /// Written when every enabled service has settled.
    public var ready: String { run + "/services-ready" }
    public var logs: String { root + "/run/log" }
    public var passwd: String { root + "/etc/passwd" }
}

/// Starts services for real: fork+exec through Spawn with stdout and stderr
/// on a pipe to the supervisor, stdin on /dev/null, in a session of their
/// own (so that a signal reaches the whole process group), as their user,
/// in their cgroup.
public final class ProcessSpawner: ServiceSpawner {
    let paths: SupervisorPaths
    /// /sys/fs/cgroup when it is cgroup2 and services get cgroups.
    let cgroupRoot: String?
    let console: Console
    /// The read end of each running service's output pipe.
    public var startedPipes: [(name: String, fd: CInt)] = []

    public init(paths: SupervisorPaths, cgroupRoot: String?, console: Console) {
        self.paths = paths
        self.cgroupRoot = cgroupRoot
        self.console = console
    }

    public func notifySocket(_ name: String) -> String { paths.notify + "/" + name + ".sock" }

    public func start(_ service: ServiceDefinition) throws -> Int32 {
        var environment = Spawn.baseEnvironment + service.environment
        if service.readiness == .notify { environment.append("NOTIFY_SOCKET=" + notifySocket(service.name)) }
        var options = try spawnOptions(service)
        options.newSession = true
        let pipe: (read: CInt, write: CInt)
        do {
            pipe = try Kernel.outputPipe()
        } catch {
            throw SystemError("make an output pipe for \(service.name)", error.errno)
        }
        options.outputFD = pipe.write
        var procs: FileDescriptor? = nil
        if let directory = cgroupDirectory(service) {
            do {
                procs = try prepareCgroup(service, directory)
                options.cgroupProcsFD = procs?.rawValue ?? -1
            } catch {
                console.warning("service \(service.name): \(error); it runs without its cgroup limits")
            }
        }
        defer {
            Kernel.close(pipe.write)
            try? procs?.close()
        }
        do {
            let pid = try Spawn.spawn(service.command[0], service.command, environment: environment, options: options)
            startedPipes.append((service.name, pipe.read))
            try? Kernel.writeFile(paths.pids + "/" + service.name + ".pid", "\(pid)\n")
            return pid
        } catch {
            Kernel.close(pipe.read)
            throw error
        }
    }

    /// What the service and its probe run as: its user and its sandbox
    /// (a path the sandbox names that is missing is said here, by name:
    /// the child could only say ENOENT).
    func spawnOptions(_ service: ServiceDefinition) throws -> Spawn.Options {
        var options = Spawn.Options(nullStdin: true)
        if let user = service.user { options.ids = try Self.ids(of: user, passwd: paths.passwd) }
        let missing = service.sandbox.missingPaths(exists: { Kernel.exists($0) })
        guard missing.isEmpty else {
            throw SpiritError("its sandbox names \(missing.joined(separator: ", ")), which \(missing.count == 1 ? "does" : "do") not exist")
        }
        options.sandbox = service.sandbox
        return options
    }

    /// The readiness probe: the service's environment and user, its output
    /// to /dev/null (it runs every interval; its exit status is what counts).
    public func probe(_ service: ServiceDefinition) throws -> Int32 {
        var options = try spawnOptions(service)
        let null = try Kernel.open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { Kernel.close(null) }
        options.outputFD = null
        return try Spawn.spawn(service.readyCommand[0], service.readyCommand, environment: Spawn.baseEnvironment + service.environment,
                               options: options)
    }

    public func signal(_ pid: Int32, _ signal: CInt, service: ServiceDefinition) {
        // The whole process group: `sh -c` and what it started.
        if (try? Kernel.kill(-pid, signal)) == nil { try? Kernel.kill(pid, signal) }
        // And every other process in its cgroup: a child that left the
        // group (setsid, a double fork) is still in the cgroup.
        if let directory = cgroupDirectory(service), let procs = try? Kernel.readText(directory + "/cgroup.procs") {
            for line in procs.split(separator: "\n") { if let other = Int32(line), other != pid { try? Kernel.kill(other, signal) } }
        }
        if signal == SIGKILL, let directory = cgroupDirectory(service), Kernel.exists(directory + "/cgroup.kill") {
            try? Kernel.writeFile(directory + "/cgroup.kill", "1")
        }
    }

    /// The service's main process ended: what it left in its cgroup is
    /// killed (systemd's KillMode=control-group), so that a restart starts
    /// clean and a stopped service leaves nothing running.
    public func ended(_ service: ServiceDefinition) {
        guard let directory = cgroupDirectory(service), let procs = try? Kernel.readText(directory + "/cgroup.procs"),
              !procs.trimmed.isEmpty else { return }
        if Kernel.exists(directory + "/cgroup.kill") {
            try? Kernel.writeFile(directory + "/cgroup.kill", "1")
        } else {
            for line in procs.split(separator: "\n") { if let pid = Int32(line) { try? Kernel.kill(pid, SIGKILL) } }
        }
    }

    func cgroupDirectory(_ service: ServiceDefinition) -> String? {
        cgroupRoot.map { $0 + "/spirit/" + service.name }
    }

    /// Makes /sys/fs/cgroup/spirit/<name> with the service's limits and
    /// returns its cgroup.procs, open for the child to move itself in.
    func prepareCgroup(_ service: ServiceDefinition, _ directory: String) throws -> FileDescriptor {
        try Kernel.makeDirectory(directory, parents: true)
        if let memory = service.memoryMax { try Kernel.writeFile(directory + "/memory.max", memory) }
        if let weight = service.cpuWeight { try Kernel.writeFile(directory + "/cpu.weight", String(weight)) }
        if let count = service.pidsMax { try Kernel.writeFile(directory + "/pids.max", String(count)) }
        do {
            return try FileDescriptor.open(directory + "/cgroup.procs", .writeOnly, options: [.closeOnExec])
        } catch {
            throw SystemError("open \(directory)/cgroup.procs", error as? Errno ?? .ioError)
        }
    }

    /// Turns on the memory and cpu controllers for /sys/fs/cgroup/spirit/*.
    public static func enableControllers(cgroupRoot: String) throws(SystemError) {
        try Kernel.makeDirectory(cgroupRoot + "/spirit")
        // pids where the kernel has it (pids-max needs it).
        let controllers = (try? Kernel.readText(cgroupRoot + "/cgroup.controllers"))?.split(separator: " ").map { $0.trimmed } ?? []
        let wanted = "+memory +cpu" + (controllers.contains("pids") ? " +pids" : "")
        try Kernel.writeFile(cgroupRoot + "/cgroup.subtree_control", wanted)
        try Kernel.writeFile(cgroupRoot + "/spirit/cgroup.subtree_control", wanted)
    }

    /// A user's uid and gid from /etc/passwd (or a number, with gid = uid).
    /// Read here rather than with getpwnam: NSS does not work in a static binary.
    static func ids(of user: String, passwd: String) throws -> (uid: uid_t, gid: gid_t) {
        if let number = uid_t(user) { return (number, gid_t(number)) }
        let text = try Kernel.readText(passwd)
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 4, fields[0] == user, let uid = uid_t(fields[2]), let gid = gid_t(fields[3]) { return (uid, gid) }
        }
        throw SpiritError("unable to run as user '\(user)': not in \(passwd)")
    }
}
