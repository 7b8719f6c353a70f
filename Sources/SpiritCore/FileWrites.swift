import CSpirit
import Glibc
import SystemPackage

/// Writes that must reach the disk in a known order (persistence's
/// archive: write, fsync, rename, fsync the directory), and the file
/// metadata a restored file gets back (owner, times, links).
extension Kernel {
    /// Creates (or truncates) `path` and writes `bytes` to it; with `sync`,
    /// fsync(2) before close, so that the bytes are on the disk when this
    /// returns. `progress` hears the bytes written so far, every MiB.
    public static func writeFile(_ path: String, bytes: [UInt8], mode: mode_t = 0o644, sync: Bool = false,
                                 progress: (Int) -> Void = { _ in }) throws(SystemError) {
        let fd = try open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        defer { close(fd) }
        let chunk = 1 << 20
        var done = 0
        try bytes.withBytes { raw throws(SystemError) in
            while done < raw.count {
                let end = min(done + chunk, raw.count)
                try write(fd, UnsafeRawBufferPointer(rebasing: raw[done..<end]), path)
                done = end
                progress(done)
            }
        }
        if sync { try syncDescriptor(fd, path) }
    }

    /// fsync(2).
    public static func syncDescriptor(_ fd: CInt, _ name: @autoclosure () -> String) throws(SystemError) {
        try call("flush \(name()) to the disk (fsync)") { fsync(fd) }
    }

    /// fsync(2) of a file or a directory by path: a directory's fsync makes
    /// a rename in it durable.
    public static func syncPath(_ path: String) throws(SystemError) {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        try syncDescriptor(fd, path)
    }

    /// symlink(2): a link at `path` that points to `target`.
    public static func makeSymbolicLink(_ path: String, to target: String) throws(SystemError) {
        try call("make the link \(path) -> \(target)") { symlink(target, path) }
    }

    /// lchown(2): the owner of `path` itself, a link not followed.
    public static func setOwner(_ path: String, uid: UInt32, gid: UInt32) throws(SystemError) {
        try call("set the owner of \(path) to \(uid):\(gid)") { lchown(path, uid_t(uid), gid_t(gid)) }
    }

    /// utimensat(2) with AT_SYMLINK_NOFOLLOW: the access and modification
    /// times of `path` itself, whole seconds.
    public static func setModificationTime(_ path: String, seconds: Int64) throws(SystemError) {
        var times = [timespec(tv_sec: Int(seconds), tv_nsec: 0), timespec(tv_sec: Int(seconds), tv_nsec: 0)]
        try call("set the time of \(path)") { utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) }
    }

    /// lgetxattr(2): an extended attribute of `path` itself (overlayfs marks
    /// an opaque directory with `trusted.overlay.opaque`), or nil when it
    /// has none or the filesystem keeps none.
    public static func extendedAttribute(_ path: String, _ name: String) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { spirit_lgetxattr(path, name, $0.baseAddress, UInt($0.count)) }
        guard n >= 0 else { return nil }
        return Array(buffer[0..<n])
    }

    /// Removes `path` whatever it is: a file, a link, or a directory with
    /// everything in it. A missing path is not an error. Only directories'
    /// devices are compared, to stay out of other mounts: on an overlay a
    /// file reports the device of the layer it comes from, not the overlay's.
    public static func removeAll(_ path: String) throws(SystemError) {
        guard let info = try? status(path, followLinks: false) else { return }
        guard info.isDirectory else { return try removeFile(path) }
        for entry in directoryEntries(path) {
            let child = path + "/" + entry.name
            if let inner = try? status(child, followLinks: false), inner.isDirectory, inner.device != info.device {
                continue  // a mount point: its rmdir below says so
            }
            try removeAll(child)
        }
        try removeDirectory(path)
    }
}
