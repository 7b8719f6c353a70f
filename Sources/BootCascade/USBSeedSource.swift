import Overlay
import SpiritCore

/// The USB seed: any block device labelled CROM_SPIRIT with a filesystem
/// the kernel reads (the ISO as a CD or written to a stick, a vfat or ext4
/// stick), holding the media files at its root, or in the folder of a slot
/// (`a/`, `b/`) on a stick made by `make stick`, which GRUB names with
/// `crom.slot=`. A stick plugged in late is
/// noticed through uevents: the source looks again at every uevent, and
/// gives up once devices have settled and, where a USB controller is
/// there, its hubs have had the time to bring what was plugged in at
/// power-on and every USB storage device has its disk (`USBBuses`). With
/// `crom.mode=usb` it waits its whole time for a stick plugged in later.
public struct USBSeedSource: BootSource {
    public static let label = "CROM_SPIRIT"
    /// libblkid's type → the kernel's filesystem name.
    static let filesystems = ["iso9660": "iso9660", "vfat": "vfat", "ext4": "ext4", "ext3": "ext4", "ext2": "ext4"]
    /// How long a stick may take to show up (the cascade's wait for this
    /// source when a USB controller is there); the boot worker gives it
    /// `crom.network.timeout`.
    public static let lateDeviceMicros: Int64 = 10_000_000

    public let name: SourceName = .usb
    public let timeoutMicros: Int64
    let layout: RootLayout
    let sys: String
    let dev: String
    /// `crom.slot=`: the folder of the media files; nil for the root.
    let slot: String?
    /// `crom.mode=usb`: nothing else can boot, so a stick plugged in
    /// during the boot is waited for until the deadline.
    let waitsForLateStick: Bool

    public init(layout: RootLayout = RootLayout(), sys: String = "/sys", dev: String = "/dev",
                timeoutMicros: Int64 = USBSeedSource.lateDeviceMicros, slot: String? = nil, waitsForLateStick: Bool = false) {
        self.layout = layout
        self.slot = slot
        self.waitsForLateStick = waitsForLateStick
        self.sys = sys
        self.dev = dev
        self.timeoutMicros = timeoutMicros
    }

    var mountPoint: String { layout.media + "/usb" }

    public func locate(_ context: SourceContext) throws -> FoundImage {
        var seen: [BlockDevice] = []
        var generation = context.devices.currentGeneration
        let usb = BlockDevices.hasUSBController(sys: sys)
        let started = Kernel.bootTimeMicros()
        var settledUSB = false
        while true {
            try context.cancel.check(name)
            seen = BlockDevices.scan(sys: sys, dev: dev)
            if let device = seen.first(where: { $0.label == Self.label }) {
                return try open(device, console: context.console)
            }
            let now = Kernel.bootTimeMicros()
            let settled = context.devices.isSettled(now: now)
            if now >= context.deadline || (settled && !usb) { break }
            // Wake at the next uevent, when the devices would settle, when
            // the USB hubs have had their time, or at the deadline.
            var wake = settled ? context.deadline : min(context.deadline, context.devices.settlesAt() ?? context.deadline)
            if settled && !waitsForLateStick, let givesUp = USBBuses.read(sys: sys, now: now, fallback: started).givesUpAt {
                if now >= givesUp {
                    settledUSB = true
                    break
                }
                wake = min(wake, givesUp)
            }
            generation = context.devices.waitForActivity(since: generation, until: max(wake, now + 1000))
        }
        let found = seen.isEmpty ? "no block device at all" : "only " + seen.map(\.description).joined(separator: ", ")
        let waited = !usb ? "once devices settled (no USB controller for a late one)"
            : settledUSB ? "once the USB hubs had settled with no storage device left to come"
            : "within \(CascadeEngine<Never>.seconds(timeoutMicros)) s"
        throw SpiritError("no block device labelled \(Self.label) appeared \(waited): \(found)")
    }

    func open(_ device: BlockDevice, console: Console) throws -> FoundImage {
        let origin = device.path + " (\(device.type ?? "?"), \(Self.label)" + (slot.map { ", slot " + $0 } ?? "") + ")"
        guard let type = device.type, let fstype = Self.filesystems[type] else {
            throw SpiritError("\(origin): Spirit cannot read a \(device.type ?? "unknown") filesystem")
        }
        let target = mountPoint
        try Kernel.makeDirectory(target, parents: true)
        var spec = layout.mediaMount(device: device.path, fstype: fstype)
        spec.target = target
        try Kernel.mount(spec)
        let release: @Sendable () -> Void = { _ = try? Kernel.unmount(target) }
        do {
            // The slot's folder holds the media files; the persistence
            // archive stays at the root, shared by both slots.
            let files = slot.map { target + "/" + $0 } ?? target
            if let slot, !Kernel.exists(files) {
                throw SpiritError("crom.slot=\(slot), but the medium has no folder \(slot)/")
            }
            let (manifest, imagePath) = try MediaFiles.readManifest(directory: files, origin: origin)
            let medium = BootMedium(source: name.rawValue, origin: origin, device: device.path, fstype: fstype, label: device.label,
                                    uuid: device.uuid, slot: slot)
            return FoundImage(source: name, origin: origin, manifest: manifest,
                              openImage: { try FileImageStream(path: imagePath) }, release: release,
                              layers: .folder(files, origin: origin), models: .folder(files, origin: origin), medium: medium,
                              mediaDirectory: target)
        } catch {
            release()
            throw SpiritError("\(origin): \(error)")
        }
    }
}
