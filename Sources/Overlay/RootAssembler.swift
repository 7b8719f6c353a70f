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

    /// A layer to stack at boot: its checked manifest and a way to read
    /// its squashfs from the boot source.
    public struct BootLayer {
        public var manifest: LayerManifest
        public var open: () throws -> any ImageStream

        public init(manifest: LayerManifest, open: @escaping () throws -> any ImageStream) {
            self.manifest = manifest
            self.open = open
        }
    }

    /// The stage-1 plan for this machine: its memory, its zram device and
    /// the algorithms zram offers.
    public func stageOnePlan(manifest: Manifest, layers: [LayerManifest] = [], persistArchive: String? = nil,
                             streamed: Bool = false) throws -> BootPlan {
        let memTotal = Zram.memTotalKiB(meminfo: try Kernel.readText("/proc/meminfo")) ?? 0
        let number = try Zram.freeDevice()
        let offered = (try? Kernel.readText("/sys/block/zram\(number)/comp_algorithm")) ?? ""
        return try plan.stageOne(.init(manifest: manifest, memTotalKiB: memTotal, algorithmsOffered: offered,
                                       upper: config.upper, ramLimitMiB: config.ramLimitMiB, zramNumber: number,
                                       layers: layers, persistArchive: persistArchive, streamed: streamed))
    }

    /// Runs the plan. `openImage` gives the source's stream; `releaseMedia`
    /// is called once the copies are over (done or failed), so that the
    /// source can let its media go. A failure in the copy or verify phase is
    /// the source's; a later one is the machine's (PlanFailure says which).
    /// A layer that fails its copy or check is left out, said on the
    /// console; the names of the layers stacked are returned. `persist`
    /// restores a persistence archive (read before the copy, applied after
    /// the overlay is mounted); its handlers never throw. `stream`, for a
    /// streaming boot, starts the hydrator and returns once it has named
    /// the loop device in RootLayout.hydrateLoop: the image is then not
    /// copied here (`openImage` is not called).
    @discardableResult
    public func assemble(manifest: Manifest, layers: [BootLayer] = [], openImage: () throws -> any ImageStream,
                         releaseMedia: () -> Void,
                         persist: (archive: String, read: () -> Void, apply: () -> Void)? = nil,
                         stream: (() throws -> Void)? = nil) throws -> [LayerManifest] {
        try withoutActuallyEscaping(openImage) { openImage in
            try withoutActuallyEscaping(releaseMedia) { releaseMedia in
                try run(manifest: manifest, layers: layers, openImage: openImage, releaseMedia: releaseMedia, persist: persist,
                        stream: stream)
            }
        }
    }

    func run(manifest: Manifest, layers: [BootLayer], openImage: @escaping () throws -> any ImageStream,
             releaseMedia: @escaping () -> Void,
             persist: (archive: String, read: () -> Void, apply: () -> Void)?,
             stream: (() throws -> Void)?) throws -> [LayerManifest] {
        let bootPlan = try stageOnePlan(manifest: manifest, layers: layers.map(\.manifest), persistArchive: persist?.archive,
                                        streamed: stream != nil)
        console.debug("boot plan:\n" + bootPlan.shell)
        let layout = plan.layout
        let imagePath = layout.imageDirectory + "/" + manifest.image
        var copied: ImageCopy.Result?
        var released = false
        var stacked: [LayerManifest] = []
        var actions: [String: () throws -> Void] = [
            RootPlan.Action.copy: {
                var stream = try openImage()
                defer { stream.close() }
                let total = manifest.size
                copied = try ImageCopy.copy(from: &stream, to: imagePath, expectedSize: total) { done in
                    console.info("copying \(manifest.image) into RAM: \(done * 100 / max(total, 1))% (\(done >> 20) of \(total >> 20) MiB)")
                }
            },
            RootPlan.Action.release: {
                released = true
                releaseMedia()
            },
            RootPlan.Action.verify: {
                guard let copied else { throw SpiritError("the image was not copied") }
                try manifest.verifyImage(size: copied.size, sha256: copied.sha256)
                // Nodus serves this copy later: it need not hash it again.
                do {
                    try VerifiedStamp.write(for: imagePath, sha256: manifest.sha256)
                } catch {
                    console.info("unable to note the image as checked (\(error)): Nodus will hash it again")
                }
            },
            RootPlan.Action.stream: { try stream?() },
            RootPlan.Action.readPersist: { persist?.read() },
            RootPlan.Action.applyPersist: { persist?.apply() },
        ]
        for layer in layers {
            let name = layer.manifest.name
            actions[RootPlan.Action.copyLayer(name)] = {
                do {
                    try Self.copyItem(layer.manifest, from: layer.open, into: layout.layerImages, console: console)
                    stacked.append(layer.manifest)
                } catch {
                    console.info("layer \(name): left out: \(error)")
                }
            }
            actions[RootPlan.Action.mountLayer(name)] = {
                guard stacked.contains(where: { $0.name == name }) else { return }
                do {
                    try Self.mountLayer(layer.manifest, images: layout.layerImages, on: layout.layerMount(name))
                } catch {
                    // Its mount point stays an empty directory: a harmless lower layer.
                    stacked.removeAll { $0.name == name }
                    console.info("layer \(name): left out: \(error)")
                }
            }
        }
        defer { if !released { releaseMedia() } }
        try PlanRunner(timeline: timeline, note: { console.info($0) }).run(bootPlan, actions: actions)
        return stacked
    }

    /// Copies a layer's squashfs (a model's GGUF) into `directory` while
    /// hashing it, checks it against its manifest and writes the manifest
    /// beside it; on any failure removes what it wrote. Used at boot, by
    /// `spirit layer add` and by `spirit ai pull`.
    public static func copyItem<Item: ShelfItem>(_ item: Item, from source: () throws -> any ImageStream, into directory: String,
                                                 console: Console) throws {
        let path = directory + "/" + item.file
        do {
            var stream = try source()
            defer { stream.close() }
            let total = item.size
            let copied = try ImageCopy.copy(from: &stream, to: path, expectedSize: total) { done in
                console.info("copying \(Item.kind) \(item.name) into RAM: \(done * 100 / max(total, 1))% (\(done >> 20) of \(total >> 20) MiB)")
            }
            try item.verifyFile(size: copied.size, sha256: copied.sha256)
            try Kernel.writeFileAtomically(directory + "/" + Item.manifestFile(item.name), item.json)
        } catch {
            Kernel.remove(path)
            throw error
        }
    }

    /// Mounts a layer's squashfs (copied by copyItem) read-only from a loop
    /// device on `mountPoint`.
    public static func mountLayer(_ layer: LayerManifest, images: String, on mountPoint: String) throws {
        try Kernel.makeDirectory(mountPoint, parents: true)
        let loop = try LoopDevice.attach(images + "/" + layer.image)
        defer { loop.close() }
        try Kernel.mount(MountSpec(source: loop.path, target: mountPoint, fstype: "squashfs", flags: [.readOnly]))
    }
}
