import Glibc
import SpiritCore

/// Builds the RAM root at /sysroot from an image whose manifest has been
/// checked, by running RootPlan's stage-1 plan: copy the image into RAM
/// while hashing it, compare with the manifest, make the writable layer on
/// zram, mount squashfs + overlay. Each phase goes into the timeline as
/// copy, verify, zram and mount; a failure undoes what was done.
public struct RootAssembler {
    public var plan = RootPlan()
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

    /// The stage-1 plan for this machine: its memory, its zram device and
    /// the algorithms zram offers.
    public func stageOnePlan(manifest: Manifest, persistArchive: String? = nil) throws -> BootPlan {
        let memTotal = Zram.memTotalKiB(meminfo: try Kernel.readText("/proc/meminfo")) ?? 0
        let number = try Zram.freeDevice()
        let offered = (try? Kernel.readText("/sys/block/zram\(number)/comp_algorithm")) ?? ""
        return try plan.stageOne(.init(manifest: manifest, memTotalKiB: memTotal, algorithmsOffered: offered,
                                       upper: config.upper, ramLimitMiB: config.ramLimitMiB, zramNumber: number,
                                       persistArchive: persistArchive))
    }

    /// Runs the plan. `openImage` gives the source's stream; `releaseMedia`
    /// is called once the copy is over (done or failed), so that the source
    /// can let its media go. A failure in the copy or verify phase is the
    /// source's; a later one is the machine's (PlanFailure says which).
    /// `persist` restores a persistence archive (read before the copy,
    /// applied after the overlay is mounted); its handlers never throw.
    public func assemble(manifest: Manifest, openImage: () throws -> any ImageStream, releaseMedia: () -> Void,
                         persist: (archive: String, read: () -> Void, apply: () -> Void)? = nil) throws {
        let bootPlan = try stageOnePlan(manifest: manifest, persistArchive: persist?.archive)
        console.debug("boot plan:\n" + bootPlan.shell)
        let imagePath = plan.layout.imageDirectory + "/" + manifest.image
        var copied: ImageCopy.Result?
        try withoutActuallyEscaping(openImage) { openImage in
            try withoutActuallyEscaping(releaseMedia) { releaseMedia in
                try PlanRunner(timeline: timeline, note: { console.info($0) }).run(bootPlan, actions: [
                    RootPlan.Action.copy: {
                        defer { releaseMedia() }
                        var stream = try openImage()
                        defer { stream.close() }
                        let total = manifest.size
                        copied = try ImageCopy.copy(from: &stream, to: imagePath, expectedSize: total) { done in
                            console.info("copying \(manifest.image) into RAM: \(done * 100 / max(total, 1))% (\(done >> 20) of \(total >> 20) MiB)")
                        }
                    },
                    RootPlan.Action.verify: {
                        guard let copied else { throw SpiritError("the image was not copied") }
                        try manifest.verifyImage(size: copied.size, sha256: copied.sha256)
                    },
                    RootPlan.Action.readPersist: { persist?.read() },
                    RootPlan.Action.applyPersist: { persist?.apply() },
                ])
            }
        }
    }
}
