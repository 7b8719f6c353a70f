import Glibc
import Overlay
import SpiritCore

/// The parasite: Spirit's media files in `\CromSpirit\` (any case) on a
/// Windows NTFS partition, found with libblkid once devices have settled.
/// The volume is only ever mounted read-only: a volume Windows left
/// hibernated or dirty (Fast Startup) must not be written, or Windows loses
/// what it had open; the console says when that is the case. The kernel's
/// ntfs3 is used where the kernel has it; else ntfs-3g over FUSE (Debian
/// 12's 6.1 kernel has no ntfs3).
public struct ParasiteSource: BootSource {
    public static let directory = "CromSpirit"
    public let name: SourceName = .parasite
    public let timeoutMicros: Int64
    let layout: RootLayout
    let sys: String
    let dev: String
    let ntfs3g: String

    public init(layout: RootLayout = RootLayout(), sys: String = "/sys", dev: String = "/dev", ntfs3g: String = "/bin/ntfs-3g",
                timeoutMicros: Int64 = 15_000_000) {
        self.layout = layout
        self.sys = sys
        self.dev = dev
        self.ntfs3g = ntfs3g
        self.timeoutMicros = timeoutMicros
    }

    public func locate(_ context: SourceContext) throws -> FoundImage {
        // Internal disks are there when devices have settled; a late USB
        // stick is the USB source's business.
        if context.devices.waitUntilSettled(deadline: context.deadline) {
            context.console.debug("parasite: devices settled: \(context.devices.settledBy)")
        }
        try context.cancel.check(name)
        let volumes = BlockDevices.scan(sys: sys, dev: dev).filter { $0.type == "ntfs" }
        guard !volumes.isEmpty else { throw SpiritError("no NTFS partition") }
        var reasons: [String] = []
        for (index, volume) in volumes.enumerated() {
            try context.cancel.check(name)
            do {
                return try open(volume, mountPoint: layout.media + "/parasite\(index)", console: context.console)
            } catch {
                reasons.append("\(error)")
            }
        }
        throw SpiritError(reasons.joined(separator: "; "))
    }

    /// Mounts an NTFS volume read-only with ntfs3 or else ntfs-3g; returns
    /// the driver used and what ntfs-3g said of the volume's state.
    /// Shared with `spirit-mount`.
    public static func mountNTFS(_ device: String, on mountPoint: String, sys: String = "/sys",
                                 ntfs3g: String = "/bin/ntfs-3g") throws -> (driver: String, warnings: [String]) {
        try Kernel.makeDirectory(mountPoint, parents: true)
        // Its module is loaded at the first NTFS volume, not at every boot.
        if !kernelHasNTFS3(sys: sys) { OnDemandModules.load(OnDemandModules.filesystem("ntfs3"), for: "the NTFS volume \(device)") }
        if kernelHasNTFS3(sys: sys) {
            // ntfs3 refuses a dirty volume read-write but mounts it
            // read-only, which is all this does.
            try Kernel.mount(MountSpec(source: device, target: mountPoint, fstype: "ntfs3",
                                       flags: [.readOnly, .noSUID, .noDev, .noExec], data: "iocharset=utf8"))
            return ("ntfs3", [])
        }
        guard Kernel.exists(ntfs3g) else {
            throw SpiritError("\(device): this kernel has no ntfs3 and the initramfs no ntfs-3g")
        }
        if !Kernel.exists("/dev/fuse") { OnDemandModules.load(["fuse"], for: "ntfs-3g on \(device)") }
        return ("ntfs-3g", try mountWithNTFS3G(device, on: mountPoint, ntfs3g: ntfs3g))
    }

    /// ntfs3 where this kernel has it (built in, or as a module in the initramfs).
    static func kernelHasNTFS3(sys: String) -> Bool {
        let filesystems = (try? Kernel.readText("/proc/filesystems")) ?? ""
        if filesystems.split(separator: "\n").contains(where: { $0.hasSuffix("\tntfs3") }) { return true }
        return Kernel.exists(sys + "/module/ntfs3")
    }

    func open(_ volume: BlockDevice, mountPoint: String, console: Console) throws -> FoundImage {
        let label = volume.label.map { ", \($0)" } ?? ""
        let (driver, warnings) = try Self.mountNTFS(volume.path, on: mountPoint, sys: sys, ntfs3g: ntfs3g)
        let origin = "\(volume.path) (ntfs\(label), \(driver), read-only)"
        let release: @Sendable () -> Void = { _ = try? Kernel.unmount(mountPoint) }
        let hibernated = Self.isHibernated(root: mountPoint)
        if hibernated || !warnings.isEmpty {
            let why = hibernated ? "Windows left it hibernated (Fast Startup)" : warnings.joined(separator: "; ")
            console.info("parasite: \(volume.path): \(why); it is only read, never written")
        }
        do {
            guard let directory = Self.findDirectory(in: mountPoint) else {
                throw SpiritError("no \\\(Self.directory)\\ folder")
            }
            let (manifest, imagePath) = try MediaFiles.readManifest(directory: directory, origin: origin)
            let medium = BootMedium(source: name.rawValue, origin: origin, device: volume.path, fstype: "ntfs", label: volume.label,
                                    uuid: volume.uuid, directory: String(directory.dropFirst(mountPoint.count + 1)))
            return FoundImage(source: name, origin: origin, manifest: manifest,
                              openImage: { try FileImageStream(path: imagePath) }, release: release,
                              layers: .folder(directory, origin: origin), models: .folder(directory, origin: origin), medium: medium,
                              mediaDirectory: directory)
        } catch {
            release()
            throw SpiritError("\(origin): \(error)")
        }
    }

    /// Runs ntfs-3g read-only; returns what it said about the volume's
    /// state (unclean, hibernated) when it mounted anyway.
    static func mountWithNTFS3G(_ device: String, on mountPoint: String, ntfs3g: String) throws -> [String] {
        let log = "/run/spirit/ntfs-3g.log"
        // ntfs-3g forks its FUSE daemon and exits once the mount is there;
        // its messages go to a file that is read back.
        let pid = try Spawn.spawn("/bin/sh", ["sh", "-c", "exec \"$0\" -o ro,noatime \"$1\" \"$2\" >\"$3\" 2>&1",
                                              ntfs3g, device, mountPoint, log])
        let status = try Spawn.wait(pid)?.status
        let said = ((try? Kernel.readText(log)) ?? "").split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        Kernel.remove(log)
        guard status == .exited(0) else {
            throw SpiritError("\(device): ntfs-3g -o ro failed (\(status.map(\.description) ?? "?")): "
                              + (said.suffix(2).joined(separator: " ").isEmpty ? "no message" : said.suffix(2).joined(separator: " ")))
        }
        return said.filter { $0.lowercased().contains("unclean") || $0.lowercased().contains("hibernat") }
    }

    /// `CromSpirit` at the volume's root, in any case (NTFS keeps case,
    /// Windows ignores it).
    static func findDirectory(in root: String) -> String? {
        Kernel.listDirectory(root).first { $0.lowercased() == directory.lowercased() }.map { root + "/" + $0 }
    }

    /// Whether hiberfil.sys holds a hibernation image (Windows Fast Startup
    /// or hibernation): its first bytes are `hibr` or `wake`, any case.
    static func isHibernated(root: String) -> Bool {
        guard let name = Kernel.listDirectory(root).first(where: { $0.lowercased() == "hiberfil.sys" }),
              let fd = try? Kernel.open(root + "/" + name, O_RDONLY) else { return false }
        defer { Kernel.close(fd) }
        var magic = [UInt8](repeating: 0, count: 4)
        guard (try? magic.withMutableBytes { raw throws(SystemError) in try Kernel.read(fd, into: raw, name) }) == 4 else { return false }
        let text = String(decoding: magic, as: UTF8.self).lowercased()
        return text == "hibr" || text == "wake"
    }
}
