import CBlkid
import Glibc
import SpiritCore

/// A block device and what libblkid found on it.
public struct BlockDevice: Sendable, Equatable, CustomStringConvertible {
    public var name: String
    public var path: String
    /// The filesystem type (`iso9660`, `vfat`, `ext4`, `ntfs`), if any.
    public var type: String?
    public var label: String?
    /// The filesystem's UUID (a vfat serial `1234-ABCD`): how persistence
    /// finds the boot medium again under whatever name it has then.
    public var uuid: String?

    public var description: String {
        "\(name) (\(type ?? "no filesystem")\(label.map { ", label \($0)" } ?? ""))"
    }
}

public enum BlockDevices {
    /// Devices that are never boot media: RAM-backed and network-backed
    /// ones (the Nodus source handles nbd itself).
    static let ignoredPrefixes = ["loop", "ram", "zram", "nbd"]

    /// Every block device with a size, whole disks and partitions, probed.
    public static func scan(sys: String = "/sys", dev: String = "/dev") -> [BlockDevice] {
        Kernel.listDirectory(sys + "/class/block")
            .filter { name in
                guard !ignoredPrefixes.contains(where: name.hasPrefix) else { return false }
                let size = (try? Kernel.readText(sys + "/class/block/\(name)/size"))?.split(separator: "\n").first.flatMap { Int64($0) } ?? 0
                return size > 0
            }
            .map { probe(name: $0, path: dev + "/" + $0) }
    }

    /// Whether a USB host controller is there, which could still bring a
    /// late device (a stick plugged in during the boot).
    public static func hasUSBController(sys: String = "/sys") -> Bool {
        Kernel.listDirectory(sys + "/bus/usb/devices").contains { $0.hasPrefix("usb") }
    }

    /// What libblkid finds on one device (superblocks only: type and label).
    public static func probe(name: String, path: String) -> BlockDevice {
        var device = BlockDevice(name: name, path: path)
        guard let probe = blkid_new_probe_from_filename(path) else { return device }
        defer { blkid_free_probe(probe) }
        blkid_probe_enable_superblocks(probe, 1)
        blkid_probe_set_superblocks_flags(probe, Int32(BLKID_SUBLKS_LABEL | BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID))
        guard blkid_do_safeprobe(probe) == 0 else { return device }
        func value(_ key: String) -> String? {
            var data: UnsafePointer<CChar>?
            var length = 0
            guard blkid_probe_lookup_value(probe, key, &data, &length) == 0, let data else { return nil }
            return String(cString: data)
        }
        device.type = value("TYPE")
        device.label = value("LABEL")
        device.uuid = value("UUID")
        return device
    }
}

extension BootMedium {
    /// The medium's device now: found by its filesystem UUID (a stick may
    /// come back under another name), else the name it had at boot; "" for
    /// a medium that is not a disk. `spirit persist` and `spirit upgrade`.
    public func currentDevice() throws -> String {
        guard let device else { return "" }
        guard let uuid else { return device }
        if let found = BlockDevices.scan().first(where: { $0.uuid == uuid }) { return found.path }
        throw SpiritError("the boot medium \(description) is not there any more (no filesystem with UUID \(uuid)); plug it back in")
    }
}
