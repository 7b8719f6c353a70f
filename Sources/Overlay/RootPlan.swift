import SpiritCore

/// The RAM root and switch_root as plans (STYLE.md, lesson 1), built from
/// pure inputs so that `spirit boot-plan` prints them on any machine and
/// tests check them without root.
public struct RootPlan: Sendable {
    /// What the stage-1 plan is made from.
    public struct Inputs: Sendable, Equatable {
        public var manifest: Manifest
        public var memTotalKiB: Int64
        /// zram's comp_algorithm as the kernel lists it (`lzo lzo-rle lz4 [zstd]`).
        public var algorithmsOffered: String
        public var upper: UpperLayer
        public var ramLimitMiB: Int?
        /// The free zram device (Zram.freeDevice: zram0, or one from hot_add).
        public var zramNumber: Int
        /// The layers to stack over the image (crom.layers=), their
        /// manifests already checked; the first is the topmost.
        public var layers: [LayerManifest]
        /// The persistence archive on the mounted boot medium, to restore
        /// (crom.persist=on and a medium that is a disk); nil: none.
        public var persistArchive: String? = nil
        /// crom.nodus.stream=1 with a manifest that has a block list: the
        /// root is mounted from the peers' export while the image comes
        /// into RAM behind it (`spirit nodus hydrate`), not after a copy.
        public var streamed = false

        public init(manifest: Manifest, memTotalKiB: Int64, algorithmsOffered: String, upper: UpperLayer,
                    ramLimitMiB: Int?, zramNumber: Int = 0, layers: [LayerManifest] = [], persistArchive: String? = nil,
                    streamed: Bool = false) {
            self.streamed = streamed
            self.manifest = manifest
            self.memTotalKiB = memTotalKiB
            self.algorithmsOffered = algorithmsOffered
            self.upper = upper
            self.ramLimitMiB = ramLimitMiB
            self.zramNumber = zramNumber
            self.layers = layers
            self.persistArchive = persistArchive
        }
    }

    /// The names of the plan's own actions, carried out by RootAssembler.
    public enum Action {
        public static let copy = "copy-image"
        public static let verify = "verify-image"
        /// The boot source lets its medium go (unmounts it, closes its connection).
        public static let release = "release-media"
        /// `copy-layer NAME`: into RAM, hashed, checked; a layer that fails
        /// is left out with the reason on the console, the boot goes on.
        public static func copyLayer(_ name: String) -> String { "copy-layer " + name }
        /// `mount-layer NAME`: its squashfs from a loop device, read-only
        /// (an empty directory, a harmless lower layer, if it was left out).
        public static func mountLayer(_ name: String) -> String { "mount-layer " + name }
        /// Starts `spirit nodus hydrate` and waits until it names the
        /// read-only loop device over /dev/nbdN (in `hydrateLoop`).
        public static let stream = "stream-image"
        public static let readPersist = "read-persist"
        public static let applyPersist = "apply-persist"
    }

    public var layout = RootLayout()
    public var mke2fs = "/sbin/mke2fs"
    public var mkswap = "/sbin/mkswap"

    public init() {}

    /// copy (the image and the chosen layers into a tmpfs just large
    /// enough), verify (the image's SHA-256 against the signed manifest),
    /// zram (the writable layer), mount (the squashfs files from loop
    /// devices, the overlay on /sysroot). zram needs nothing of the image:
    /// it is set up beside the copy (the copy is bound by its hash, on a
    /// thread of its own, which leaves CPU to spare: research/
    /// boot-performance.md, item 6), and the mount waits for both.
    public func stageOne(_ inputs: Inputs) throws(SpiritError) -> BootPlan {
        let manifest = inputs.manifest
        let imagePath = layout.imageDirectory + "/" + manifest.image
        let layerBytes = inputs.layers.reduce(Int64(0)) { $0 + $1.size }
        let bytes = Zram.sizeBytes(memTotalKiB: inputs.memTotalKiB, ramLimitMiB: inputs.ramLimitMiB)
        let algorithms = Zram.candidates(available: inputs.algorithmsOffered)
        guard !algorithms.isEmpty else {
            throw SpiritError("zram offers none of \(Zram.preferredAlgorithms.joined(separator: ", ")) (it lists: \(inputs.algorithmsOffered.trimmed))")
        }
        let block = "/sys/block/zram\(inputs.zramNumber)"
        let device = "/dev/zram\(inputs.zramNumber)"
        var steps: [PlannedStep] = []
        // Read while the medium is mounted (the copy lets it go), checked
        // whole; applied once the overlay is there. Neither fails the boot.
        if let archive = inputs.persistArchive {
            steps.append(PlannedStep("persist:read", .action(name: Action.readPersist,
                                                             shell: "cp \(archive) /run/spirit/persist.archive  # if there; its SHA-256 trailer checked, else ignored")))
        }
        steps += [
            PlannedStep("copy", .makeDirectory(layout.imageDirectory)),
            PlannedStep("copy", .mount(layout.imageMount(imageBytes: manifest.size + layerBytes + Int64(inputs.layers.count) << 20))),
        ]
        let manifestBeside = PlannedStep("verify", .writeFile(path: layout.imageDirectory + "/" + RootAssembler.manifestFile, contents: manifest.json))
        if inputs.streamed {
            // The hydrator reads the manifest (checked already) from beside the image.
            steps += [
                PlannedStep("stream", manifestBeside.step),
                PlannedStep("stream", .action(name: Action.stream, shell: "spirit nodus hydrate --peers PEERS --manifest "
                    + "\(layout.imageDirectory)/\(RootAssembler.manifestFile) --image \(imagePath) --ready \(RootLayout.hydrateLoop) &"
                    + "  # /dev/nbdN from the peers, each block checked; a read-only loop over it; the copy into RAM behind")),
            ]
        } else {
            steps.append(PlannedStep("copy", .action(name: Action.copy, shell: "cat IMAGE > \(imagePath)  # from the boot source, SHA-256 computed as it is copied")))
        }
        if !inputs.layers.isEmpty { steps.append(PlannedStep("copy", .makeDirectory(layout.layerImages))) }
        for layer in inputs.layers {
            let path = layout.layerImages + "/" + layer.image
            steps.append(PlannedStep("copy", .action(name: Action.copyLayer(layer.name), shell:
                "cat MEDIA/layers/\(layer.image) > \(path) && echo '\(layer.sha256)  \(path)' | sha256sum -c  # else left out: rm \(path)")))
        }
        steps.append(PlannedStep(inputs.streamed && inputs.layers.isEmpty ? "stream" : "copy",
                                 .action(name: Action.release, shell: "umount MEDIA  # the boot source lets its medium go")))
        if !inputs.streamed {
            steps += [
                PlannedStep("verify", .action(name: Action.verify, shell: "echo '\(manifest.sha256)  \(imagePath)' | sha256sum -c")),
                // Beside the image, for Nodus: a running Spirit serves both to its peers.
                manifestBeside,
            ]
        }
        steps += [
            PlannedStep("zram", .writeFirstAccepted(path: block + "/comp_algorithm", values: algorithms, what: "zram",
                                                    preferred: Zram.preferredAlgorithms[0])),
            PlannedStep("zram", .writeFile(path: block + "/disksize", contents: String(bytes)),
                        undo: .writeFile(path: block + "/reset", contents: "1")),
            PlannedStep("zram", .makeDirectory(layout.readWrite)),
        ]
        switch inputs.upper {
        case .zram:
            // No journal: the layer lives in RAM and is gone at power-off
            // anyway; a journal would only double the writes. The UUID and
            // directory hash seed come from the kernel, which hands out
            // UUIDs without blocking: left to itself, mke2fs's libuuid
            // waits for the random pool, 4.2 s of a 4.3 s step under QEMU
            // (0.12 s with them given).
            steps += [
                PlannedStep("zram", .readValue(path: "/proc/sys/kernel/random/uuid", into: "UUID")),
                PlannedStep("zram", .readValue(path: "/proc/sys/kernel/random/uuid", into: "SEED")),
                PlannedStep("zram", .run([mke2fs, "-q", "-t", "ext4", "-O", "^has_journal", "-m", "0", "-L", "spirit-rw",
                                          "-U", "$UUID", "-E", "hash_seed=$SEED", device])),
            ]
        case .tmpfs:
            steps += [
                PlannedStep("zram", .run([mkswap, device])),
                PlannedStep("zram", .swapOn(device)),
            ]
        }
        steps += [
            PlannedStep("zram", .mount(layout.readWriteMount(inputs.upper, zramDevice: device, bytes: bytes))),
            PlannedStep("zram", .makeDirectory(layout.upper)),
            PlannedStep("zram", .makeDirectory(layout.work)),
            inputs.streamed ? PlannedStep("mount", .readValue(path: RootLayout.hydrateLoop, into: "LOOP"))
                : PlannedStep("mount", .attachLoop(file: imagePath, into: "LOOP")),
            PlannedStep("mount", .makeDirectory(layout.lower)),
            PlannedStep("mount", .mount(layout.squashfsMount(loopDevice: "$LOOP"))),
        ]
        for layer in inputs.layers {
            let mountPoint = layout.layerMount(layer.name)
            steps.append(PlannedStep("mount", .makeDirectory(mountPoint)))
            steps.append(PlannedStep("mount", .action(name: Action.mountLayer(layer.name), shell:
                "mount -t squashfs -o ro,loop \(layout.layerImages)/\(layer.image) \(mountPoint)  # if it was not left out"),
                undo: .unmount(mountPoint)))
        }
        steps += [
            PlannedStep("mount", .makeDirectory(layout.sysroot)),
            PlannedStep("mount", .mount(layout.overlayMount(layers: inputs.layers.map(\.name)))),
        ]
        if inputs.persistArchive != nil {
            steps.append(PlannedStep("persist:apply", .action(name: Action.applyPersist,
                                                              shell: "tar -x -C \(layout.sysroot) -f /run/spirit/persist.archive  # its files, links and deletions, through the overlay")))
        }
        let layerNote = inputs.layers.isEmpty ? "" : " and layers " + inputs.layers.map { "\($0.name) (\($0.size >> 10) KiB)" }.joined(separator: ", ")
        return BootPlan(steps: steps, details: [
            "copy": "\(manifest.size >> 10) KiB into RAM" + layerNote + (inputs.streamed ? ", in the background (streamed)" : ""),
            "verify": inputs.streamed ? "each block against the signed block list; SHA-256 \(manifest.sha256.prefix(12)) when the copy ends"
                : "SHA-256 \(manifest.sha256.prefix(12)) matches the signed manifest",
            "zram": "\(bytes >> 20) MiB, \(inputs.upper.rawValue) upper",
        ], beginsWith: ["zram": "copy"])
    }

    /// RAM a running system needs beside its image in RAM (the writable
    /// layer's first writes, the services, the page cache's working set).
    public static let runningHeadroomMiB: Int64 = 64

    /// Whether an image (and its layers) fits in RAM, asked before a byte
    /// is copied: nil if it does, else why not, with the figures. A manifest
    /// that names a larger image than the machine can hold is refused at
    /// once, not when the copy runs out of memory. `crom.ram.limit` caps the
    /// RAM the root may use, so it caps this too.
    public static func memoryProblem(image: Manifest, layerBytes: Int64, memAvailableKiB: Int64, ramLimitMiB: Int?) -> String? {
        let neededMiB = (image.size + layerBytes + (1 << 20) - 1) >> 20
        let availableMiB = memAvailableKiB >> 10
        let budgetMiB = min(availableMiB, ramLimitMiB.map(Int64.init) ?? availableMiB)
        guard neededMiB + runningHeadroomMiB > budgetMiB else { return nil }
        let layers = layerBytes > 0 ? " with its layers" : ""
        let limit = ramLimitMiB.map { ", capped by crom.ram.limit=\($0)" } ?? " (crom.ram.limit is not set)"
        let hint = layerBytes > 0 ? "; crom.layers=none boots the image alone" : ""
        return "\(image.image) \(image.version)\(layers) needs \(neededMiB) MiB of RAM and \(runningHeadroomMiB) MiB to run; "
            + "this machine has \(availableMiB) MiB available\(limit): refused before the copy\(hint)"
    }

    /// switch_root's first part, which the boot worker runs once /sysroot is
    /// built: the API filesystems moved into the new root and the
    /// initramfs's files deleted. PID 1 (spirit-init) makes the rest of
    /// `switchRoot`'s steps itself (cd, mount --move, chroot, cd, exec).
    public static func prepareSwitchRoot(newRoot: String) -> BootPlan {
        let whole = switchRoot(newRoot: newRoot, initPath: "/sbin/init", arguments: [])
        let steps = whole.steps.prefix { $0.step != .changeDirectory(newRoot) }
        return BootPlan(steps: Array(steps), details: ["switch_root": "into \(newRoot); PID 1 enters it and execs /sbin/init"])
    }

    /// switch_root, as a whole: the API filesystems moved into the new root,
    /// the initramfs's files deleted to free their RAM, the new root moved
    /// onto /, chroot, exec of its init. pivot_root(2) does not work from an
    /// initramfs, so busybox's switch_root and systemd do the same.
    public static func switchRoot(newRoot: String, initPath: String, arguments: [String]) -> BootPlan {
        var steps: [PlannedStep] = []
        for path in SwitchRoot.carried {
            steps.append(PlannedStep("switch_root", .makeDirectory(newRoot + path)))
            steps.append(PlannedStep("switch_root", .mount(MountSpec(source: path, target: newRoot + path, fstype: "", flags: [.move]))))
        }
        steps += [
            PlannedStep("switch_root", .removeTree("/", keep: newRoot)),
            PlannedStep("switch_root", .changeDirectory(newRoot)),
            PlannedStep("switch_root", .mount(MountSpec(source: ".", target: "/", fstype: "", flags: [.move]))),
            PlannedStep("switch_root", .changeRoot(".")),
            PlannedStep("switch_root", .changeDirectory("/")),
            PlannedStep("exec", .execute([initPath] + arguments)),
        ]
        return BootPlan(steps: steps, details: ["switch_root": "into \(newRoot), exec \(initPath)"])
    }
}
