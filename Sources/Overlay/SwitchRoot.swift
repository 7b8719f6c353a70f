import SpiritCore

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
        guard try Kernel.status("/").device != Kernel.status(newRoot).device else {
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
        if let root = try? Kernel.status("/") {
            let freed = Kernel.removeTree("/", device: root.device, keep: newRoot)
            console.debug("switch_root: freed \(freed >> 10) KiB of initramfs files")
        }
        try Kernel.changeDirectory(newRoot)
        try Kernel.mount(MountSpec(source: ".", target: "/", fstype: "", flags: [.move]))
        try Kernel.changeRoot(".")
        try? Kernel.changeDirectory("/")
    }
}
