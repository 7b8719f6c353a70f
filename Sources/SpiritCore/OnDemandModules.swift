/// Kernel modules a process loads the first time it needs them. The kernel
/// asks /sbin/modprobe for a filesystem at its first mount (busybox's in the
/// initramfs, kmod's in the image); this is for what it cannot ask for: nbd,
/// whose devices appear only once it is loaded, ntfs3, looked for before a
/// mount, and a mount that still finds no driver (ENODEV: no modprobe, or
/// one that failed). Stage 1, `spirit-mount` and `spirit nodus attach`
/// install a loader (ModuleLoader's `OnDemandLoading.install`); without
/// one, nothing is loaded and the kernel's error stands.
public enum OnDemandModules {
    private static let lock = Monitor()
    nonisolated(unsafe) private static var loader: (@Sendable (_ names: [String], _ why: String) -> Void)?

    public static func install(_ load: @escaping @Sendable (_ names: [String], _ why: String) -> Void) {
        lock.withLock { loader = load }
    }

    /// Loads `names` (module names or aliases) with the installed loader,
    /// which says what fails; false when none is installed.
    @discardableResult
    public static func load(_ names: [String], for why: String) -> Bool {
        guard let load = lock.withLock({ loader }) else { return false }
        load(names, why)
        return true
    }

    /// What a mount of `fstype` needs, beyond what the kernel has built in:
    /// its driver (the `fs-TYPE` alias every filesystem module has) and the
    /// character sets Spirit mounts it with (`iocharset=utf8`; vfat's
    /// default code page 437 and charset iso8859-1).
    public static func filesystem(_ fstype: String) -> [String] {
        switch fstype {
        case "vfat", "msdos": ["fs-" + fstype, "nls_cp437", "nls_iso8859_1", "nls_utf8"]
        case "ntfs3", "iso9660": ["fs-" + fstype, "nls_utf8"]
        case "fuseblk": ["fuse"]
        default: ["fs-" + fstype]
        }
    }
}
