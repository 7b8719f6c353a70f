import CSpirit
import Glibc
import SystemPackage

/// What statfs(2) and statvfs(3) say about the filesystem holding a path.
public struct FileSystemStats: Sendable, Equatable {
    /// statfs's f_type, the filesystem's magic number.
    public var type: Int
    /// Bytes an unprivileged writer may still use (f_bavail × f_frsize).
    public var availableBytes: Int64
    public var readOnly: Bool
    /// Its size (f_blocks × f_frsize) and what is free of it (f_bfree × f_frsize).
    public var totalBytes: Int64 = 0
    public var freeBytes: Int64 = 0

    public static let ntfs3Magic = 0x7366_746E  // "ntfs", fs/ntfs3/super.c
    public static let ntfsMagic = 0x5346_544E  // the old read-only driver's NTFS_SB_MAGIC
    public static let fuseMagic = 0x6573_5546  // FUSE_SUPER_MAGIC: ntfs-3g mounts as fuseblk
}

extension Kernel {
    /// statfs(2) and statvfs(3) of `path`.
    public static func fileSystemStats(_ path: String) throws(SystemError) -> FileSystemStats {
        var type = 0
        try shim("read the filesystem type of \(path) (statfs)") { spirit_statfs_type(path, &type) }
        var vfs = statvfs()
        try call("read the free space of \(path) (statvfs)") { statvfs(path, &vfs) }
        return FileSystemStats(type: type, availableBytes: Int64(vfs.f_bavail) * Int64(vfs.f_frsize),
                               readOnly: vfs.f_flag & UInt(ST_RDONLY) != 0,
                               totalBytes: Int64(vfs.f_blocks) * Int64(vfs.f_frsize), freeBytes: Int64(vfs.f_bfree) * Int64(vfs.f_frsize))
    }

    /// The canonical absolute path (realpath(3)): symbolic links and `..` resolved.
    public static func canonicalPath(_ path: String) throws(SystemError) -> String {
        guard let resolved = realpath(path, nil) else {
            throw SystemError("resolve \(path)", Errno(rawValue: spirit_errno()))
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The size of a file in bytes, or nil if there is none.
    public static func fileSize(_ path: String) -> Int64? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int64(info.st_size)
    }

    /// rename(2).
    public static func renameFile(_ from: String, to: String) throws(SystemError) {
        try call("rename \(from) to \(to)") { Glibc.rename(from, to) }
    }

    /// unlink(2); a missing file is not an error.
    public static func remove(_ path: String) {
        _ = unlink(path)
    }
}
