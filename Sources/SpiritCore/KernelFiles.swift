import CSpirit
import Glibc
import SystemPackage

/// What stat(2) says of a file, as far as Spirit asks.
public struct FileStatus: Sendable, Equatable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var mode: UInt32
    public var ownerID: UInt32 = 0
    public var groupID: UInt32 = 0
    /// st_mtime, whole seconds.
    public var modificationTime: Int64 = 0
    /// st_rdev: the device a device node stands for (0/0 is an overlayfs whiteout).
    public var representedDevice: UInt64 = 0
    /// st_ctime in nanoseconds: set to the present by every write, chmod or
    /// rename, and by no call to any other time.
    public var changeTimeNanos: Int64 = 0

    init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        mode = UInt32(info.st_mode)
        ownerID = UInt32(info.st_uid)
        groupID = UInt32(info.st_gid)
        modificationTime = Int64(info.st_mtim.tv_sec)
        representedDevice = UInt64(info.st_rdev)
        changeTimeNanos = Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec)
    }

    public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
    public var isRegularFile: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
    public var isSymbolicLink: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFLNK) }
    public var isCharacterDevice: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFCHR) }
    /// The permission bits (with setuid, setgid, sticky).
    public var permissions: UInt32 { mode & 0o7777 }
}

/// One name in a directory, with its type as readdir(3) gives it (no stat).
public struct DirectoryEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case directory, regular, symbolicLink, other }
    public var name: String
    public var kind: Kind
}

/// Files, directories and descriptors: the calls the rest of Spirit used to
/// make raw, each with the operation named in its error.
extension Kernel {
    /// stat(2), or lstat(2) when `followLinks` is false.
    public static func status(_ path: String, followLinks: Bool = true) throws(SystemError) -> FileStatus {
        var info = stat()
        try call("read the status of \(path)") { followLinks ? stat(path, &info) : lstat(path, &info) }
        return FileStatus(info)
    }

    /// fstat(2).
    public static func status(of fd: CInt, _ name: @autoclosure () -> String) throws(SystemError) -> FileStatus {
        var info = stat()
        try call("read the status of \(name())") { fstat(fd, &info) }
        return FileStatus(info)
    }

    /// unlink(2) that reports its failure; a missing file is not one.
    public static func removeFile(_ path: String) throws(SystemError) {
        let rc = unlink(path)
        if rc < 0, spirit_errno() != ENOENT { throw failure("remove \(path)", Errno(rawValue: spirit_errno()), nil) }
    }

    /// rmdir(2).
    public static func removeDirectory(_ path: String) throws(SystemError) {
        try call("remove the directory \(path)") { rmdir(path) }
    }

    /// chmod(2).
    public static func setMode(_ path: String, _ mode: mode_t) throws(SystemError) {
        try call("set the mode of \(path) to \(String(mode, radix: 8))") { chmod(path, mode) }
    }

    /// chdir(2).
    public static func changeDirectory(_ path: String) throws(SystemError) {
        try call("enter \(path)") { chdir(path) }
    }

    /// chroot(2).
    public static func changeRoot(_ path: String) throws(SystemError) {
        try shim("chroot into \(path)") { spirit_chroot(path) }
    }

    /// readlink(2), or nil if `path` is not a symbolic link.
    public static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The entries of a directory with their types (not . and ..), or none
    /// if it cannot be read.
    public static func directoryEntries(_ path: String) -> [DirectoryEntry] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var entries: [DirectoryEntry] = []
        while let entry = readdir(directory) {
            let name = entryName(entry)
            if name == "." || name == ".." { continue }
            let kind: DirectoryEntry.Kind = switch CInt(entry.pointee.d_type) {
            case CInt(DT_DIR): .directory
            case CInt(DT_REG): .regular
            case CInt(DT_LNK): .symbolicLink
            default: .other
            }
            entries.append(DirectoryEntry(name: name, kind: kind))
        }
        return entries
    }

    /// Deletes everything under `path` that is on filesystem `device`,
    /// without crossing into other mounts and without touching `keep`
    /// (switch_root's freeing of the initramfs). Returns the bytes freed;
    /// what cannot be removed stays.
    public static func removeTree(_ path: String, device: UInt64, keep: String) -> Int64 {
        var freed: Int64 = 0
        for entry in directoryEntries(path) {
            let child = path == "/" ? "/" + entry.name : path + "/" + entry.name
            if child == keep { continue }
            guard let info = try? status(child, followLinks: false), info.device == device else { continue }
            if info.isDirectory {
                freed += removeTree(child, device: device, keep: keep)
                _ = rmdir(child)
            } else {
                freed += info.size
                _ = unlink(child)
            }
        }
        return freed
    }

    /// open(2) of a file, close-on-exec; the raw descriptor, for the kernel
    /// interfaces that take one (ioctl, finit_module, sendfile).
    public static func open(_ path: String, _ flags: CInt, mode: mode_t = 0o644,
                            hint: ((Errno) -> String?)? = nil) throws(SystemError) -> CInt {
        let write = flags & O_ACCMODE != O_RDONLY
        return try call("open \(path)\(write ? " for writing" : "")", hint: hint) { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// An anonymous file in RAM holding `bytes` (memfd_create(2),
    /// close-on-exec): data made at run time, served as a file is (a Nodus
    /// peer's block list, over NBD with sendfile).
    public static func memoryFile(_ name: String, _ bytes: [UInt8]) throws(SystemError) -> CInt {
        let fd = try call("memfd_create \(name)") { spirit_memfd_create(name) }
        let written = bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try write(fd, raw, name) } }
        if case .failure(let error) = written {
            close(fd)
            throw error
        }
        return fd
    }

    /// close(2), never retried: after EINTR the descriptor is gone already.
    public static func close(_ fd: CInt) {
        _ = Glibc.close(fd)
    }

    /// flock(2) LOCK_EX, waiting at most `milliseconds` for it: a holder
    /// that hangs (a stopped process) must not hang the waiter, who may be
    /// PID 1 at shutdown. Closing the descriptor releases the lock.
    public static func lock(_ fd: CInt, _ name: @autoclosure () -> String, milliseconds: Int) throws(SystemError) {
        let deadline = bootTimeMicros() + Int64(milliseconds) * 1000
        while true {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return }
            let errno = Errno(rawValue: spirit_errno())
            guard errno == .resourceTemporarilyUnavailable || errno == .interrupted else { throw failure("lock \(name()) (flock)", errno, nil) }
            guard bootTimeMicros() < deadline else {
                throw SystemError("lock \(name()) (flock)", errno, hint: "another process held it for \(milliseconds) ms")
            }
            sleep(milliseconds: 2)
        }
    }

    /// Whether `fd` is an open descriptor of this process.
    public static func isOpen(_ fd: CInt) -> Bool { fcntl(fd, F_GETFD) >= 0 }

    /// dup2(2).
    public static func duplicate(_ fd: CInt, onto target: CInt) throws(SystemError) {
        try call("duplicate descriptor \(fd) onto \(target)") { dup2(fd, target) }
    }

    /// O_NONBLOCK on or off.
    public static func setNonBlocking(_ fd: CInt, _ on: Bool = true) throws(SystemError) {
        let flags = try call("read the flags of descriptor \(fd)") { fcntl(fd, F_GETFL) }
        try call("make descriptor \(fd) \(on ? "non-blocking" : "blocking")") {
            fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK)
        }
    }

    /// read(2) of what is there, up to `buffer.count`; 0 at the end, nil
    /// when a non-blocking descriptor has nothing yet (EAGAIN).
    public static func read(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer,
                            _ name: @autoclosure () -> String) throws(SystemError) -> Int? {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            let errno = Errno(rawValue: spirit_errno())
            if errno == .interrupted { continue }
            if errno == .resourceTemporarilyUnavailable { return nil }
            throw failure("read from \(name())", errno, nil)
        }
    }

    /// The first `count` bytes of a file (fewer when it is shorter): a
    /// file's magic (GGUF), a WAV head.
    public static func readHead(_ path: String, count: Int) throws(SystemError) -> [UInt8] {
        let fd = try open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, count - done) }
            if n < 0, spirit_errno() == EINTR { continue }
            if n < 0 { throw failure("read \(path)", Errno(rawValue: spirit_errno()), nil) }
            if n == 0 { break }
            done += n
        }
        return Array(bytes.prefix(done))
    }

    /// lseek(2) to the end: for /dev/kmsg, the next read is the next new
    /// record (the ring's old records are skipped).
    public static func seekToEnd(_ fd: CInt, _ name: @autoclosure () -> String) throws(SystemError) {
        _ = try call("seek to the end of \(name())") { lseek(fd, 0, SEEK_END) }
    }

    /// pread(2) until `buffer` is full; a file that ends first is an error.
    public static func read(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64,
                            _ name: @autoclosure () -> String) throws(SystemError) {
        var done = 0
        while done < buffer.count {
            let n = try call("read \(name()) at \(offset)") {
                pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if n == 0 { throw SystemError("read \(name()) at \(offset)", .ioError, hint: "the file is shorter than when it was opened") }
            done += n
        }
    }

    /// pwrite(2) of every byte at `offset` (threads writing different
    /// parts of one file share no file position).
    public static func write(_ fd: CInt, _ bytes: UnsafeRawBufferPointer, at offset: Int64,
                             _ name: @autoclosure () -> String) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            done += try call("write \(name()) at \(offset)") {
                pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            }
        }
    }

    /// ftruncate(2): a file of `size` bytes, sparse where never written.
    public static func truncate(_ fd: CInt, size: Int64, _ name: @autoclosure () -> String) throws(SystemError) {
        _ = try call("set the size of \(name()) to \(size) bytes") { ftruncate(fd, off_t(size)) }
    }

    /// socketpair(2) of two connected Unix stream sockets, close-on-exec.
    public static func socketPair() throws(SystemError) -> (CInt, CInt) {
        var fds: [CInt] = [-1, -1]
        _ = try call("make a socket pair") { socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0, &fds) }
        return (fds[0], fds[1])
    }

    /// write(2) of every byte, or send(2) with MSG_NOSIGNAL when `socket`
    /// (a closed peer is then EPIPE, not a SIGPIPE that kills the process).
    public static func write(_ fd: CInt, _ bytes: UnsafeRawBufferPointer, socket: Bool = false,
                             _ name: @autoclosure () -> String) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            let n = try call("write to \(name())") {
                socket ? Glibc.send(fd, bytes.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL))
                       : Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            }
            done += n
        }
    }

    public static func write(_ fd: CInt, _ text: String, socket: Bool = false, _ name: @autoclosure () -> String) throws(SystemError) {
        try Array(text.utf8).withUnsafeBytes { raw in
            Result { () throws(SystemError) in try write(fd, raw, socket: socket, name()) }
        }.get()
    }

    /// poll(2) over `descriptors` for up to `milliseconds` (nil: as long as
    /// it takes); the number ready, 0 on timeout. Their `revents` say which.
    @discardableResult
    public static func poll(_ descriptors: inout [pollfd], milliseconds: Int?) throws(SystemError) -> Int {
        let timeout = CInt(clamping: milliseconds.map { max(0, $0) } ?? -1)
        return Int(try call("wait for events (poll)") { Glibc.poll(&descriptors, nfds_t(descriptors.count), timeout) })
    }

    /// A pipe for a child's output: both ends close-on-exec, the read end
    /// non-blocking.
    public static func outputPipe() throws(SystemError) -> (read: CInt, write: CInt) {
        var fds: [CInt] = [-1, -1]
        try shim("make a pipe") { spirit_output_pipe(&fds) }
        return (fds[0], fds[1])
    }

    /// write(2) of what fits now: the bytes written, nil when a
    /// non-blocking descriptor takes none (EAGAIN). The rest is the
    /// caller's to write when poll(2) says POLLOUT.
    public static func writeSome(_ fd: CInt, _ bytes: UnsafeRawBufferPointer,
                                 _ name: @autoclosure () -> String) throws(SystemError) -> Int? {
        guard bytes.count > 0 else { return 0 }
        while true {
            let n = Glibc.write(fd, bytes.baseAddress, bytes.count)
            if n >= 0 { return n }
            let errno = Errno(rawValue: spirit_errno())
            if errno == .interrupted { continue }
            if errno == .resourceTemporarilyUnavailable { return nil }
            throw failure("write to \(name())", errno, nil)
        }
    }

    /// mmap(2) of `length` bytes of `fd` at `offset`, shared and writable
    /// (a dumb buffer, a framebuffer).
    public static func mapShared(_ fd: CInt, length: Int, offset: Int64 = 0,
                                 _ name: @autoclosure () -> String) throws(SystemError) -> UnsafeMutableRawPointer {
        let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(offset))
        guard let address, address != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw failure("map \(length) bytes of \(name()) at \(offset)", Errno(rawValue: spirit_errno()), nil)
        }
        return address
    }

    /// munmap(2); a mapping that cannot be undone stays (it goes with the
    /// process).
    public static func unmap(_ address: UnsafeMutableRawPointer, length: Int) {
        _ = munmap(address, length)
    }

    /// ioctl(2) with an integer argument, retried on EINTR.
    @discardableResult
    public static func control(_ fd: CInt, _ request: UInt, _ value: UInt, _ operation: @autoclosure () -> String,
                               hint: ((Errno) -> String?)? = nil) throws(SystemError) -> CInt {
        try shim(operation(), hint: hint) { spirit_ioctl_value(fd, request, value) }
    }
}

extension Array where Element == UInt8 {
    /// `withUnsafeMutableBytes` for a body that throws SystemError, keeping
    /// the error's type (the standard one rethrows `any Error`).
    public mutating func withMutableBytes<Result>(
        _ body: (UnsafeMutableRawBufferPointer) throws(SystemError) -> Result) throws(SystemError) -> Result {
        try withUnsafeMutableBytes { raw in Swift.Result { () throws(SystemError) in try body(raw) } }.get()
    }

    /// `withUnsafeBytes` for a body that throws SystemError.
    public func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws(SystemError) -> Result) throws(SystemError) -> Result {
        try withUnsafeBytes { raw in Swift.Result { () throws(SystemError) in try body(raw) } }.get()
    }
}

extension Kernel {
    /// getcwd(3): where relative paths given on a command line start.
    public static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buffer, buffer.count) != nil else { return "/" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
