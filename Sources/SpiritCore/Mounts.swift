import SystemPackage

/// mount(2) flags, with the names `mount -o` uses for them.
public struct MountFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }

    // The values of <sys/mount.h>; part of the kernel's ABI.
    public static let readOnly = MountFlags(rawValue: 1)
    public static let noSUID = MountFlags(rawValue: 2)
    public static let noDev = MountFlags(rawValue: 4)
    public static let noExec = MountFlags(rawValue: 8)
    public static let remount = MountFlags(rawValue: 32)
    public static let bind = MountFlags(rawValue: 4096)
    public static let move = MountFlags(rawValue: 8192)
    public static let recursive = MountFlags(rawValue: 16384)
    public static let relatime = MountFlags(rawValue: 1 << 21)

    static let names: [(MountFlags, String)] = [
        (.readOnly, "ro"), (.noSUID, "nosuid"), (.noDev, "nodev"), (.noExec, "noexec"),
        (.remount, "remount"), (.bind, "bind"), (.move, "move"), (.recursive, "rec"), (.relatime, "relatime"),
    ]

    /// The flags as `mount -o` options, in a fixed order.
    public var optionNames: [String] {
        Self.names.filter { contains($0.0) }.map(\.1)
    }
}

/// One mount, as data: it can be carried out (`Kernel.mount`), printed as
/// the shell command it stands for, and checked by a test without root.
public struct MountSpec: Sendable, Equatable, CustomStringConvertible {
    public var source: String
    public var target: String
    public var fstype: String
    public var flags: MountFlags
    public var data: String?

    public init(source: String, target: String, fstype: String, flags: MountFlags = [], data: String? = nil) {
        self.source = source
        self.target = target
        self.fstype = fstype
        self.flags = flags
        self.data = data
    }

    /// All options, flags first, then the filesystem's own: `nosuid,nodev,mode=0755`.
    public var options: String {
        (flags.optionNames + (data.map { [$0] } ?? [])).joined(separator: ",")
    }

    /// `squashfs, ro` — the type and the options, for messages.
    public var optionSummary: String {
        options.isEmpty ? fstype : "\(fstype), \(options)"
    }

    /// The shell command this mount stands for.
    public var description: String {
        var words = ["mount"]
        if !fstype.isEmpty { words += ["-t", fstype] }
        if !options.isEmpty { words += ["-o", options] }
        words += [source, target]
        return words.joined(separator: " ")
    }

    /// What a user can do about a failed mount, where the errno says it.
    func hint(_ errno: Errno) -> String? {
        switch errno {
        case .operationNotSupportedByDevice: "is the \(fstype) module loaded?"
        case .noSuchFileOrDirectory: "do \(source) and \(target) exist?"
        case .resourceBusy: "is something already mounted on \(target)?"
        default: nil
        }
    }
}

/// The virtual filesystems every stage-1 boot mounts first, in order.
/// /proc is usually already there: the early C constructor mounts it before
/// the Swift runtime starts.
public enum EarlyMounts {
    public static let table: [MountSpec] = [
        MountSpec(source: "proc", target: "/proc", fstype: "proc", flags: [.noSUID, .noDev, .noExec]),
        MountSpec(source: "sysfs", target: "/sys", fstype: "sysfs", flags: [.noSUID, .noDev, .noExec]),
        MountSpec(source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: [.noSUID], data: "mode=0755"),
        MountSpec(source: "devpts", target: "/dev/pts", fstype: "devpts", flags: [.noSUID, .noExec], data: "gid=5,mode=0620,ptmxmode=0666"),
        MountSpec(source: "tmpfs", target: "/dev/shm", fstype: "tmpfs", flags: [.noSUID, .noDev], data: "mode=1777"),
        MountSpec(source: "tmpfs", target: "/run", fstype: "tmpfs", flags: [.noSUID, .noDev], data: "mode=0755"),
    ]
}

/// One line of /proc/self/mountinfo.
public struct MountInfoEntry: Sendable, Equatable {
    public var id: Int
    public var parentID: Int
    public var mountPoint: String
    public var fstype: String
    public var source: String
    public var options: String

    /// Parses /proc/self/mountinfo (proc(5)): `36 35 98:0 /mnt1 /mnt2 rw,noatime
    /// master:1 - ext3 /dev/root rw,errors=continue`. Lines that do not parse
    /// are skipped. Octal escapes (`\040` for a space) are decoded.
    public static func parse(_ text: String) -> [MountInfoEntry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10, let id = Int(fields[0]), let parent = Int(fields[1]),
                  let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 2 < fields.count else { return nil }
            return MountInfoEntry(id: id, parentID: parent, mountPoint: unescape(fields[4]),
                                  fstype: String(fields[dash + 1]), source: unescape(fields[dash + 2]),
                                  options: String(fields[5]))
        }
    }

    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        let utf8 = Array(field.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == 0x5C, i + 3 < utf8.count {
                let digits = utf8[(i + 1)...(i + 3)]
                if digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x37 }) {
                    bytes.append(digits.reduce(0) { $0 * 8 + ($1 - 0x30) })
                    i += 4
                    continue
                }
            }
            bytes.append(utf8[i])
            i += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
