import SpiritCore

/// The record beside a saved VM's migration stream (state.json), written
/// last, after the stream is complete: what the stream belongs to. A
/// restore loads the stream into a new QEMU only when the definition, the
/// QEMU and the disks are the ones it was saved with, and the stream is
/// whole: anything else would run a guest on memory that does not match its
/// devices or its disks ("do not boot a saved guest fresh, disk and memory
/// go out of sync").
public struct SavedState: Sendable, Equatable {
    /// A disk the state pins: the guest's memory holds its caches, so the
    /// overlay must be the one written up to the save, over the same base.
    public struct PinnedDisk: Sendable, Equatable {
        public var name: String
        public var path: String
        public var size: Int64
        public var overlay: String?
        public var overlaySize: Int64?
        public init(name: String, path: String, size: Int64, overlay: String?, overlaySize: Int64?) {
            self.name = name
            self.path = path
            self.size = size
            self.overlay = overlay
            self.overlaySize = overlaySize
        }
    }

    public var definitionSHA256: String
    public var qemuVersion: String
    public var disks: [PinnedDisk]
    public var streamBytes: Int64
    public var streamSHA256: String
    /// Seconds since the epoch.
    public var savedAt: Int64

    public init(definitionSHA256: String, qemuVersion: String, disks: [PinnedDisk], streamBytes: Int64, streamSHA256: String, savedAt: Int64) {
        self.definitionSHA256 = definitionSHA256
        self.qemuVersion = qemuVersion
        self.disks = disks
        self.streamBytes = streamBytes
        self.streamSHA256 = streamSHA256
        self.savedAt = savedAt
    }

    public var json: String {
        JSONValue.object([
            ("format", .int(1)),
            ("definition-sha256", .string(definitionSHA256)),
            ("qemu-version", .string(qemuVersion)),
            ("disks", .array(disks.map { disk in
                var members: [(String, JSONValue)] = [("name", .string(disk.name)), ("path", .string(disk.path)), ("size", .int(disk.size))]
                if let overlay = disk.overlay { members.append(("overlay", .string(overlay))) }
                if let size = disk.overlaySize { members.append(("overlay-size", .int(size))) }
                return .object(members)
            })),
            ("stream-bytes", .int(streamBytes)),
            ("stream-sha256", .string(streamSHA256)),
            ("saved-at", .int(savedAt)),
        ]).text + "\n"
    }

    public static func parse(_ text: String) throws(VMError) -> SavedState {
        let value: JSONValue
        do {
            value = try JSONReader.parse(text)
        } catch {
            throw VMError("the saved state's record is not JSON (\(error))")
        }
        guard value["format"]?.integer == 1, let definition = value["definition-sha256"]?.string,
              let version = value["qemu-version"]?.string, let disks = value["disks"]?.array,
              let bytes = value["stream-bytes"]?.integer, let sha = value["stream-sha256"]?.string,
              let savedAt = value["saved-at"]?.integer else {
            throw VMError("the saved state's record lacks a field (format 1: definition-sha256, qemu-version, disks, stream-bytes, stream-sha256, saved-at)")
        }
        var pinned: [PinnedDisk] = []
        for disk in disks {
            guard let name = disk["name"]?.string, let path = disk["path"]?.string, let size = disk["size"]?.integer else {
                throw VMError("the saved state's record has a disk without name, path or size")
            }
            pinned.append(PinnedDisk(name: name, path: path, size: size, overlay: disk["overlay"]?.string,
                                     overlaySize: disk["overlay-size"]?.integer))
        }
        return SavedState(definitionSHA256: definition, qemuVersion: version, disks: pinned, streamBytes: bytes,
                          streamSHA256: sha, savedAt: savedAt)
    }

    /// Why this state cannot be restored into `current` (what the machine
    /// has now, the stream measured as it is on disk), or nil when it can.
    public func mismatch(with current: SavedState) -> String? {
        if definitionSHA256 != current.definitionSHA256 {
            return "the VM's definition changed since the save"
        }
        if qemuVersion != current.qemuVersion {
            return "it was saved by QEMU \(qemuVersion), this is QEMU \(current.qemuVersion)"
        }
        if streamBytes != current.streamBytes {
            return "the state file has \(current.streamBytes) bytes, \(streamBytes) were saved (truncated or replaced)"
        }
        if streamSHA256 != current.streamSHA256 {
            return "the state file's SHA-256 is not the one saved (corrupt)"
        }
        for disk in disks {
            guard let now = current.disks.first(where: { $0.name == disk.name }) else {
                return "the disk \(disk.name) is gone from the definition"
            }
            if now.path != disk.path || now.size != disk.size {
                return "the disk \(disk.name) (\(disk.path)) is not the one the state was saved with"
            }
            if disk.overlay != nil, now.overlaySize != disk.overlaySize {
                return "the overlay of the disk \(disk.name) changed or is gone since the save"
            }
        }
        return nil
    }
}
