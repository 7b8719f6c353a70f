import CSpirit
import Dispatch
import Glibc
import SystemPackage

/// Every signal of a process, read as data: blocked before any thread
/// exists (so no signal is ever delivered the default way, which for PID 1
/// the kernel drops), then taken one at a time from a signalfd. PID 1, the
/// supervisor and every daemon that waits for children read signals this way.
public struct SignalQueue: Sendable {
    public let fd: CInt

    /// Blocks every signal in the calling thread and the threads it starts.
    public static func blockAll() throws(SystemError) {
        try Kernel.shim("block every signal (sigprocmask)") { spirit_block_all_signals() }
    }

    /// A signalfd for every signal, close-on-exec.
    public init() throws(SystemError) {
        fd = try Kernel.shim("read signals (signalfd)") { spirit_signalfd_all() }
    }

    /// The next signal and the process that sent it (0: the kernel); waits
    /// for one.
    public func next() throws(SystemError) -> (signal: CInt, sender: pid_t) {
        var sender: pid_t = 0
        let signal = try Kernel.shim("read a signal") { spirit_signalfd_read(fd, &sender) }
        return (signal, sender)
    }

    /// SIG_IGN for `signal` (SIGPIPE in a server whose sendfile(2) has no
    /// MSG_NOSIGNAL).
    public static func ignore(_ signal: CInt) {
        _ = Glibc.signal(signal, SIG_IGN)
    }
}

/// Collecting children that ended: one loop for PID 1 and the supervisor.
public enum Reaper {
    /// Children's orphans come to this process, not to PID 1
    /// (PR_SET_CHILD_SUBREAPER).
    public static func becomeSubreaper() throws(SystemError) {
        try Kernel.shim("become a child subreaper") { spirit_set_child_subreaper() }
    }

    /// Every child that has ended, without waiting, each given to `ended`.
    public static func reap(_ ended: (pid_t, ExitStatus) -> Void) {
        while let (pid, status) = (try? Spawn.wait(-1, noHang: true)) ?? nil {
            ended(pid, status)
        }
    }

    /// Reaps until no child is left (ECHILD), `ended` told of each, or
    /// until `milliseconds` have passed; true when none is left.
    public static func reapUntilNone(milliseconds: Int, _ ended: (pid_t, ExitStatus) -> Void = { _, _ in }) -> Bool {
        let deadline = Kernel.bootTimeMicros() + Int64(milliseconds) * 1000
        while true {
            do {
                while let (pid, status) = try Spawn.wait(-1, noHang: true) { ended(pid, status) }
            } catch {
                return true // ECHILD: nothing left
            }
            if Kernel.bootTimeMicros() >= deadline { return false }
            Kernel.sleep(milliseconds: 20)
        }
    }
}

/// Detached threads for blocking work (one per NBD client, the boot's
/// sources). pthreads, not Dispatch: a blocked client must not hold one of
/// Dispatch's few workers.
public enum Threads {
    final class Body: @unchecked Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    public static func start(stackBytes: Int = 512 << 10, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, CInt(PTHREAD_CREATE_DETACHED))
        pthread_attr_setstacksize(&attributes, stackBytes)
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { raw in
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<Body>.fromOpaque(box).release()
            throw SystemError("start a thread", .init(rawValue: rc))
        }
    }

    /// `body` on a thread of its own, for work that blocks (a boot source,
    /// a DHCP client, the uevent loop): Dispatch's global pool on Linux has
    /// about one worker per CPU and adds one only when its monitor finds
    /// them all blocked, once a second, so blocking work queued there
    /// waited seconds for a worker on a 2-CPU machine. If no thread can be
    /// made, the pool after all. 4 MiB of stack (reserved, touched only as
    /// used): a source verifies signatures and speaks TLS on it.
    public static func detach(_ body: @escaping @Sendable () -> Void) {
        do {
            try start(stackBytes: 4 << 20, body)
        } catch {
            DispatchQueue.global().async(execute: body)
        }
    }
}

/// What only this process knows of itself, and what the early constructor
/// kept for it (early.c).
extension Kernel {
    public static var parentPID: pid_t { getppid() }

    /// argv as the process received it (the constructor keeps it before
    /// the Swift runtime can rewrite it), or nil.
    public static func processArguments() -> [String]? {
        var count: CInt = 0
        guard let argv = spirit_arguments(&count), count > 0 else { return nil }
        return (0..<Int(count)).map { argv[$0].map { String(cString: $0) } ?? "" }
    }

    /// CLOCK_BOOTTIME in microseconds when the early constructor ran.
    public static var processStartMicros: Int64 { spirit_process_start_us() }

    /// execve(2): replaces this process. Returns only on failure, with it.
    public static func execute(_ path: String, _ arguments: [String], environment: [String]) -> SystemError {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        _ = execve(path, argv, envp)
        let errno = Errno(rawValue: spirit_errno())
        argv.forEach { free($0) }
        envp.forEach { free($0) }
        return SystemError("exec \(path)", errno)
    }

    /// The loopback interface up (the kernel gives it 127.0.0.1 then).
    public static func bringLoopbackUp() throws(SystemError) {
        try shim("bring the loopback interface up") { spirit_loopback_up() }
    }

    /// finit_module(2) of an open module file; `compressed` hands the
    /// decompression to the kernel (MODULE_INIT_COMPRESSED_FILE).
    public static func loadModule(_ fd: CInt, parameters: String, compressed: Bool,
                                  _ operation: @autoclosure () -> String) throws(SystemError) {
        try shim(operation()) { spirit_finit_module(fd, parameters, compressed ? 4 : 0) }
    }

    /// Attaches `file` read-only to a free loop device (LOOP_CONFIGURE,
    /// autoclear): the open loop descriptor and the device's path. Keep the
    /// descriptor open until the device is mounted.
    public static func attachLoop(_ file: String) throws(SystemError) -> (fd: CInt, device: String) {
        var name = [CChar](repeating: 0, count: 64)
        let fd = try shim("attach \(file) to a loop device", hint: { $0 == .noSuchFileOrDirectory ? "is the loop module loaded?" : nil }) {
            spirit_loop_attach(file, &name, name.count)
        }
        return (fd, name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
    }
}

/// The kernel's uevents (NETLINK_KOBJECT_UEVENT).
extension Kernel {
    /// A socket subscribed to the kernel's uevents, close-on-exec.
    public static func ueventSocket() throws(SystemError) -> CInt {
        try shim("listen to kernel uevents (netlink)") { spirit_uevent_socket() }
    }

    /// One uevent's bytes (`action@devpath` then NUL-separated fields), or
    /// nil when none came within `milliseconds` or the socket failed.
    public static func readUevent(_ fd: CInt, milliseconds: Int) -> [UInt8]? {
        var buffer = [CChar](repeating: 0, count: 8192)
        let n = spirit_uevent_read(fd, &buffer, CInt(buffer.count), CInt(clamping: milliseconds))
        guard n > 0 else { return nil }
        return buffer[0..<Int(n)].map { UInt8(bitPattern: $0) }
    }
}
