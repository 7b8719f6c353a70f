import SpiritCore

/// The boot medium as persistence sees it: whether it can take an archive,
/// and the plan that writes one so that a power cut at any moment leaves
/// either the old archive or the new one, never a half.
public enum PersistMedium {
    /// Where `spirit persist` mounts the medium for the moment it needs it.
    public static let mountPoint = "/run/spirit/persist-medium"
    /// The filesystems a commit writes to.
    public static let writable = ["ext4", "vfat"]

    /// Why an archive cannot be written to this medium, or nil when it can.
    public static func refusal(_ medium: BootMedium) -> String? {
        let wanted = "persistence needs a boot from a USB stick with a writable CROM_SPIRIT filesystem (vfat or ext4; `spirit-usb DEVICE` makes one)"
        guard medium.device != nil, let fstype = medium.fstype else {
            return "this Spirit booted from \(medium.origin) (\(medium.source)), which is not a disk it can write to; \(wanted)"
        }
        switch fstype {
        case _ where writable.contains(fstype): return nil
        case "iso9660":
            return "the boot medium \(medium.description) is ISO 9660, read-only by nature (a CD, or the ISO written to a stick with dd); \(wanted)"
        case "ntfs", "ntfs3":
            return "the boot medium \(medium.description) is the Windows partition, which Spirit only ever mounts read-only (Windows may have left it hibernated with Fast Startup, and writing it then loses Windows' open files); \(wanted)"
        default:
            return "the boot medium \(medium.description) is \(fstype), which Spirit does not write; \(wanted)"
        }
    }

    /// The medium's mount: read-only to read the archive, read-write for the
    /// moment of a commit.
    public static func mount(device: String, fstype: String, readWrite: Bool) -> MountSpec {
        MountSpec(source: device, target: mountPoint, fstype: fstype,
                  flags: readWrite ? [.noSUID, .noDev, .noExec] : [.readOnly, .noSUID, .noDev, .noExec],
                  data: fstype == "vfat" ? "iocharset=utf8" : nil)
    }

    /// The archive's path under the mount point: the media folder's.
    public static func archivePath(_ medium: BootMedium) -> String {
        (medium.directory.isEmpty ? mountPoint : mountPoint + "/" + medium.directory) + "/" + PersistArchive.fileName
    }
}

/// One step of writing the archive, as data: printable as the shell
/// command it stands for, checked by tests in order.
public enum ArchiveWriteStep: Sendable, Equatable {
    case makeDirectory(String)
    case mount(MountSpec)
    /// Writes the archive's bytes to a new file (replacing a leftover of a
    /// commit that was cut short).
    case write(String, bytes: Int)
    /// fsync(2) of a file: its bytes are on the disk before the rename.
    case syncFile(String)
    /// rename(2) over the old archive: the one moment the archive changes.
    case rename(String, to: String)
    /// fsync(2) of the directory: the rename itself is on the disk.
    case syncDirectory(String)
    case unmount(String)

    public var shell: String {
        switch self {
        case .makeDirectory(let path): "mkdir -p \(path)"
        case .mount(let spec): spec.description
        case .write(let path, let bytes): "cat > \(path)  # \(bytes) bytes"
        case .syncFile(let path): "sync \(path)"
        case .rename(let from, let to): "mv \(from) \(to)"
        case .syncDirectory(let path): "sync \(path)"
        case .unmount(let target): "umount \(target)"
        }
    }

    /// The plan of a commit: mount read-write, write `X.new`, fsync it,
    /// rename it over `X`, fsync the directory, unmount. A cut before the
    /// rename leaves the old X (and a stray X.new the next commit
    /// overwrites); after it, the new one. ext4 makes the rename atomic;
    /// vfat changes the name's one directory entry in place, so a cut there
    /// can at worst leave clusters that fsck.vfat gives back.
    public static func commitPlan(device: String, fstype: String, medium: BootMedium, bytes: Int) -> [ArchiveWriteStep] {
        let archive = PersistMedium.archivePath(medium)
        let temporary = archive + ".new"
        let directory = String(archive.dropLast(PersistArchive.fileName.count + 1))
        return [
            .makeDirectory(PersistMedium.mountPoint),
            .mount(PersistMedium.mount(device: device, fstype: fstype, readWrite: true)),
            .write(temporary, bytes: bytes),
            .syncFile(temporary),
            .rename(temporary, to: archive),
            .syncDirectory(directory),
            .unmount(PersistMedium.mountPoint),
        ]
    }
}
