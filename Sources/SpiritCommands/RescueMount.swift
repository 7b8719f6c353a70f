import BootCascade
import Glibc
import ModuleLoader
import Overlay
import SpiritCore

// spirit-mount: a device read-only on /mnt/<name>.
extension RescueTools {
    /// Mounts a device read-only on /mnt/<name>, with the driver its
    /// filesystem needs (ntfs3 or ntfs-3g for NTFS).
    static func mount(_ arguments: [String]) -> Int32 {
        guard arguments.count == 1, let path = arguments.first else { return Usage.fail("usage: spirit-mount DEVICE (e.g. /dev/sda2)") }
        let console = Console.tool
        // In the initramfs, a filesystem's modules load at its first mount.
        OnDemandLoading.install(console: console)
        let device = path.hasPrefix("/") ? path : "/dev/" + path
        let name = String(device.split(separator: "/").last ?? "disk")
        guard Kernel.exists(device) else {
            console.error("\(device): no such device (spirit-diag lists the block devices)")
            return 111
        }
        let found = BlockDevices.probe(name: name, path: device)
        let target = "/mnt/" + name
        do {
            switch found.type {
            case "ntfs":
                let (driver, warnings) = try ParasiteSource.mountNTFS(device, on: target)
                for warning in warnings { console.warning("\(device): \(warning); mounted read-only") }
                print("mounted \(found) read-only on \(target) with \(driver)")
            case let type?:
                try Kernel.makeDirectory(target, parents: true)
                let fstype = ["ext2": "ext4", "ext3": "ext4"][type] ?? type
                // vfat as the boot media are mounted: this kernel's default
                // charset (ascii) is not in the initramfs.
                try Kernel.mount(MountSpec(source: device, target: target, fstype: fstype, flags: [.readOnly, .noSUID, .noDev],
                                           data: fstype == "vfat" ? "iocharset=utf8" : nil))
                print("mounted \(found) read-only on \(target)")
            case nil:
                console.error("\(device): libblkid finds no filesystem on it")
                return 111
            }
            return 0
        } catch {
            console.error("\(error)")
            return 111
        }
    }
}
