import SpiritCore

/// Where a release comes from: an HTTP server's folder (what `make
/// netboot` writes) or a directory.
public enum UpgradeSource: Sendable, Equatable, CustomStringConvertible {
    case url(String)
    case directory(String)

    /// A file of the release at this source.
    public func location(_ path: String) -> String {
        switch self {
        case .url(let base): (base.hasSuffix("/") ? base : base + "/") + path
        case .directory(let directory): (directory.hasSuffix("/") ? String(directory.dropLast()) : directory) + "/" + path
        }
    }

    public var description: String {
        switch self {
        case .url(let base): base
        case .directory(let directory): directory
        }
    }
}

/// One step of an upgrade, a mark-good or a rollback, as data: run in
/// order by UpgradeRunner, printed as the shell it stands for by
/// `--dry-run`, checked by the unit tests.
public enum UpgradeStep: Sendable, Equatable {
    case makeDirectory(String)
    case mount(MountSpec)
    /// GRUB's environment block changed: written whole as FILE.new,
    /// fsync'd, renamed over FILE, the directory fsync'd.
    case editEnvironment(String, EnvironmentChange)
    case removeTree(String)
    /// Refuses, before anything changes, a release larger than the room
    /// left on the medium once the folder `reclaiming` (the other slot's
    /// old release) is gone.
    case checkRoom(String, bytes: Int64, reclaiming: String)
    /// A release file copied from the source, hashed as it is copied and
    /// checked against the release before it is kept, then fsync'd.
    case fetch(ReleaseManifest.File, from: String, to: String)
    case writeFile(String, bytes: [UInt8])
    case rename(String, to: String)
    case syncDirectory(String)
    /// One line appended (and fsync'd) to each log.
    case record(UpgradeRecord, to: [String])
    case unmount(String)

    public var shell: String {
        switch self {
        case .makeDirectory(let path): "mkdir -p \(path)"
        case .mount(let spec): spec.description
        case .editEnvironment(let path, let change): change.shell(path)
        case .removeTree(let path): "rm -rf \(path)"
        case .checkRoom(let path, let bytes, let reclaiming):
            "[ $(($(stat -f -c '%a * %S' \(path)) + $(du -sb \(reclaiming) 2>/dev/null | cut -f1) + 0)) -ge \(bytes) ]  # room for the release"
        case .fetch(let file, let from, let to):
            (from.hasPrefix("http://") ? "wget -q -O \(to) \(from)" : "cp \(from) \(to)")
                + " && echo '\(file.sha256)  \(to)' | sha256sum -c -s && sync \(to)  # \(file.size) bytes"
        case .writeFile(let path, let bytes): "cat > \(path) && sync \(path)  # \(bytes.count) bytes"
        case .rename(let from, let to): "mv \(from) \(to)"
        case .syncDirectory(let path): "sync \(path)"
        case .record(let record, let logs): logs.map { "echo '\(record.json)' >> \($0)" }.joined(separator: "; ")
        case .unmount(let target): "umount \(target)"
        }
    }
}

/// What an upgrade, a mark-good, a failed try or a rollback did, one JSON
/// line in `upgrades.log` on the medium and in /run/spirit/.
public struct UpgradeRecord: Sendable, Equatable {
    public enum Action: String, Sendable {
        case upgrade, markedGood = "marked-good", tryFailed = "try-failed", rollback
    }

    public var time: Int64
    public var action: Action
    public var from: (slot: Slot, version: String)
    public var to: (slot: Slot, version: String)
    /// The SHA-256 of the release.json written or switched to.
    public var release: String?
    public var detail: String?

    public init(time: Int64, action: Action, from: (Slot, String), to: (Slot, String), release: String? = nil, detail: String? = nil) {
        self.time = time
        self.action = action
        self.from = from
        self.to = to
        self.release = release
        self.detail = detail
    }

    public static func == (lhs: UpgradeRecord, rhs: UpgradeRecord) -> Bool { lhs.json == rhs.json }

    public var json: String {
        var members = ["\"time\":\(time)", "\"action\":" + jsonString(action.rawValue),
                       "\"from\":{\"slot\":\"\(from.slot.rawValue)\",\"version\":" + jsonString(from.version) + "}",
                       "\"to\":{\"slot\":\"\(to.slot.rawValue)\",\"version\":" + jsonString(to.version) + "}"]
        if let release { members.append("\"release_sha256\":" + jsonString(release)) }
        if let detail { members.append("\"detail\":" + jsonString(detail.replacing("'", with: "’"))) }
        return "{" + members.joined(separator: ",") + "}"
    }

    public init(json line: String) throws(SpiritError) {
        let document: JSONValue
        do {
            document = try JSONReader.parse(Array(line.utf8))
        } catch {
            throw SpiritError("not an upgrade record: \(error)")
        }
        guard let time = document["time"]?.integer, let action = document["action"]?.string.flatMap(Action.init(rawValue:)),
              let fromSlot = document["from"]?["slot"]?.string.flatMap(Slot.init(rawValue:)), let fromVersion = document["from"]?["version"]?.string,
              let toSlot = document["to"]?["slot"]?.string.flatMap(Slot.init(rawValue:)), let toVersion = document["to"]?["version"]?.string
        else { throw SpiritError("not an upgrade record: \(line)") }
        self.init(time: time, action: action, from: (fromSlot, fromVersion), to: (toSlot, toVersion),
                  release: document["release_sha256"]?.string, detail: document["detail"]?.string)
    }

    /// `2026-11-26 03:15 UTC upgrade a 0.1.0 -> b 0.1.1: from …`.
    public var summary: String {
        "\(utcText(time)) \(action.rawValue) \(from.slot.rawValue) \(from.version) -> \(to.slot.rawValue) \(to.version)"
            + (detail.map { ": " + $0 } ?? "")
    }
}

/// The medium as an upgrade sees it, mounted read-write at `mountPoint`.
public struct SlotMedium: Sendable, Equatable {
    public static let mountPoint = "/run/spirit/upgrade-medium"
    public static let logName = "upgrades.log"
    /// This boot's records, beside the medium's.
    public static let runLog = RunFiles.directory + "/" + logName

    /// The folder of the slots: the mount point, or its media folder.
    public var root: String
    public var grubenv: String
    public var mount: MountSpec

    public init(device: String, fstype: String, directory: String, mountPoint: String = SlotMedium.mountPoint) {
        root = directory.isEmpty ? mountPoint : mountPoint + "/" + directory
        grubenv = mountPoint + "/boot/grub/grubenv"
        mount = MountSpec(source: device, target: mountPoint, fstype: fstype, flags: [.noSUID, .noDev, .noExec],
                          data: fstype == "vfat" ? "iocharset=utf8" : nil)
    }

    public func slot(_ slot: Slot) -> String { root + "/" + slot.rawValue }
    public var log: String { root + "/" + Self.logName }
    public var logs: [String] { [log, Self.runLog] }
}

/// The plans of `spirit upgrade`, as data.
public enum UpgradePlan {
    /// What is known when an upgrade is asked for.
    public struct Request: Sendable {
        public var release: ReleaseManifest
        /// release.json as fetched (its SHA-256 is recorded).
        public var releaseBytes: [UInt8]
        public var source: UpgradeSource
        public var booted: Slot
        public var state: SlotState
        public var runningVersion: String
        public var allowDowngrade: Bool
        public var time: Int64

        public init(release: ReleaseManifest, releaseBytes: [UInt8], source: UpgradeSource, booted: Slot, state: SlotState,
                    runningVersion: String, allowDowngrade: Bool = false, time: Int64) {
            self.release = release
            self.releaseBytes = releaseBytes
            self.source = source
            self.booted = booted
            self.state = state
            self.runningVersion = runningVersion
            self.allowDowngrade = allowDowngrade
            self.time = time
        }
    }

    /// Whether this boot may write the other slot: only from the good slot.
    static func checkBoot(_ booted: Slot, _ state: SlotState) throws(SpiritError) {
        switch state.verdict(booted: booted) {
        case .good, .trialDidNotFinish: return
        case .trial:
            throw SpiritError("this boot is slot \(booted.rawValue)'s one try, not yet marked good; wait until it is (spirit upgrade status) or reboot")
        case .notChosen:
            throw SpiritError("slot \(booted.rawValue) was chosen by hand in GRUB's menu; slot \(state.good.rawValue) is the good one. `spirit upgrade rollback` makes slot \(booted.rawValue) the good one first")
        }
    }

    /// Refuses an older or equal version unless a downgrade is allowed.
    public static func checkVersion(_ new: String, running: String, allowDowngrade: Bool) throws(SpiritError) {
        let newer: Version, current: Version
        do throws(VersionError) {
            newer = try Version(parsing: new)
            current = try Version(parsing: running)
        } catch {
            throw SpiritError("unable to compare versions: \(error)")
        }
        guard newer > current || allowDowngrade else {
            throw SpiritError(newer == current
                ? "the release is version \(new), the one running; nothing to upgrade (--allow-downgrade writes it all the same)"
                : "the release is version \(new), older than \(running), the one running; refused (--allow-downgrade to go back)")
        }
    }

    /// Writes the release as the slot that is not running and arms it for
    /// one try. The running slot is never touched and GRUB's environment
    /// points at the new slot only once it is whole and on the disk, so a
    /// power cut at any step boots the running slot again. The other slot's
    /// old release goes first (a stick holds two slots, not three): once
    /// its try is disarmed nothing boots it, and the running slot is the
    /// one to come back to.
    public static func upgrade(_ request: Request, medium: SlotMedium) throws(SpiritError) -> [UpgradeStep] {
        try checkBoot(request.booted, request.state)
        try checkVersion(request.release.version, running: request.runningVersion, allowDowngrade: request.allowDowngrade)
        let target = request.booted.other
        let final = medium.slot(target)
        let incoming = final + ".new"
        var steps: [UpgradeStep] = [.makeDirectory(medium.mount.target), .mount(medium.mount),
                                    .checkRoom(medium.root, bytes: request.release.totalSize + Int64(request.releaseBytes.count), reclaiming: final)]
        // The target slot stops being bootable before a byte of it changes.
        var disarm: [String] = []
        if request.state.armed == target { disarm.append(SlotState.tryName) }
        if request.state.trying == target { disarm.append(SlotState.tryingName) }
        if request.state.failed == target { disarm.append(SlotState.failedName) }
        if !disarm.isEmpty { steps.append(.editEnvironment(medium.grubenv, EnvironmentChange(unset: disarm))) }
        steps += [.removeTree(incoming), .removeTree(final), .syncDirectory(medium.root), .makeDirectory(incoming)]
        let files = request.release.files
        if files.contains(where: { $0.path.hasPrefix("layers/") }) { steps.append(.makeDirectory(incoming + "/layers")) }
        // The kernel, the initramfs, the image and the layers; the manifests
        // after what they describe; release.json last of all.
        let order = files.filter { $0.path != "manifest.json" && !$0.path.hasPrefix("layers/") }
            + files.filter { $0.path.hasPrefix("layers/") && $0.path.hasSuffix(".squashfs") }
            + files.filter { $0.path.hasPrefix("layers/") && !$0.path.hasSuffix(".squashfs") }
            + files.filter { $0.path == "manifest.json" }
        for file in order {
            steps.append(.fetch(file, from: request.source.location(file.path), to: incoming + "/" + file.path))
        }
        steps.append(.writeFile(incoming + "/" + ReleaseManifest.fileName, bytes: request.releaseBytes))
        if files.contains(where: { $0.path.hasPrefix("layers/") }) { steps.append(.syncDirectory(incoming + "/layers")) }
        steps += [
            .syncDirectory(incoming),
            .rename(incoming, to: final),
            .syncDirectory(medium.root),
            .editEnvironment(medium.grubenv, EnvironmentChange(set: [(SlotState.tryName, target.rawValue)], unset: [SlotState.failedName])),
            .record(UpgradeRecord(time: request.time, action: .upgrade, from: (request.booted, request.runningVersion),
                                  to: (target, request.release.version), release: Hex.encode(SHA256Digest.of(request.releaseBytes)),
                                  detail: "from \(request.source)"), to: medium.logs),
            .unmount(medium.mount.target),
        ]
        return steps
    }

    /// A healthy try: the slot becomes the good one.
    public static func markGood(booted: Slot, version: String, previous: (Slot, String), time: Int64, detail: String,
                                medium: SlotMedium) -> [UpgradeStep] {
        [.makeDirectory(medium.mount.target), .mount(medium.mount),
         .editEnvironment(medium.grubenv, EnvironmentChange(set: [(SlotState.goodName, booted.rawValue)],
                                                            unset: [SlotState.tryingName, SlotState.failedName])),
         .record(UpgradeRecord(time: time, action: .markedGood, from: previous, to: (booted, version), detail: detail), to: medium.logs),
         .unmount(medium.mount.target)]
    }

    /// A try that failed (on this boot, or one that never reached its check):
    /// the good slot stays, the reason is kept.
    public static func tryFailed(tried: (Slot, String), good: (Slot, String), time: Int64, reason: String,
                                 medium: SlotMedium) -> [UpgradeStep] {
        [.makeDirectory(medium.mount.target), .mount(medium.mount),
         .editEnvironment(medium.grubenv, EnvironmentChange(set: [(SlotState.failedName, tried.0.rawValue)], unset: [SlotState.tryingName])),
         .record(UpgradeRecord(time: time, action: .tryFailed, from: good, to: tried, detail: reason), to: medium.logs),
         .unmount(medium.mount.target)]
    }

    /// By hand: the slot that is not the good one (checked whole before)
    /// becomes it; a second rollback comes back.
    public static func rollback(booted: (Slot, String), to other: (Slot, String), release: String, time: Int64,
                                medium: SlotMedium) -> [UpgradeStep] {
        [.makeDirectory(medium.mount.target), .mount(medium.mount),
         .editEnvironment(medium.grubenv, EnvironmentChange(set: [(SlotState.goodName, other.0.rawValue)],
                                                            unset: [SlotState.tryName, SlotState.tryingName, SlotState.failedName])),
         .record(UpgradeRecord(time: time, action: .rollback, from: booted, to: other, release: release, detail: "by hand"), to: medium.logs),
         .unmount(medium.mount.target)]
    }
}
