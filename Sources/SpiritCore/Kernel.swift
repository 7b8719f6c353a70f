import CSpirit
import Glibc
import SystemPackage

/// The one door to the kernel (STYLE.md, lesson 2): every system call with a
/// side effect goes through here, with one errno policy: EINTR is retried
/// where the call may be repeated, never for close(2); every failure becomes
/// a `SystemError` that names the whole operation.
public enum Kernel {
    /// A libc call (−1 and errno on failure), retried on EINTR unless
    /// `retryOnInterrupt` is false (close(2) must never be retried: the fd
    /// may already be gone). The corresponding swift-system function is
    /// `valueOrErrno(retryOnInterrupt:)`.
    @discardableResult
    public static func call<Result: FixedWidthInteger & SignedInteger>(
        _ operation: @autoclosure () -> String, retryOnInterrupt: Bool = true,
        hint: ((Errno) -> String?)? = nil, _ body: () -> Result) throws(SystemError) -> Result {
        while true {
            let rc = body()
            if rc >= 0 { return rc }
            let errno = Errno(rawValue: spirit_errno())
            if retryOnInterrupt, errno == .interrupted { continue }
            throw failure(operation(), errno, hint)
        }
    }

    /// A call into one of our C shims, which return −errno (CSpirit.h).
    @discardableResult
    public static func shim<Result: FixedWidthInteger & SignedInteger>(
        _ operation: @autoclosure () -> String, retryOnInterrupt: Bool = true,
        hint: ((Errno) -> String?)? = nil, _ body: () -> Result) throws(SystemError) -> Result {
        while true {
            let rc = body()
            if rc >= 0 { return rc }
            let errno = Errno(rawValue: CInt(truncatingIfNeeded: -rc))
            if retryOnInterrupt, errno == .interrupted { continue }
            throw failure(operation(), errno, hint)
        }
    }

    /// EBADF and EFAULT are our bugs, not the system's (swift-nio's rule):
    /// debug builds stop at them. Release builds report them like any other
    /// error, because a crash in PID 1 is a kernel panic.
    static func failure(_ operation: String, _ errno: Errno, _ hint: ((Errno) -> String?)?) -> SystemError {
        assert(errno != .badFileDescriptor && errno != .badAddress, "bug: unable to \(operation): \(errno)")
        return SystemError(operation, errno, hint: hint?(errno))
    }

    /// mount(2).
    /// A filesystem the kernel does not know yet (ENODEV) has its modules
    /// loaded, where a loader is installed (OnDemandModules), and the mount
    /// is tried once more.
    public static func mount(_ spec: MountSpec) throws(SystemError) {
        var loaded = false
        while true {
            if Glibc.mount(spec.source, spec.target, spec.fstype, spec.flags.rawValue, spec.data) == 0 { return }
            let errno = Errno(rawValue: spirit_errno())
            if errno == .interrupted { continue }
            if errno == .operationNotSupportedByDevice, !loaded, !spec.fstype.isEmpty,
               OnDemandModules.load(OnDemandModules.filesystem(spec.fstype), for: "a mount of \(spec.fstype)") {
                loaded = true
                continue
            }
            throw failure("mount \(spec.source) on \(spec.target) (\(spec.optionSummary))", errno, spec.hint)
        }
    }

    /// umount2(2).
    public static func unmount(_ target: String, detach: Bool = false) throws(SystemError) {
        try call("unmount \(target)") { umount2(target, detach ? CInt(MNT_DETACH) : 0) }
    }

    /// mkdir(2); an existing directory is not an error. With `parents`,
    /// makes the missing parents too, like `mkdir -p`.
    public static func makeDirectory(_ path: String, mode: mode_t = 0o755, parents: Bool = false) throws(SystemError) {
        if parents {
            // A relative path's parents are relative too.
            var prefix = path.hasPrefix("/") ? "" : "."
            for part in path.split(separator: "/").dropLast() {
                prefix += "/" + part
                try makeDirectory(prefix, mode: mode)
            }
        }
        let rc = Glibc.mkdir(path, mode)
        if rc < 0 {
            let errno = Errno(rawValue: spirit_errno())
            if errno == .fileExists { return }
            throw SystemError("create directory \(path)", errno)
        }
    }

    /// The whole content of a file (for /proc and /sys files, whose size is
    /// not known in advance).
    public static func readFile(_ path: String) throws(SystemError) -> [UInt8] {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec])
        } catch {
            throw SystemError("open \(path)", error as? Errno ?? .ioError)
        }
        defer { try? fd.close() }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n: Int
            do {
                n = try buffer.withUnsafeMutableBytes { try fd.read(into: $0) }
            } catch {
                throw SystemError("read \(path)", error as? Errno ?? .ioError)
            }
            if n == 0 { break }
            result.append(contentsOf: buffer[0..<n])
        }
        return result
    }

    public static func readText(_ path: String) throws(SystemError) -> String {
        String(decoding: try readFile(path), as: UTF8.self)
    }

    /// Writes a file whole: to a temporary beside it, then rename(2), so that
    /// a reader sees the old or the new content, never half.
    public static func writeFileAtomically(_ path: String, _ text: String, mode: mode_t = 0o644) throws(SystemError) {
        let temporary = path + ".tmp.\(getpid())"
        try writeFile(temporary, text, mode: mode)
        try call("rename \(temporary) to \(path)") { rename(temporary, path) }
    }

    /// Writes (or with `append`, appends to) a file, creating it.
    public static func writeFile(_ path: String, _ text: String, append: Bool = false, mode: mode_t = 0o644) throws(SystemError) {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, .writeOnly, options: append ? [.create, .append, .closeOnExec] : [.create, .truncate, .closeOnExec],
                                         permissions: FilePermissions(rawValue: mode))
        } catch {
            throw SystemError("open \(path) for writing", error as? Errno ?? .ioError)
        }
        defer { try? fd.close() }
        do {
            _ = try fd.writeAll(Array(text.utf8))
        } catch {
            throw SystemError("write \(path)", error as? Errno ?? .ioError)
        }
    }

    /// The names in a directory (not . and ..), or none if it cannot be read.
    public static func listDirectory(_ path: String) -> [String] {
        directoryEntries(path).map(\.name).sorted()
    }

    /// The name of a readdir(3) entry.
    public static func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// kill(2).
    public static func kill(_ pid: pid_t, _ signal: CInt) throws(SystemError) {
        try call("send \(Signal.name(signal)) to \(pid == -1 ? "every process" : "process \(pid)")") { Glibc.kill(pid, signal) }
    }

    /// swapon(2).
    public static func swapOn(_ device: String) throws(SystemError) {
        try shim("use \(device) as swap") { spirit_swapon(device) }
    }

    /// swapoff(2).
    public static func swapOff(_ device: String) throws(SystemError) {
        try shim("stop using \(device) as swap") { spirit_swapoff(device) }
    }

    /// sync(2).
    public static func sync() { Glibc.sync() }

    /// reboot(2): restart, halt or power off. Returns only on failure.
    public static func reboot(_ action: PowerAction) throws(SystemError) {
        try shim("\(action.rawValue) (reboot(2))") { spirit_reboot(action.rebootCommand) }
    }

    /// Ctrl-alt-del sends SIGINT to PID 1 instead of restarting at once.
    public static func disableCtrlAltDel() throws(SystemError) {
        try shim("turn ctrl-alt-del into SIGINT (reboot(2))") { spirit_reboot(SPIRIT_REBOOT_CMD_CAD_OFF) }
    }

    /// The running kernel's release, as `uname -r` prints it.
    public static func release() -> String {
        var name = utsname()
        _ = uname(&name)
        return withUnsafeBytes(of: &name.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    public static var pid: pid_t { getpid() }

    /// CLOCK_BOOTTIME in microseconds.
    public static func bootTimeMicros() -> Int64 { spirit_boottime_us() }

    /// Sleeps; for polls with a deadline, never as a fixed wait for a device.
    public static func sleep(milliseconds: Int) {
        var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var remaining = timespec()
        while nanosleep(&request, &remaining) < 0 && spirit_errno() == EINTR { request = remaining }
    }
}

/// What the machine does at the end of a shutdown.
public enum PowerAction: String, Sendable {
    case reboot, halt, poweroff

    var rebootCommand: UInt32 {
        switch self {
        case .reboot: SPIRIT_REBOOT_CMD_RESTART
        case .halt: SPIRIT_REBOOT_CMD_HALT
        case .poweroff: SPIRIT_REBOOT_CMD_POWER_OFF
        }
    }
}
