import SpiritCore

/// Whether a disk may be given to a VM: a raw disk that Spirit has mounted
/// (the whole device or one of its partitions) would be written by two
/// kernels at once, which corrupts it. Pure: the caller reads
/// /proc/self/mountinfo and lists the disk's partitions.
///
/// A hibernated NTFS (Windows Fast Startup) cannot be told from the NTFS
/// boot sector: the sector has no such flag. Windows marks it in
/// hiberfil.sys (`hibr`/`wake`), which only a mounted file system shows;
/// the parasite boot source checks it when it mounts the partition. Here the
/// VM writes to an overlay in RAM, so the disk itself is never changed.
public enum DiskSafety {
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
