import CSpirit
import Glibc
import SpiritCore
import SystemPackage

/// switch_root, for PID 1 only. pivot_root(2) does not work from an
/// initramfs, so (like busybox's switch_root and systemd) it moves the API
/// filesystems into the new root, deletes the initramfs's files to free
/// their RAM, moves the new root onto /, chroots into it and execs its init.
public enum SwitchRoot {
    /// The mounts carried into the new root.
    public static let carried = ["/dev", "/proc", "/sys", "/run"]

    /// Checks what can be checked before anything is changed: a failure here
    /// leaves stage 1 intact for the rescue shell.
    public static func check(newRoot: String, initPath: String) throws {
        guard Kernel.exists(newRoot + initPath) else {
            throw SpiritError("the new root has no \(initPath): is \(newRoot) a Spirit system image?")
        }
        var root = stat()
        var target = stat()
        guard stat("/", &root) == 0, stat(newRoot, &target) == 0 else {
            throw SystemError("stat / and \(newRoot)", Errno(rawValue: spirit_errno()))
        }
        guard root.st_dev != target.st_dev else {
            throw SpiritError("nothing is mounted on \(newRoot)")
        }
    }

    /// Moves the carried mounts and the new root, frees the initramfs and
    /// chroots. After this, the process runs in the new root.
    public static func enter(newRoot: String, console: Console) throws {
        for path in carried {
            try Kernel.makeDirectory(newRoot + path)
            try Kernel.mount(MountSpec(source: path, target: newRoot + path, fstype: "", flags: [.move]))
        }
        var root = stat()
        if stat("/", &root) == 0 {
            let freed = removeTree("/", device: root.st_dev, keep: newRoot)
            console.debug("switch_root: freed \(freed >> 10) KiB of initramfs files")
        }
        guard chdir(newRoot) == 0 else { throw SystemError("enter \(newRoot)", Errno(rawValue: spirit_errno())) }
        try Kernel.mount(MountSpec(source: ".", target: "/", fstype: "", flags: [.move]))
        let rc = spirit_chroot(".")
        guard rc == 0 else { throw SystemError("chroot into \(newRoot)", Errno(rawValue: -rc)) }
        _ = chdir("/")
    }

    /// Deletes everything under `path` on filesystem `device`, without
    /// crossing into other mounts and without touching `keep`. Returns the
    /// bytes freed.
    static func removeTree(_ path: String, device: dev_t, keep: String) -> Int64 {
        guard let directory = opendir(path) else { return 0 }
        defer { closedir(directory) }
        var freed: Int64 = 0
        while let entry = readdir(directory) {
            let name = Kernel.entryName(entry)
            if name == "." || name == ".." { continue }
            let child = path == "/" ? "/" + name : path + "/" + name
            if child == keep { continue }
            var info = stat()
            guard lstat(child, &info) == 0, info.st_dev == device else { continue }
            if (info.st_mode & S_IFMT) == S_IFDIR {
                freed += removeTree(child, device: device, keep: keep)
                rmdir(child)
            } else {
                freed += Int64(info.st_size)
                unlink(child)
            }
        }
        return freed
    }
}
