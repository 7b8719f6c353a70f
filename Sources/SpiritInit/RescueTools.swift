import BootCascade
import Glibc
import ModuleLoader
import Overlay
import SpiritCore

/// The rescue shell's tools, links to the multi-call binary
/// (`spirit-diag` runs `spirit diag`): what a person at a machine that
/// found no system image needs to see why and to go on.
enum RescueTools {
    static let names = ["diag", "mount", "fetch", "usb", "net"]

    static func run(_ tool: String, _ arguments: [String]) -> Int32 {
        switch tool {
        case "diag": return diag(arguments)
        case "mount": return mount(arguments)
        case "fetch": return fetch(arguments)
        case "usb": return usb(arguments)
        case "net": return NodusCommand.net(arguments)
        default: return Usage.fail("unknown rescue tool '\(tool)' (tools: \(names.map { "spirit-" + $0 }.joined(separator: ", ")))")
        }
    }

    // MARK: the rescue watcher

    /// Run by PID 1 beside the stage-1 rescue shell (`spirit rescue-watch`):
    /// loads the drivers of devices that appear (the boot worker that did
    /// so is gone) and announces boot media and network cards that appear,
    /// so that the person at the shell knows 'exit' will find them.
    static func watch() -> Int32 {
        let console = Console()
        let uevents: UeventSocket
        do {
            uevents = try UeventSocket()
        } catch {
            console.warning("\(error); media that appears now will not be announced")
            return 111
        }
        let release = Kernel.release()
        // Read on the first device that needs a driver, not at once: the
        // watcher starts with the rescue shell and must not slow it down.
        var index: ModuleIndex?
        var indexRead = false
        let loader = ParallelLoader(loading: ModuleLoading(release: release))
        while true {
            guard let event = uevents.next(milliseconds: 60_000), event.action == "add" else { continue }
            if event.modalias != nil, !indexRead {
                indexRead = true
                index = try? ModuleIndex.load(release: release)
            }
            if let alias = event.modalias, let index {
                let names = index.lookup(alias).filter { !index.config.blacklist.contains($0) }
                if !names.isEmpty { _ = loader.load(index.plan(names)) }
            }
            let name = event.fields["DEVNAME"] ?? ""
            switch event.fields["SUBSYSTEM"] {
            case "block" where !name.isEmpty:
                let device = BlockDevices.probe(name: name, path: "/dev/" + name)
                // The shell's prompt is on the line: start a new one.
                if device.label == USBSeedSource.label {
                    console.newLine()
                    console.info("media appeared: /dev/\(device): 'exit' boots from it")
                } else if device.type == "ntfs" {
                    console.newLine()
                    console.info("NTFS partition appeared: /dev/\(device): 'exit' looks for \\\(ParasiteSource.directory)\\ on it")
                }
            case "net" where event.fields["INTERFACE"].map({ $0 != "lo" }) ?? false:
                console.newLine()
                console.info("network card appeared: \(event.fields["INTERFACE"] ?? "?"): 'exit' tries DHCP and HTTP on it")
            default:
                continue
            }
        }
    }

    // MARK: spirit-diag

    /// Hardware, modules, block devices, network, why each source gave
    /// up, and the timeline: what to look at (or paste) when a boot failed.
    static func diag(_ arguments: [String]) -> Int32 {
        guard arguments.isEmpty else { return Usage.fail("spirit-diag takes no argument") }
        func section(_ title: String) { print("\n== \(title)") }
        func first(_ path: String) -> String? {
            (try? Kernel.readText(path))?.split(separator: "\n").first.map(String.init)
        }
        section("hardware")
        let cpuinfo = (try? Kernel.readText("/proc/cpuinfo")) ?? ""
        let cpus = cpuinfo.split(separator: "\n").filter { $0.hasPrefix("processor") }.count
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":").last?.trimmingWhitespace ?? "?"
        print("machine: \(first("/sys/class/dmi/id/sys_vendor") ?? "?") \(first("/sys/class/dmi/id/product_name") ?? "?")")
        print("cpu: \(cpus) x \(model)")
        let memory = Zram.memTotalKiB(meminfo: (try? Kernel.readText("/proc/meminfo")) ?? "") ?? 0
        print("memory: \(memory >> 10) MiB")
        print("kernel: \(Kernel.release()); command line: \(first("/proc/cmdline") ?? "?")")
        print("firmware: " + (Kernel.exists("/sys/firmware/efi") ? "UEFI" : "BIOS (or UEFI CSM)"))

        section("modules")
        let loaded = ((try? Kernel.readText("/proc/modules")) ?? "").split(separator: "\n").map { String($0.prefix { $0 != " " }) }
        print("\(loaded.count) loaded: \(loaded.sorted().joined(separator: " "))")
        _ = ModulesCommand.run(["missing"])

        section("block devices")
        let devices = BlockDevices.scan()
        if devices.isEmpty { print("none") }
        for device in devices {
            let sectors = first("/sys/class/block/\(device.name)/size").flatMap { Int64($0) } ?? 0
            print("\(device.path)\t\(sizeText(sectors * 512))\t\(device.type ?? "-")\t\(device.label ?? "-")")
        }
        print("USB controller: " + (BlockDevices.hasUSBController() ? "yes" : "none"))

        section("network")
        let network = Network()
        let interfaces = Kernel.listDirectory("/sys/class/net").filter { $0 != "lo" }
        if interfaces.isEmpty { print("no network interface") }
        for name in interfaces {
            let base = "/sys/class/net/\(name)"
            let driver = Kernel.listDirectory(base + "/device/driver/module").isEmpty ? "" : " driver " + readLink(base + "/device/driver")
            print("\(name): \(first(base + "/operstate") ?? "?"), carrier \(first(base + "/carrier") ?? "?"), "
                  + "MAC \(first(base + "/address") ?? "?")\(driver)")
            if let lease = (try? Kernel.readText(network.leaseDirectory + "/\(name).lease")).flatMap(Network.Lease.parse) {
                print("  DHCP: \(lease)")
            }
        }

        section("boot sources (last attempt)")
        print((try? Kernel.readText(RunFiles.cascadeReport))?.trimmed ?? "no cascade report (the cascade has not given up)")

        section("timeline")
        if let document = try? Kernel.readFile(Timeline(process: "").documentPath), let steps = try? TimelineStep.steps(document: document) {
            print(TimelineStep.table(steps))
        } else {
            print("no timeline")
        }
        return 0
    }

    static func readLink(_ path: String) -> String {
        Kernel.readLink(path)?.split(separator: "/").last.map(String.init) ?? "?"
    }

    static func sizeText(_ bytes: Int64) -> String {
        if bytes >= 10 << 30 { return "\(bytes >> 30) GiB" }
        if bytes >= 10 << 20 { return "\(bytes >> 20) MiB" }
        return "\(bytes >> 10) KiB"
    }

    // MARK: spirit-mount

    /// Mounts a device read-only on /mnt/<name>, with the driver its
    /// filesystem needs (ntfs3 or ntfs-3g for NTFS).
    static func mount(_ arguments: [String]) -> Int32 {
        guard arguments.count == 1, let path = arguments.first else { return Usage.fail("usage: spirit-mount DEVICE (e.g. /dev/sda2)") }
        let console = Console.tool
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
                try Kernel.mount(MountSpec(source: device, target: target, fstype: fstype, flags: [.readOnly, .noSUID, .noDev]))
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

    // MARK: spirit-fetch

    /// Fetches the manifest under a base URL and checks its signature
    /// here, then ends the rescue shell with the flags that make PID 1's
    /// next boot attempt take the image from that URL (copied into RAM and
    /// hashed by the boot worker, as every image).
    static func fetch(_ arguments: [String]) -> Int32 {
        guard arguments.count == 1, let text = arguments.first else {
            return Usage.fail("usage: spirit-fetch URL (the base URL of the media files: http://HOST[:PORT]/PATH/)")
        }
        let console = Console.tool
        do {
            let url = try HTTPURL.parse(text)
            let network = Network()
            let hasLease = network.interfaces().contains { Kernel.exists(network.leaseDirectory + "/\($0).lease") }
            if !hasLease {
                let context = SourceContext(deadline: Kernel.bootTimeMicros() + 15_000_000, console: console,
                                            devices: DeviceActivity(listening: false), cancel: CancelFlag())
                console.info("network: \(try network.up(deadline: context.deadline, context: context))")
            }
            let found = try HTTPSource.fetchManifest(base: url, idleMillis: 10_000, console: console)
            try found.manifest.verifySignature(publicKey: try SigningKey.read(InitramfsFiles.signingPublicKey))
            print("\(url): \(found.manifest.image) \(found.manifest.version), \(found.manifest.size >> 20) MiB, "
                  + "SHA-256 \(found.manifest.sha256.prefix(12)): signature valid")
            try Kernel.writeFile(RunFiles.bootFlags, "crom.mode=http crom.http=\(url)\n")
        } catch {
            console.error("unable to fetch from \(text): \(error)")
            return 111
        }
        guard let pid = (try? Kernel.readText(RunFiles.rescueShellPID)).flatMap({ pid_t($0.trimmed) }), pid > 1 else {
            print("not in the rescue shell: the next boot attempt takes the image from there ('exit' in the rescue shell)")
            return 0
        }
        print("continuing the boot from there")
        // An interactive shell leaves on a hangup; PID 1 then tries the boot again.
        try? Kernel.kill(pid, SIGHUP)
        return 0
    }

    // MARK: spirit-usb

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

extension Substring {
    var trimmingWhitespace: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
