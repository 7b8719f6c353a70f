import SpiritCore

/// Whether a disk may be given to a VM: a raw disk that Spirit has mounted
/// (the whole device or one of its partitions) would be written by two
/// kernels at once, which corrupts it. Pure: the caller reads
/// /proc/self/mountinfo and lists the disk's partitions.
///
/// A hibernated NTFS (Windows hibernation or Fast Startup) cannot be told
/// from the NTFS boot sector: the sector has no such flag. Windows marks it
/// in the first bytes of hiberfil.sys (`hibr` or `wake`, any case, as
/// ntfs-3g and the parasite source read them); the daemon reads those with
/// ntfscat, which needs no mount.
public enum DiskSafety {
    /// Whether a volume's first sector is an NTFS boot sector (OEM id
    /// "NTFS    " at byte 3).
    public static func isNTFS(bootSector: [UInt8]) -> Bool {
        bootSector.count >= 11 && Array(bootSector[3..<11]) == Array("NTFS    ".utf8)
    }

    /// Whether hiberfil.sys's first bytes say a hibernated system.
    public static func isHibernated(hiberfileHead head: [UInt8]) -> Bool {
        guard head.count >= 4 else { return false }
        let word = String(decoding: head.prefix(4), as: UTF8.self).lowercased()
        return word == "hibr" || word == "wake"
    }

    /// The mounts that use `device` (`/dev/sda`) or one of `partitions`
    /// (`/dev/sda1`…); empty when the disk is free.
    public static func mounts(of device: String, partitions: [String], mountinfo: String) -> [MountInfoEntry] {
        let names = Set([device] + partitions)
        return MountInfoEntry.parse(mountinfo).filter { names.contains($0.source) }
    }

    /// The reason a disk is refused, or nil.
    public static func refusal(disk: String, device: String, partitions: [String], mountinfo: String) -> String? {
        let used = mounts(of: device, partitions: partitions, mountinfo: mountinfo)
        guard !used.isEmpty else { return nil }
        let list = used.map { "\($0.source) on \($0.mountPoint)" }.joined(separator: ", ")
        return "the disk \(disk) is mounted in Spirit (\(list)): unmount it first, two systems must not write one disk"
    }
}
