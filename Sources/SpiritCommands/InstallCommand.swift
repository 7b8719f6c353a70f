import BootCascade
import Glibc
import Overlay
import SpiritCore

/// `spirit install parasite <mounted Windows partition>`: puts the media
/// files into `CromSpirit\` on an NTFS partition, with the two ways to boot
/// them beside (design 5.2 and 5.3): the GRUB entry for /etc/grub.d/40_custom
/// and a PowerShell script that adds an entry to the Windows Boot Manager.
/// The install is a plan first: `--dry-run` prints it, and every refusal
/// (not NTFS, read-only, no room, an install already there) comes before
/// anything is written.
enum InstallCommand {
    static let usage = "install parasite TARGET [--media DIR] [--dry-run] [--force]"
    static let directoryName = "CromSpirit"
    static let grubFile = "40_custom"
    static let bcdScript = "install-bcd.ps1"
    /// A standalone GRUB for UEFI that reads NTFS (built by `make iso`): the
    /// loader the Windows Boot Manager entry starts. Copied when the media
    /// have it.
    static let efiLoader = "bootx64.efi"

    static func run(_ arguments: [String]) -> Int32 {
        let console = Console.tool
        guard arguments.first == "parasite" else {
            return Usage.fail(arguments.isEmpty ? "install needs a kind: \(usage)" : "unknown install kind '\(arguments[0])': \(usage)")
        }
        var target: String?
        var media: String?
        var dryRun = false
        var force = false
        var rest = arguments.dropFirst()
        while let word = rest.popFirst() {
            switch word {
            case "--dry-run": dryRun = true
            case "--force": force = true
            case "--media":
                guard let value = rest.popFirst() else { return Usage.fail("--media needs a directory") }
                media = value
            default:
                if word.hasPrefix("-") || target != nil { return Usage.fail("unexpected '\(word)': \(usage)") }
                target = word
            }
        }
        guard let target else { return Usage.fail("install parasite needs the mounted Windows partition: \(usage)") }
        do {
            let plan = try ParasitePlan.make(target: target, media: media, force: force)
            if dryRun {
                for line in plan.commands { print(line) }
                console.info("dry run: nothing written; \(plan.neededBytes >> 20) MiB needed, \(plan.availableBytes >> 20) MiB free on \(plan.mountPoint)")
                return 0
            }
            try plan.execute(console: console)
            console.info("installed Spirit \(plan.manifest.version) into \(plan.directory)")
            console.info("GRUB: append \(plan.directory)/\(grubFile) (from line 3) to /etc/grub.d/40_custom, then update-grub")
            console.info("Windows: run \(plan.directory)/\(bcdScript) in an elevated PowerShell")
            return 0
        } catch {
            console.error("unable to install Spirit into \(target): \(error)")
            return 111
        }
    }
}

/// Everything `install parasite` will do, checked before any of it is done.
struct ParasitePlan {
    struct Copy {
        var source: String
        var destination: String
        var size: Int64
    }

    var target: String
    var mountPoint: String
    var directory: String
    var manifest: Manifest
    var copies: [Copy]
    var files: [(path: String, text: String, what: String)]
    var neededBytes: Int64
    var availableBytes: Int64

    static func make(target: String, media: String?, force: Bool) throws -> ParasitePlan {
        let root = try Kernel.canonicalPath(target)
        let mount = try ntfsMount(holding: root)
        let stats = try Kernel.fileSystemStats(root)
        guard !stats.readOnly else {
            throw SpiritError("\(mount.mountPoint) (\(mount.source)) is mounted read-only; mount it read-write (ntfs3, or ntfs-3g) first")
        }

        // The media: the manifest names the image; the kernel and the
        // initramfs have fixed names (ARCHITECTURE.md, "Media layout").
        let places = media.map { [$0] } ?? RootLayout().runningMedia
        func find(_ name: String, required: Bool = true) throws -> String? {
            if let found = places.map({ $0 + "/" + name }).first(where: { Kernel.fileSize($0) != nil }) { return found }
            guard required else { return nil }
            throw SpiritError("no \(name) in \(places.joined(separator: " or "))" + (media == nil ? "; --media DIR names the media (the ISO's root)" : ""))
        }
        let manifestPath = try find(MediaFiles.manifest)!
        let manifest = try Manifest.parse(try Kernel.readFile(manifestPath))
        let directory = root + "/" + InstallCommand.directoryName
        var copies: [ParasitePlan.Copy] = []
        for name in ["kernel", "initramfs.zst", manifest.image] {
            let source = try find(name)!
            copies.append(Copy(source: source, destination: directory + "/" + name, size: Kernel.fileSize(source) ?? 0))
        }
        if let loader = try find(InstallCommand.efiLoader, required: false) {
            copies.append(Copy(source: loader, destination: directory + "/" + InstallCommand.efiLoader, size: Kernel.fileSize(loader) ?? 0))
        }
        // The manifest goes last: an install cut short has none, and the
        // parasite source does not take it for a whole one.
        copies.append(Copy(source: manifestPath, destination: directory + "/" + MediaFiles.manifest, size: Kernel.fileSize(manifestPath) ?? 0))
        let files = [
            (directory + "/" + InstallCommand.grubFile, ParasiteEntries.grub(directory: InstallCommand.directoryName), "the GRUB entry"),
            (directory + "/" + InstallCommand.bcdScript, ParasiteEntries.bcd(directory: InstallCommand.directoryName, loader: InstallCommand.efiLoader),
             "the Windows Boot Manager entry"),
        ]

        // Never overwrite an install without --force; with it, what is
        // replaced frees its room.
        let existing = (copies.map(\.destination) + files.map(\.0)).filter { Kernel.exists($0) }
        if !existing.isEmpty && !force {
            throw SpiritError("\(directory) already holds \(existing.map { String($0.split(separator: "/").last ?? "") }.joined(separator: ", ")); --force replaces them")
        }
        let freed = existing.compactMap(Kernel.fileSize).reduce(0, +)
        let needed = copies.map(\.size).reduce(0, +) + Int64(files.map(\.1.utf8.count).reduce(0, +))
        guard needed - freed + (1 << 20) <= stats.availableBytes else {
            throw SpiritError("\(mount.mountPoint) has \(stats.availableBytes >> 20) MiB free; the media need \((needed - freed) >> 20) MiB")
        }
        return ParasitePlan(target: root, mountPoint: mount.mountPoint, directory: directory, manifest: manifest, copies: copies,
                            files: files.map { (path: $0.0, text: $0.1, what: $0.2) }, neededBytes: needed - freed,
                            availableBytes: stats.availableBytes)
    }

    /// The mount that holds `path`, which must be NTFS: the kernel's ntfs3
    /// (statfs magic) or ntfs-3g (FUSE: /proc/self/mountinfo says fuseblk,
    /// and libblkid finds NTFS on its device, as exFAT's FUSE driver is
    /// fuseblk too).
    static func ntfsMount(holding path: String) throws -> MountInfoEntry {
        let mounts = MountInfoEntry.parse(try Kernel.readText("/proc/self/mountinfo"))
        let holding = mounts.filter { path == $0.mountPoint || path.hasPrefix($0.mountPoint == "/" ? "/" : $0.mountPoint + "/") }
        guard let mount = holding.max(by: { $0.mountPoint.count < $1.mountPoint.count || ($0.mountPoint.count == $1.mountPoint.count && $0.id < $1.id) }) else {
            throw SpiritError("no mount holds \(path)")
        }
        let type = try Kernel.fileSystemStats(path).type
        let isNTFS = type == FileSystemStats.ntfs3Magic || type == FileSystemStats.ntfsMagic
            || (type == FileSystemStats.fuseMagic && mount.fstype.hasPrefix("fuseblk")
                && BlockDevices.probe(name: mount.source, path: mount.source).type == "ntfs")
        guard isNTFS else {
            throw SpiritError("\(path) is on \(mount.mountPoint) (\(mount.fstype), \(mount.source)), not an NTFS partition; mount the Windows partition (ntfs3 or ntfs-3g) and name its mount point")
        }
        return mount
    }

    /// The plan as the shell commands it stands for (`--dry-run`).
    var commands: [String] {
        ["mkdir -p \(quote(directory))"]
            + copies.map { "cp \(quote($0.source)) \(quote($0.destination))  # \(ParasitePlan.amount($0.size))" }
            + files.map { "cat > \(quote($0.path)) <<'END'  # \($0.what)\n\($0.text)END" }
    }

    static func amount(_ bytes: Int64) -> String {
        bytes >= 1 << 20 ? "\(bytes >> 20) MiB" : "\((bytes + 1023) >> 10) KiB"
    }

    func quote(_ text: String) -> String { "'" + text.map { $0 == "'" ? "'\\''" : String($0) }.joined() + "'" }

    func execute(console: Console) throws {
        try Kernel.makeDirectory(directory)
        for copy in copies {
            let partial = copy.destination + ".part"
            var stream = try FileImageStream(path: copy.source)
            defer { stream.close() }
            let result: ImageCopy.Result
            do {
                result = try ImageCopy.copy(from: &stream, to: partial, expectedSize: Int64.max)
                if copy.destination.hasSuffix("/" + manifest.image) {
                    try manifest.verifyImage(size: result.size, sha256: result.sha256)
                }
            } catch {
                Kernel.remove(partial)
                throw SpiritError("unable to copy \(copy.source) to \(copy.destination): \(error)")
            }
            try Kernel.renameFile(partial, to: copy.destination)
            console.info("copied \(copy.destination) (\(ParasitePlan.amount(result.size)))")
        }
        for file in files {
            try Kernel.writeFileAtomically(file.path, file.text)
            console.info("wrote \(file.path) (\(file.what))")
        }
        Kernel.sync()
    }
}

/// The two boot entries of a parasite install (design 5.2 and 5.3), with
/// the paths of the media layout.
enum ParasiteEntries {
    /// The kernel command line of the parasite boot. The design's
    /// `root=ram0 init=/bin/spirit-init` are left out: Spirit's PID 1 is the
    /// initramfs's /init, which the kernel runs whatever root= and init= say.
    static let kernelArguments = "crom.mode=parasite crom.nodus=auto quiet"

    /// A /etc/grub.d script (like 40_custom: its lines from the third on
    /// are the entry).
    static func grub(directory: String) -> String {
        """
        #!/bin/sh
        exec tail -n +3 $0
        # Crom-OS Spirit on the Windows partition, written by `spirit install parasite`.
        # Append this file from its third line to /etc/grub.d/40_custom, then run update-grub.
        menuentry "Crom-OS Spirit" {
            insmod part_gpt
            insmod part_msdos
            insmod ntfs
            search --no-floppy --file --set=root /\(directory)/kernel
            echo "Loading Crom-OS Spirit kernel..."
            linux /\(directory)/kernel \(kernelArguments)
            echo "Loading initramfs..."
            initrd /\(directory)/initramfs.zst
        }

        """
    }

    /// A PowerShell script that adds Spirit to the Windows Boot Manager. The
    /// drive is the one the script runs from: the partition with CromSpirit\.
    static func bcd(directory: String, loader: String) -> String {
        """
        # Crom-OS Spirit: an entry in the Windows Boot Manager, written by `spirit install parasite`.
        # Run it in an elevated PowerShell:
        #   powershell -ExecutionPolicy Bypass -File <drive>:\\\(directory)\\install-bcd.ps1
        # \\\(directory)\\\(loader) is a standalone GRUB that reads NTFS and boots \\\(directory)\\kernel;
        # with Secure Boot on, the firmware refuses it unless it is signed for this machine.
        #Requires -RunAsAdministrator
        $ErrorActionPreference = "Stop"
        $drive = Split-Path -Qualifier $PSScriptRoot
        $loader = "\\\(directory)\\\(loader)"
        if (-not (Test-Path -LiteralPath "$drive$loader")) {
            throw "$drive$loader is missing: install again from media that have $(Split-Path -Leaf $loader) (make iso puts it on the ISO)"
        }

        # Create the entry and read the GUID bcdedit gives it.
        $created = bcdedit /create /d "Crom-OS Spirit" /application osloader
        if ($created -notmatch '\\{[0-9a-fA-F-]{36}\\}') { throw "bcdedit /create failed: $created" }
        $guid = $Matches[0]

        bcdedit /set $guid device "partition=$drive"
        bcdedit /set $guid path $loader
        bcdedit /set $guid description "Crom-OS Spirit"
        bcdedit /displayorder $guid /addlast
        bcdedit /timeout 5
        Write-Output "Crom-OS Spirit is in the Windows Boot Manager as $guid (bcdedit /delete $guid removes it)"

        """
    }
}
