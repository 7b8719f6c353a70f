/// One thing the archive keeps: a path under / and what it is. The paths
/// are relative (`etc/hostname`), without `.` or `..` parts, and an
/// archive lists parents before their children.
public struct PersistEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// `opaque`: overlayfs's trusted.overlay.opaque, a directory that
        /// hides everything the image has under it (it was removed and made
        /// again).
        case directory(opaque: Bool)
        case file([UInt8])
        case symbolicLink(String)
        /// The path was deleted: overlayfs's whiteout, a character device
        /// 0/0 in the upper layer, kept as such in the archive.
        case whiteout
    }

    public var path: String
    public var kind: Kind
    /// Permission bits, setuid/setgid/sticky included.
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    /// Whole seconds since 1970.
    public var modificationTime: Int64

    public init(path: String, kind: Kind, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0, modificationTime: Int64 = 0) {
        self.path = path
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.modificationTime = modificationTime
    }

    /// `file`, `directory`, `link`, `deletion`: for what `status` and `diff` print.
    public var kindName: String {
        switch kind {
        case .directory(let opaque): opaque ? "directory, replacing the image's" : "directory"
        case .file: "file"
        case .symbolicLink: "link"
        case .whiteout: "deletion"
        }
    }

    /// The same content and metadata, the time aside (a file only touched
    /// is not a change worth a line).
    public func sameContent(as other: PersistEntry) -> Bool {
        path == other.path && kind == other.kind && mode == other.mode && uid == other.uid && gid == other.gid
    }

    /// The bytes of its content (a file's), for totals.
    public var contentBytes: Int {
        if case .file(let bytes) = kind { return bytes.count }
        return 0
    }

    /// Checks a path from an archive: relative, no empty, `.` or `..` part,
    /// no NUL. A path that climbs out of the root would write anywhere.
    public static func isSafePath(_ path: String) -> Bool {
        guard !path.isEmpty, !path.hasPrefix("/"), !path.utf8.contains(0) else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
    }
}
