import CPID1

/// A failed system call, said as the whole operation: `unable to mount
/// sysfs on /sys (sysfs, nosuid,nodev,noexec): No such device`.
struct SysError: Error {
    var operation: Text
    var code: Int32

    var text: Text {
        var text = Text("unable to ")
        text.append(operation)
        text.append(": ")
        text.append(Sys.cString(pid1_strerror(code)))
        return text
    }
}

/// PID 1's one door to the kernel (STYLE.md, lesson 2): every system call
/// of spirit-init goes through here or through pid1.c. Errors are thrown
/// as SysError; EINTR is retried in the C shims.
enum Sys {
    /// Runs `body` with `path` as a NUL-terminated C string.
    static func withPath<R>(_ path: Text, _ body: (UnsafePointer<CChar>) -> R) -> R {
        var bytes = path.bytes
        bytes.append(0)
        return bytes.withUnsafeBufferPointer { buffer in
            body(UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self))
        }
    }

    static func cString(_ pointer: UnsafePointer<CChar>?) -> Text {
        guard let pointer else { return Text() }
        var text = Text()
        var index = 0
        while pointer[index] != 0 {
            text.bytes.append(UInt8(bitPattern: pointer[index]))
            index += 1
        }
        return text
    }

    static func check(_ rc: Int32, _ operation: @autoclosure () -> Text) throws(SysError) {
        if rc < 0 { throw SysError(operation: operation(), code: -rc) }
    }

    static func libc(_ rc: Int32, _ operation: @autoclosure () -> Text) throws(SysError) {
        if rc < 0 { throw SysError(operation: operation(), code: pid1_errno()) }
    }

    static var pid: Int32 { getpid() }
    static func bootTimeMicros() -> Int64 { pid1_boottime_us() }
    static func sleep(milliseconds: Int) { pid1_sleep_ms(Int32(milliseconds)) }
    static func exists(_ path: Text) -> Bool { withPath(path) { pid1_exists($0) } != 0 }
    static func isOpen(_ fd: Int32) -> Bool { pid1_is_open(fd) != 0 }

    static func kernelRelease() -> Text {
        var buffer = [CChar](repeating: 0, count: 65)
        return buffer.withUnsafeMutableBufferPointer { raw in
            pid1_kernel_release(raw.baseAddress!, Int32(raw.count))
            return cString(UnsafePointer(raw.baseAddress!))
        }
    }

    /// write(2) until every byte is out; a console that fails is given up on.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBufferPointer { buffer in write(fd, buffer.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                let code = pid1_errno()
                if code == EINTR || code == EAGAIN { continue }
                return
            }
            offset += n
        }
    }

    /// open(2) as pid1_open's `how` says (pid1.h).
    static func open(_ path: Text, how: Int32) throws(SysError) -> Int32 {
        let fd = withPath(path) { pid1_open($0, how) }
        try check(fd, { var op = Text("open "); op.append(path); return op }())
        return fd
    }

    static func close(_ fd: Int32) { _ = CPID1.close(fd) }

    static func duplicate(_ fd: Int32, onto target: Int32) { _ = dup2(fd, target) }

    static func readFile(_ path: Text) throws(SysError) -> [UInt8] {
        let fd = try open(path, how: 0)
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBufferPointer { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if pid1_errno() == EINTR { continue }
                var op = Text("read ")
                op.append(path)
                throw SysError(operation: op, code: pid1_errno())
            }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<n])
        }
    }

    /// Writes `bytes` to a new `path` (truncating), or appends them.
    static func writeFile(_ path: Text, _ bytes: [UInt8], append: Bool = false) throws(SysError) {
        let fd: Int32
        if append {
            fd = try open(path, how: 2)
        } else {
            fd = try open(path, how: 4)
        }
        defer { close(fd) }
        writeAll(fd, bytes)
    }

    /// A new file beside `path`, renamed over it: readers see the old
    /// document or the new one.
    static func writeFileAtomically(_ path: Text, _ bytes: [UInt8]) throws(SysError) {
        var temporary = path
        temporary.append(".new")
        try writeFile(temporary, bytes)
        let rc = withPath(temporary) { from in withPath(path) { to in rename(from, to) } }
        try libc(rc, { var op = Text("rename "); op.append(temporary); op.append(" to "); op.append(path); return op }())
    }

    static func remove(_ path: Text) { _ = withPath(path) { unlink($0) } }

    /// mkdir(2), and with `parents` its missing parents; an existing one is fine.
    static func makeDirectory(_ path: Text, parents: Bool = false) throws(SysError) {
        if parents {
            var prefix = Text()
            for part in path.bytes.split(separator: UInt8(ascii: "/")).dropLast() {
                prefix.append("/")
                prefix.append(bytes: Array(part))
                _ = withPath(prefix) { pid1_mkdir($0, 0o755) }
            }
        }
        try check(withPath(path) { pid1_mkdir($0, 0o755) }, { var op = Text("create the directory "); op.append(path); return op }())
    }

    static func mount(_ spec: EarlyMount) throws(SysError) {
        let rc = withPath(Text(spec.source)) { source in
            withPath(Text(spec.target)) { target in
                withPath(Text(spec.fstype)) { fstype in
                    withPath(Text(spec.data)) { data in
                        CPID1.mount(source, target, fstype, spec.flags, spec.data.utf8CodeUnitCount == 0 ? nil : UnsafeRawPointer(data))
                    }
                }
            }
        }
        try libc(rc, spec.operation)
    }

    /// The last syscalls of switch_root: the root the worker assembled
    /// becomes /. Returns only on failure.
    static func enterRoot(_ newRoot: Text) throws(SysError) {
        try libc(withPath(newRoot) { chdir($0) }, { var op = Text("change directory to "); op.append(newRoot); return op }())
        var op = Text("move ")
        op.append(newRoot)
        op.append(" onto /")
        try libc(withPath(Text(".")) { dot in withPath(Text("/")) { CPID1.mount(dot, $0, nil, UInt(MS_MOVE), nil) } }, op)
        try libc(withPath(Text(".")) { chroot($0) }, Text("chroot into the new root"))
        try libc(withPath(Text("/")) { chdir($0) }, Text("change directory to / in the new root"))
    }

    /// execv(2) with PID 1's environment; returns only its failure.
    static func execute(_ path: Text, _ arguments: [Text]) -> SysError {
        let rc = withArgv(arguments) { argv in withPath(path) { pid1_exec($0, argv) } }
        var op = Text("exec ")
        op.append(path)
        op.append(" in the new root")
        return SysError(operation: op, code: -rc)
    }

    /// Starts a child (pid1.c's fork + exec); its exec failure is thrown here.
    static func spawn(_ path: Text, _ arguments: [Text], environment: [Text], newSession: Bool = false,
                      tty: Text? = nil) throws(SysError) -> Int32 {
        var pid: pid_t = 0
        let rc = withArgv(arguments) { argv in
            withArgv(environment) { envp in
                withPath(path) { cPath in
                    if let tty { return withPath(tty) { pid1_spawn(cPath, argv, envp, newSession ? 1 : 0, $0, &pid) } }
                    return pid1_spawn(cPath, argv, envp, newSession ? 1 : 0, nil, &pid)
                }
            }
        }
        var op = Text("start ")
        op.append(path)
        try check(rc, op)
        return pid
    }

    static func withArgv<R>(_ words: [Text], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        var storage: [UInt8] = []
        var offsets: [Int] = []
        for word in words {
            offsets.append(storage.count)
            storage.append(contentsOf: word.bytes)
            storage.append(0)
        }
        return storage.withUnsafeMutableBufferPointer { buffer in
            let base = UnsafeMutableRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var pointers: [UnsafeMutablePointer<CChar>?] = offsets.map { base + $0 }
            pointers.append(nil)
            return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
        }
    }

    /// One child that has ended (any, or `pid`), nil when none has; throws
    /// ECHILD when there is no child left.
    static func reap(_ pid: Int32 = -1) throws(SysError) -> (pid: Int32, exit: ChildExit)? {
        var status: Int32 = 0
        let rc = pid1_reap(pid, &status)
        try check(rc, Text("wait for children"))
        return rc == 0 ? nil : (rc, ChildExit(waitStatus: status))
    }

    static func kill(_ pid: Int32, _ signal: Int32) { _ = pid1_kill(pid, signal) }
    static func killAll(_ signal: Int32, but spared: Int32, procfs: Text) {
        _ = withPath(procfs) { pid1_kill_all_but($0, signal, spared) }
    }
    static func sync() { CPID1.sync() }
    static func reboot(_ command: UInt32, _ operation: Text) throws(SysError) { try check(pid1_reboot(command), operation) }
    static func blockAllSignals() -> Int32 { pid1_block_signals() }
    static func signalFD() throws(SysError) -> Int32 {
        let fd = pid1_signalfd()
        try check(fd, Text("open a signalfd for every signal"))
        return fd
    }
    static func nextSignal(_ fd: Int32) throws(SysError) -> (signal: Int32, sender: Int32) {
        var signal: Int32 = 0
        var sender: Int32 = 0
        try check(pid1_next_signal(fd, &signal, &sender), Text("read the signalfd"))
        return (signal, sender)
    }
    static func loopbackUp() throws(SysError) { try check(pid1_loopback_up(), Text("bring the loopback interface up")) }
}
