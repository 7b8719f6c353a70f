import Glibc
import SpiritCore

/// Builds the RAM root at /sysroot from an image whose manifest has been
/// checked: copy the image into RAM while hashing it, compare with the
/// manifest, make the writable layer on zram, mount squashfs + overlay.
/// Each step goes into the timeline as copy, verify, zram and mount.
public struct RootAssembler {
    public var layout = RootLayout()
    public var mke2fs = "/sbin/mke2fs"
    public var mkswap = "/sbin/mkswap"
    /// The manifest's name beside the image in RAM.
    public static let manifestFile = "manifest.json"
    let config: BootConfig
    let console: Console
    let timeline: Timeline

    public init(config: BootConfig, console: Console, timeline: Timeline) {
        self.config = config
        self.console = console
        self.timeline = timeline
    }

    public func assemble(manifest: Manifest, openImage: () throws -> any ImageStream, releaseMedia: () -> Void) throws {
        let imagePath = layout.imageDirectory + "/" + manifest.image
        let copied = try timeline.measure("copy", detail: { "\($0.size >> 10) KiB into RAM" }) { () throws -> ImageCopy.Result in
            defer { releaseMedia() }
            try Kernel.makeDirectory(layout.imageDirectory, parents: true)
            try Kernel.mount(layout.imageMount(imageBytes: manifest.size))
            var stream = try openImage()
            defer { stream.close() }
            let total = manifest.size
            return try ImageCopy.copy(from: &stream, to: imagePath, expectedSize: total) { done in
                console.info("copying \(manifest.image) into RAM: \(done * 100 / max(total, 1))% (\(done >> 20) of \(total >> 20) MiB)")
            }
        }
        try timeline.measure("verify", detail: { "SHA-256 \(copied.sha256.prefix(12)) matches the signed manifest" }) {
            do {
                try manifest.verifyImage(size: copied.size, sha256: copied.sha256)
            } catch {
                // Give the RAM back before the rescue shell.
                try? Kernel.unmount(layout.imageDirectory)
                throw error
            }
        }
        // Beside the image, for Nodus: a running Spirit serves both to its peers.
        try Kernel.writeFile(layout.imageDirectory + "/" + Self.manifestFile, manifest.json)
        try timeline.measure("zram", detail: { "\($0 >> 20) MiB, \(config.upper.rawValue) upper" }) { try makeWritableLayer() }
        try timeline.measure("mount") {
            let loop = try LoopDevice.attach(imagePath)
            defer { loop.close() }
            try Kernel.makeDirectory(layout.lower, parents: true)
            try Kernel.mount(layout.squashfsMount(loopDevice: loop.path))
            try Kernel.makeDirectory(layout.sysroot)
            try Kernel.mount(layout.overlayMount)
            console.debug([layout.squashfsMount(loopDevice: loop.path), layout.overlayMount].map(\.description).joined(separator: "\n"))
        }
    }

    /// zram sized by the design's rule, with the best algorithm the kernel
    /// has; ext4 on it as the upper layer, or (crom.upper=tmpfs) a tmpfs
    /// upper with the zram device as swap. Returns the zram size.
    func makeWritableLayer() throws -> Int64 {
        let memTotal = Zram.memTotalKiB(meminfo: try Kernel.readText("/proc/meminfo")) ?? 0
        let bytes = Zram.sizeBytes(memTotalKiB: memTotal, ramLimitMiB: config.ramLimitMiB)
        let number = try Zram.freeDevice()
        let available = (try? Kernel.readText("/sys/block/zram\(number)/comp_algorithm")) ?? ""
        let algorithm = try Zram.configure(number, available: available, bytes: bytes) { refused, error in
            console.info("zram: \(refused) is not available (\(error)); trying the next algorithm")
        }
        if algorithm != Zram.preferredAlgorithms[0] {
            console.info("zram: this kernel has no \(Zram.preferredAlgorithms[0]) for zram; using \(algorithm)")
        }
        let device = "/dev/zram\(number)"
        console.debug("zram: \(device), \(bytes >> 20) MiB, \(algorithm)")
        try Kernel.makeDirectory(layout.readWrite, parents: true)
        switch config.upper {
        case .zram:
            // No journal: the layer lives in RAM and is gone at power-off
            // anyway; a journal would only double the writes. The UUID and
            // directory hash seed come from the kernel, which hands out
            // UUIDs without blocking: left to itself, mke2fs's libuuid
            // waits for the random pool, 4.2 s of a 4.3 s step under QEMU
            // (0.12 s with them given).
            let uuid = try Kernel.readText("/proc/sys/kernel/random/uuid").trimmed
            let seed = try Kernel.readText("/proc/sys/kernel/random/uuid").trimmed
            try Spawn.run(mke2fs, ["mke2fs", "-q", "-t", "ext4", "-O", "^has_journal", "-m", "0", "-L", "spirit-rw",
                                   "-U", uuid, "-E", "hash_seed=\(seed)", device])
        case .tmpfs:
            try Spawn.run(mkswap, ["mkswap", device])
            try Kernel.swapOn(device)
        }
        try Kernel.mount(layout.readWriteMount(config.upper, zramDevice: device, bytes: bytes))
        try Kernel.makeDirectory(layout.upper)
        try Kernel.makeDirectory(layout.work)
        return bytes
    }
}
