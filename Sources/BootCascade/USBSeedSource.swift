import Overlay
import SpiritCore

/// The USB seed: any block device labelled CROM_SPIRIT with a filesystem
/// the kernel reads (the ISO as a CD or written to a stick, a vfat or ext4
/// stick), holding the media files at its root.
public struct USBSeedSource: BootSource {
    public static let label = "CROM_SPIRIT"
    /// libblkid's type → the kernel's filesystem name.
    static let filesystems = ["iso9660": "iso9660", "vfat": "vfat", "ext4": "ext4", "ext3": "ext4", "ext2": "ext4"]

    public let name = "usb"
    let layout: RootLayout
    let sys: String
    let dev: String

    public init(layout: RootLayout = RootLayout(), sys: String = "/sys", dev: String = "/dev") {
        self.layout = layout
        self.sys = sys
        self.dev = dev
    }

    /// Polls the block devices until one carries the label or the deadline
    /// passes (devices appear as their drivers probe; the cascade issue
    /// replaces the poll with uevents).
    public func locate(deadline: Int64, console: Console) throws -> FoundImage {
        var seen: [BlockDevice] = []
        while true {
            seen = BlockDevices.scan(sys: sys, dev: dev)
            if let device = seen.first(where: { $0.label == Self.label }) {
                return try open(device, console: console)
            }
            if Kernel.bootTimeMicros() >= deadline { break }
            Kernel.sleep(milliseconds: 100)
        }
        let found = seen.isEmpty ? "no block device at all" : "only " + seen.map(\.description).joined(separator: ", ")
        throw SpiritError("no block device labelled \(Self.label) appeared (\(found))")
    }

    func open(_ device: BlockDevice, console: Console) throws -> FoundImage {
        let origin = device.path + " (\(device.type ?? "?"), \(Self.label))"
        guard let type = device.type, let fstype = Self.filesystems[type] else {
            throw SpiritError("\(origin): Spirit cannot read a \(device.type ?? "unknown") filesystem")
        }
        try Kernel.makeDirectory(layout.media, parents: true)
        try Kernel.mount(layout.mediaMount(device: device.path, fstype: fstype))
        let release: () -> Void = { [layout] in _ = try? Kernel.unmount(layout.media) }
        do {
            let manifestPath = layout.media + "/" + MediaFiles.manifest
            let manifestBytes = try Kernel.readFile(manifestPath)
            guard manifestBytes.count <= MediaFiles.manifestLimit else {
                throw SpiritError("\(manifestPath) is \(manifestBytes.count) bytes, more than a manifest can be")
            }
            let manifest = try Manifest.parse(manifestBytes)
            let imagePath = layout.media + "/" + manifest.image
            guard Kernel.exists(imagePath) else { throw SpiritError("the manifest names \(manifest.image), which is not on \(origin)") }
            console.debug("found \(manifest.image) \(manifest.version) on \(origin)")
            return FoundImage(source: name, origin: origin, manifest: manifest,
                              openImage: { try FileImageStream(path: imagePath) }, release: release)
        } catch {
            release()
            throw SpiritError("\(origin): \(error)")
        }
    }
}
