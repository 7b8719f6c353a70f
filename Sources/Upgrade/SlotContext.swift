import BootCascade
import Net
import Overlay
import SpiritCore

/// The running system as an upgrade needs it: the stick it booted from
/// (found again by its filesystem's UUID), the slot it booted and the
/// version of the image in RAM. Made only for a boot from a slot of a
/// writable stick; any other boot is refused with what would work.
public struct SlotContext: Sendable {
    public var bootMedium: BootMedium
    public var booted: Slot
    public var version: String
    public var medium: SlotMedium

    public static func current() throws -> SlotContext {
        let bootMedium = try BootMedium(json: try Kernel.readFile(RunFiles.bootMedium))
        let wanted = "upgrades write the other slot of a USB stick made by `make stick`"
        guard bootMedium.device != nil, let fstype = bootMedium.fstype else {
            throw SpiritError("this Spirit booted from \(bootMedium.origin) (\(bootMedium.source)), not from a disk; \(wanted)")
        }
        guard ["ext4", "vfat"].contains(fstype) else {
            let why = fstype == "iso9660" ? "ISO 9660, read-only by nature"
                : fstype.hasPrefix("ntfs") ? "the Windows partition, which Spirit never writes (a parasite install is upgraded by running `spirit install` from the new release)"
                : "\(fstype), which Spirit does not write"
            throw SpiritError("the boot medium \(bootMedium.description) is \(why); \(wanted)")
        }
        guard let slotName = bootMedium.slot else {
            throw SpiritError("the boot medium \(bootMedium.description) has no slots (this boot had no crom.slot=); \(wanted)")
        }
        let booted = try Slot.parse(slotName, origin: "crom.slot")
        let manifest = try Manifest.parse(try Kernel.readFile(RunFiles.imageManifest))
        return SlotContext(bootMedium: bootMedium, booted: booted, version: manifest.version,
                           medium: SlotMedium(device: try bootMedium.currentDevice(), fstype: fstype, directory: bootMedium.directory))
    }

    /// The medium mounted read-only for the time of `body`.
    func withMediumReadOnly<T>(_ body: () throws -> T) throws -> T {
        var spec = medium.mount
        spec.flags.insert(.readOnly)
        try Kernel.makeDirectory(spec.target, parents: true)
        try Kernel.mount(spec)
        defer { _ = try? Kernel.unmount(spec.target) }
        return try body()
    }

    /// GRUB's environment, both slots' releases and the upgrade log.
    public func read() throws -> MediumView {
        try withMediumReadOnly {
            let state = try SlotState(try GrubEnvironment(parsing: try Kernel.readFile(medium.grubenv), origin: medium.grubenv),
                                      origin: medium.grubenv)
            var view = MediumView(state: state)
            for slot in Slot.allCases {
                let path = medium.slot(slot) + "/" + ReleaseManifest.fileName
                guard let bytes = try? Kernel.readFile(path) else {
                    view.releases[slot] = .some(nil)
                    continue
                }
                view.releases[slot] = try? ReleaseManifest.parse(bytes)
                view.releaseHashes[slot] = Hex.encode(SHA256Digest.of(bytes))
            }
            let log = (try? Kernel.readText(medium.log)) ?? ""
            view.records = log.split(separator: "\n").compactMap { try? UpgradeRecord(json: String($0)) }
            return view
        }
    }

    /// Refuses a slot whose release is not signed with this system's key
    /// or whose files do not match it (read back whole from the medium).
    public func checkWhole(_ slot: Slot, _ release: ReleaseManifest) throws {
        try release.verifySignature(publicKey: try SigningKey.read(InitramfsFiles.signingPublicKey))
        try withMediumReadOnly {
            for file in release.files {
                let path = medium.slot(slot) + "/" + file.path
                do {
                    let measured = try ImageCopy.measure(path, expectedSize: file.size)
                    try release.verifyFile(file.path, size: measured.size, sha256: measured.sha256)
                } catch {
                    throw SpiritError("slot \(slot.rawValue) is not whole: \(error)")
                }
            }
        }
    }
}

/// What the medium says about its slots.
public struct MediumView: Sendable {
    public var state: SlotState
    /// nil inside: a slot with no readable release.
    public var releases: [Slot: ReleaseManifest?] = [:]
    public var releaseHashes: [Slot: String] = [:]
    public var records: [UpgradeRecord] = []

    public init(state: SlotState) { self.state = state }

    public func version(_ slot: Slot) -> String { (releases[slot] ?? nil)?.version ?? "no release" }

    /// `spirit upgrade status`.
    public func status(_ context: SlotContext) -> String {
        var lines = ["medium: \(context.bootMedium.description)"]
        for slot in Slot.allCases {
            var notes: [String] = []
            if slot == context.booted { notes.append("booted") }
            if slot == state.good { notes.append("good") }
            if slot == state.armed { notes.append("armed for one try at the next boot") }
            if slot == state.trying { notes.append(slot == context.booted ? "on its try, not yet marked good" : "its try never reached the health check") }
            if slot == state.failed, let why = records.last(where: { $0.action == .tryFailed && $0.to.slot == slot })?.detail {
                notes.append("its last try failed: \(why)")
            } else if slot == state.failed {
                notes.append("its last try failed")
            }
            lines.append("slot \(slot.rawValue): \(version(slot))" + (notes.isEmpty ? "" : " (" + notes.joined(separator: "; ") + ")"))
        }
        lines.append("next boot: slot \(state.nextBoot.rawValue)")
        if records.isEmpty {
            lines.append("history: none")
        } else {
            lines.append("history:")
            lines += records.suffix(10).map { "  " + $0.summary }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension UpgradeSource {
    /// `--from`: an HTTP URL or a directory.
    public static func parse(_ text: String) throws -> UpgradeSource {
        if text.hasPrefix("http://") || text.hasPrefix("https://") {
            _ = try HTTPURL.parse(text)
            return .url(text)
        }
        if text == "peer" || text.hasPrefix("nodus://") {
            throw SpiritError("--from \(text): Nodus peers serve the image and layers, not a kernel and an initramfs; serve a release folder (make netboot) over HTTP instead")
        }
        guard Kernel.exists(text + "/" + ReleaseManifest.fileName) else {
            throw SpiritError("--from \(text): no \(ReleaseManifest.fileName) there (expected an http:// or https:// URL or a release folder, such as make netboot's)")
        }
        return .directory(text)
    }

    /// A small file of the release (release.json).
    public func read(_ path: String) throws -> [UInt8] {
        let limit = MediaFiles.manifestLimit
        switch self {
        case .url:
            let bytes = try HTTPClient.open(try HTTPURL.parse(location(path))).readAll(limit: limit)
            return bytes
        case .directory:
            let bytes = try Kernel.readFile(location(path))
            guard bytes.count <= limit else { throw SpiritError("\(location(path)) is \(bytes.count) bytes, more than a release manifest can be") }
            return bytes
        }
    }
}
