import SpiritCore

/// The I/O shell of `spirit persist`: the medium mounted for the moment it
/// is needed (read-only to read, read-write to commit), the archive read
/// or written by the atomic plan, the writable layer scanned.
public struct PersistStore {
    public var medium: BootMedium
    /// The device the medium is now (found again by its UUID).
    public var device: String
    public var console: Console

    public init(medium: BootMedium, device: String, console: Console) {
        self.medium = medium
        self.device = device
        self.console = console
    }

    /// The medium this boot recorded, or why there is none.
    public static func bootMedium(file: String = RunFiles.bootMedium) throws -> BootMedium {
        let bytes: [UInt8]
        do {
            bytes = try Kernel.readFile(file)
        } catch {
            throw SpiritError("this boot recorded no boot medium (\(error)); was it booted by Spirit's stage 1?")
        }
        return try BootMedium(json: bytes)
    }

    /// The selection: `--paths` when given, else /etc/spirit/persist.toml
    /// when there is one, else /etc and /root.
    public static func selection(paths: [String]?, configFile: String = PersistSelection.configFile) throws -> PersistSelection {
        if let paths { return try PersistSelection(paths: paths) }
        guard Kernel.exists(configFile) else { return try PersistSelection(paths: PersistSelection.defaultPaths) }
        return try PersistSelection.parse(try ConfigFile.parse(try Kernel.readText(configFile), path: configFile))
    }

    /// The archive's bytes on the medium, or nil when there is none.
    public func readArchive() throws -> [UInt8]? {
        let fstype = medium.fstype ?? "auto"
        try Kernel.makeDirectory(PersistMedium.mountPoint, parents: true)
        try Kernel.mount(PersistMedium.mount(device: device, fstype: fstype, readWrite: false))
        defer { _ = try? Kernel.unmount(PersistMedium.mountPoint) }
        let path = PersistMedium.archivePath(medium)
        guard Kernel.exists(path) else { return nil }
        return try Kernel.readFile(path)
    }

    /// Writes `archive` by ArchiveWriteStep's plan; `progress` hears the
    /// bytes written. On a failure the medium is unmounted and the old
    /// archive is left as it was.
    public func commit(_ archive: [UInt8], progress: (Int) -> Void = { _ in }) throws {
        guard let fstype = medium.fstype else { throw SpiritError("the boot medium has no filesystem type recorded") }
        var mounted = false
        defer { if mounted { _ = try? Kernel.unmount(PersistMedium.mountPoint) } }
        for step in ArchiveWriteStep.commitPlan(device: device, fstype: fstype, medium: medium, bytes: archive.count) {
            switch step {
            case .makeDirectory(let path): try Kernel.makeDirectory(path, parents: true)
            case .mount(let spec):
                try Kernel.mount(spec)
                mounted = true
            case .write(let path, _):
                console.info("persist: writing \(path) (\(archive.count) bytes)")
                try Kernel.writeFile(path, bytes: archive, sync: false, progress: progress)
            case .syncFile(let path), .syncDirectory(let path): try Kernel.syncPath(path)
            case .rename(let from, let to): try Kernel.renameFile(from, to: to)
            case .unmount(let target):
                try Kernel.unmount(target)
                mounted = false
            }
        }
    }
}

/// Stage 1's part (crom.persist=on): the archive read into RAM while the
/// boot medium is mounted and checked whole there, then applied to
/// /sysroot once the overlay is mounted. Neither step ever fails the boot:
/// an archive that cannot be used is ignored, with the reason on the
/// console, and nothing of it is applied.
public final class PersistBoot: @unchecked Sendable {
    public let archive: String
    let console: Console
    var entries: [PersistEntry]?
    var summary = ""

    /// `archive`: the file's path on the mounted medium.
    public init(archive: String, console: Console) {
        self.archive = archive
        self.console = console
    }

    /// Reads and checks the archive; says why when it is not used.
    public func read() {
        guard Kernel.exists(archive) else {
            console.debug("persist: no \(PersistArchive.fileName) on the boot medium")
            report("nothing (no \(archive))")
            return
        }
        do {
            let (trailer, entries) = try PersistArchive.open(try Kernel.readFile(archive))
            self.entries = entries
            summary = "\(persistSummary(entries)), committed \(utcText(trailer.time))"
        } catch {
            console.info("persist: ignored \(archive): \(error)")
            report("ignored \(archive): \(error)")
        }
    }

    /// Applies what `read` checked to `root`.
    public func apply(root: String) {
        guard let entries else { return }
        let (applied, failures) = ArchiveApply(root: root).apply(entries)
        for failure in failures { console.warning("persist: \(failure)") }
        let line = failures.isEmpty ? "restored \(summary) from \(archive)"
                                    : "restored \(applied) of \(entries.count) entries from \(archive); \(failures.count) could not be written"
        console.info("persist: " + line)
        report(line)
    }

    func report(_ line: String) {
        try? Kernel.writeFile(RunFiles.persistReport, line + "\n")
    }
}
