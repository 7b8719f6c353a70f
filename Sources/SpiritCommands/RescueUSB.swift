import BootCascade
import Glibc
import ModuleLoader
import Overlay
import SpiritCore

// spirit-usb: the running media onto a USB stick.
extension RescueTools {
    /// Writes the running system's media files (the image in RAM and its
    /// manifest) to a USB stick, as a vfat filesystem labelled CROM_SPIRIT
    /// that the USB source boots from, after a confirmation naming the
    /// device and its size.
    static func usb(_ arguments: [String]) -> Int32 {
        let console = Console.tool
        let sticks = Kernel.listDirectory("/sys/block").filter { name in
            readFullLink("/sys/block/\(name)").contains("/usb") && !name.hasPrefix("loop")
        }
        func describe(_ name: String) -> String {
            let sectors = (try? Kernel.readText("/sys/block/\(name)/size")).flatMap { Int64($0.trimmed) } ?? 0
            let vendor = (try? Kernel.readText("/sys/block/\(name)/device/vendor"))?.trimmed ?? ""
            let model = (try? Kernel.readText("/sys/block/\(name)/device/model"))?.trimmed ?? ""
            return "/dev/\(name) (\([vendor, model].filter { !$0.isEmpty }.joined(separator: " ")), \(sizeText(sectors * 512)))"
        }
        guard arguments.count == 1, let path = arguments.first else {
            guard arguments.isEmpty else { return Usage.fail("usage: spirit-usb [DEVICE]") }
            print(sticks.isEmpty ? "no USB disk found" : "USB disks:\n" + sticks.map { "  " + describe($0) }.joined(separator: "\n"))
            print("usage: spirit-usb DEVICE writes the running media to DEVICE (all its data is lost)")
            return 0
        }
        let name = String(path.split(separator: "/").last ?? "")
        guard sticks.contains(name) else {
            console.error("\(path) is not a USB disk (USB disks: \(sticks.isEmpty ? "none" : sticks.map { "/dev/" + $0 }.joined(separator: ", ")))")
            return 100
        }
        let manifest: Manifest
        do {
            manifest = try Manifest.parse(try Kernel.readFile(RunFiles.imageManifest))
        } catch {
            console.error("no running media to write: \(error) (spirit-usb works once Spirit has booted)")
            return 111
        }
        let image = RootLayout().imageDirectory + "/" + manifest.image
        print("Write Crom-OS Spirit \(manifest.version) to \(describe(name))?")
        print("Everything on it is lost. Type the device name (\(name)) to go on: ", terminator: "")
        fflush(nil) // every output stream: the prompt must show before the answer is read
        let answer = readLine()?.trimmed
        // An answer from a pipe was not echoed: end the prompt's line.
        if isatty(0) == 0 { print("") }
        guard answer == name else {
            print("not written")
            return 1
        }
        let device = "/dev/" + name
        let target = "/run/spirit/usb-write"
        do {
            // busybox calls it mkfs.vfat in the initramfs, mkdosfs in the image.
            let mkfs = ["/sbin/mkfs.vfat", "/sbin/mkdosfs", "/usr/sbin/mkfs.vfat"].first(where: Kernel.exists) ?? "/sbin/mkfs.vfat"
            // busybox picks the applet by argv[0].
            try Spawn.run(mkfs, [String(mkfs.split(separator: "/").last ?? "mkfs.vfat"), "-n", USBSeedSource.label, device])
            try Kernel.makeDirectory(target, parents: true)
            try Kernel.mount(MountSpec(source: device, target: target, fstype: "vfat", data: "iocharset=utf8"))
            defer { _ = try? Kernel.unmount(target) }
            try Spawn.run("/bin/cp", ["cp", image, target + "/" + manifest.image])
            try Kernel.writeFile(target + "/" + MediaFiles.manifest, manifest.json)
            Kernel.sync()
        } catch {
            console.error("unable to write \(device): \(error)")
            return 111
        }
        print("\(device): written; it boots Spirit through the cascade's USB source")
        return 0
    }

    static func readFullLink(_ path: String) -> String {
        Kernel.readLink(path) ?? ""
    }
}
