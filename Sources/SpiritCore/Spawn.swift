import CSpirit
import Glibc
import SystemPackage

/// How a child ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let signal): "was killed by \(Signal.describe(signal))"
        }
    }
}

/// Starting and waiting for children. Every child starts with an empty signal
/// mask and default handlers (PID 1 blocks everything; a child must not
/// inherit that), through fork+exec in C (see spawn.c).
public enum Spawn {
    public struct Options: Sendable {
        public var newSession = false
        /// A terminal to make the controlling one, on fds 0, 1 and 2.
        public var tty: String? = nil
        /// An fd for the child's stdout and stderr (a service's log pipe).
        public var outputFD: CInt = -1
        /// /dev/null on stdin (services do not read the console).
        public var nullStdin = false
        /// Run as this uid and gid.
        public var ids: (uid: uid_t, gid: gid_t)? = nil
        /// An open cgroup.procs the child moves itself into before exec.
        public var cgroupProcsFD: CInt = -1
        public var sandbox = Sandbox()
        public init(newSession: Bool = false, tty: String? = nil, outputFD: CInt = -1, nullStdin: Bool = false,
                    ids: (uid: uid_t, gid: gid_t)? = nil, cgroupProcsFD: CInt = -1) {
            self.newSession = newSession
            self.tty = tty
            self.outputFD = outputFD
            self.nullStdin = nullStdin
            self.ids = ids
            self.cgroupProcsFD = cgroupProcsFD
        }
    }

    /// The environment for shells and tools started by Spirit.
    public static let baseEnvironment = [
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root",
        "TERM=linux",
    ]

    public static func spawn(_ path: String, _ arguments: [String], environment: [String] = Spawn.baseEnvironment,
                             options: Options = Options()) throws(SystemError) -> pid_t {
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let sandbox = options.sandbox
        let writable = sandbox.writablePaths.map { strdup($0) } + [nil]
        let readOnly = sandbox.readOnlyPaths.map { strdup($0) } + [nil]
        defer {
            writable.forEach { free($0) }
            readOnly.forEach { free($0) }
        }
        let rc: CInt = options.tty.withOptionalCString { tty in
            writable.withUnsafeBufferPointer { writablePaths in
                readOnly.withUnsafeBufferPointer { readOnlyPaths in
                    var cOptions = spirit_spawn_options(
                        new_session: options.newSession ? 1 : 0, tty: tty, output_fd: options.outputFD,
                        null_stdin: options.nullStdin ? 1 : 0, set_ids: options.ids == nil ? 0 : 1,
                        uid: options.ids?.uid ?? 0, gid: options.ids?.gid ?? 0, cgroup_procs_fd: options.cgroupProcsFD,
                        new_mount_ns: sandbox.needsMountNamespace ? 1 : 0, private_tmp: sandbox.privateTmp ? 1 : 0,
                        read_only_root: sandbox.readOnlyRoot ? 1 : 0, writable_paths: writablePaths.baseAddress,
                        read_only_paths: readOnlyPaths.baseAddress, drop_capabilities: sandbox.capabilities == nil ? 0 : 1,
                        keep_capabilities: sandbox.capabilityMask, no_new_privileges: sandbox.noNewPrivileges ? 1 : 0)
                    return spirit_spawn(path, argv, envp, &cOptions, &pid)
                }
            }
        }
        if rc != 0 { throw SystemError("start \(path)", Errno(rawValue: rc)) }
        return pid
    }

    /// Runs a tool to its end and requires exit status 0; otherwise the
    /// error says the command and how it ended (`mkfs.vfat -n CROM_SPIRIT
    /// /dev/sdb failed: exited with status 1`).
    public static func run(_ path: String, _ arguments: [String], environment: [String] = Spawn.baseEnvironment) throws {
        let pid = try spawn(path, arguments, environment: environment)
        let status = try wait(pid)?.status
        guard status == .exited(0) else {
            throw SpiritError("\(arguments.joined(separator: " ")) failed: \(status.map(\.description) ?? "its status is unknown")")
        }
    }

    /// Waits for `pid` (or any child, for -1). nil with `noHang` when none
    /// has ended; throws ECHILD when there is no child to wait for.
    public static func wait(_ pid: pid_t = -1, noHang: Bool = false) throws(SystemError) -> (pid: pid_t, status: ExitStatus)? {
        var exited: CInt = 0
        var code: CInt = 0
        let rc = spirit_wait(pid, noHang ? 1 : 0, &exited, &code)
        if rc < 0 { throw SystemError("wait for \(pid == -1 ? "children" : "process \(pid)")", Errno(rawValue: -rc)) }
        if rc == 0 { return nil }
        return (rc, exited == 1 ? .exited(code) : .signaled(code))
    }

    /// The terminal behind /dev/console: the last one the kernel lists in
    /// /sys/class/tty/console/active (`tty0 ttyS0` → /dev/ttyS0). A shell
    /// needs the real terminal: /dev/console cannot be a controlling tty.
    public static func consoleTerminal(sys: String = "/sys") -> String {
        let active = (try? Kernel.readText(sys + "/class/tty/console/active")) ?? ""
        guard let last = active.split(whereSeparator: { $0 == " " || $0 == "\n" }).last else { return "/dev/console" }
        return "/dev/" + last
    }
}

extension Optional where Wrapped == String {
    func withOptionalCString<R>(_ body: (UnsafePointer<CChar>?) -> R) -> R {
        switch self {
        case .some(let text): text.withCString { body($0) }
        case .none: body(nil)
        }
    }
}

extension Spawn {
    /// What a program printed (stdout and stderr), how it ended, and whether
    /// it ran past its deadline (then it was killed).
    public struct Captured: Sendable {
        public var output: [UInt8]
        public var status: ExitStatus?
        public var timedOut: Bool
        public var text: String { String(decoding: output, as: UTF8.self) }
    }

    /// Runs a program with stdin on /dev/null and its output in a pipe, for
    /// at most `milliseconds` and `limit` bytes of output: a widget's script,
    /// a speech recogniser. Past the deadline it is killed.
    public static func capture(_ path: String, _ arguments: [String], milliseconds: Int, limit: Int = 1 << 20,
                               environment: [String] = Spawn.baseEnvironment) throws(SystemError) -> Captured {
        let output = try Kernel.outputPipe()
        let pid: pid_t
        do {
            pid = try spawn(path, arguments, environment: environment, options: .init(outputFD: output.write, nullStdin: true))
        } catch {
            Kernel.close(output.write)
            Kernel.close(output.read)
            throw error
        }
        Kernel.close(output.write)
        defer { Kernel.close(output.read) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = Kernel.bootTimeMicros() + Int64(milliseconds) * 1000
        var ended = false
        while !ended, bytes.count < limit {
            let left = Int((deadline - Kernel.bootTimeMicros()) / 1000)
            var ready = [pollfd(fd: output.read, events: Int16(POLLIN), revents: 0)]
            guard left > 0, (try? Kernel.poll(&ready, milliseconds: left)) ?? 0 > 0 else { break }
            let count: Int?
            do {
                count = try buffer.withMutableBytes { raw throws(SystemError) in try Kernel.read(output.read, into: raw, path) }
            } catch {
                count = 0 // a broken pipe ends the output as its end does
            }
            guard let count else { continue } // nothing yet
            if count == 0 { ended = true } else { bytes += buffer[0..<count] }
        }
        if !ended { try? Kernel.kill(pid, SIGKILL) }
        let status = (try? wait(pid))??.status
        return Captured(output: bytes, status: status, timedOut: !ended)
    }
}
