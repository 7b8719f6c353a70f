import SpiritCore

/// What `spirit persist commit` saves: the paths under / whose changes are
/// kept (`/etc` and `/root` unless /etc/spirit/persist.toml or `--paths`
/// says otherwise), less the excluded ones.
///
///     # /etc/spirit/persist.toml
///     paths = ["/etc", "/root", "/home"]
///     exclude = ["/root/.cache"]
public struct PersistSelection: Sendable, Equatable, CustomStringConvertible {
    public static let configFile = "/etc/spirit/persist.toml"
    public static let defaultPaths = ["/etc", "/root"]

    /// Relative to / (`etc`, `root/notes`), without duplicates or paths
    /// inside another one.
    public private(set) var paths: [String]
    public private(set) var exclude: [String]

    public init(paths: [String], exclude: [String] = []) throws(SpiritError) {
        self.paths = Self.outermost(try paths.map(Self.normalize))
        self.exclude = try exclude.map(Self.normalize)
    }

    /// The selection a persist.toml file asks for; every field is optional.
    public static func parse(_ file: ConfigFile) throws(ConfigError) -> PersistSelection {
        for entry in file.entries where entry.key != "paths" && entry.key != "exclude" {
            throw file.error(entry, "unknown field (persist.toml has paths and exclude)")
        }
        let paths = try file.strings("paths") ?? defaultPaths
        let exclude = try file.strings("exclude") ?? []
        do {
            return try PersistSelection(paths: paths, exclude: exclude)
        } catch {
            throw ConfigError(path: file.path, line: (file["paths"] ?? file["exclude"])?.line ?? 1, field: "paths", error.description)
        }
    }

    /// `/etc/` → `etc`; a path must be absolute, with no `.` or `..` part,
    /// and not / itself (saving every change of the root would save the
    /// whole running system's writes, logs and all).
    public static func normalize(_ path: String) throws(SpiritError) -> String {
        guard path.hasPrefix("/") else { throw SpiritError("\(path): a path to persist is absolute (/etc, /root)") }
        let parts = path.split(separator: "/")
        guard !parts.isEmpty else { throw SpiritError("/: the whole root cannot be persisted; name directories such as /etc and /root") }
        let relative = parts.joined(separator: "/")
        guard PersistEntry.isSafePath(relative) else { throw SpiritError("\(path): no '.' or '..' in a path to persist") }
        return relative
    }

    static func outermost(_ paths: [String]) -> [String] {
        let unique = Array(Set(paths)).sorted()
        return unique.filter { path in !unique.contains { $0 != path && isInside(path, $0) } }
    }

    /// Whether `path` is `base` or under it.
    static func isInside(_ path: String, _ base: String) -> Bool {
        path == base || path.hasPrefix(base + "/")
    }

    /// Whether a path (relative, as in the archive) is saved.
    public func selects(_ path: String) -> Bool {
        paths.contains { Self.isInside(path, $0) } && !exclude.contains { Self.isInside(path, $0) }
    }

    /// The paths as a user writes them: `/etc /root`.
    public var description: String {
        paths.map { "/" + $0 }.joined(separator: " ") + (exclude.isEmpty ? "" : " (except " + exclude.map { "/" + $0 }.joined(separator: " ") + ")")
    }
}

/// What changed between the archive on the medium and what a commit would
/// save now.
public struct PersistChange: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case added, changed, removed }
    public var kind: Kind
    public var entry: PersistEntry

    /// `added /root/notes (file)`.
    public var description: String { "\(kind.rawValue) /\(entry.path) (\(entry.kindName))" }

    /// Added: only in `current`; changed: in both with other content,
    /// kind or metadata (the time aside); removed: only in `saved` (the
    /// next commit no longer keeps it). In path order.
    public static func compare(saved: [PersistEntry], current: [PersistEntry]) -> [PersistChange] {
        let old = Dictionary(saved.map { ($0.path, $0) }, uniquingKeysWith: { $1 })
        let new = Dictionary(current.map { ($0.path, $0) }, uniquingKeysWith: { $1 })
        var changes: [PersistChange] = []
        for entry in current {
            if let before = old[entry.path] {
                if !before.sameContent(as: entry) { changes.append(PersistChange(kind: .changed, entry: entry)) }
            } else {
                changes.append(PersistChange(kind: .added, entry: entry))
            }
        }
        for entry in saved where new[entry.path] == nil { changes.append(PersistChange(kind: .removed, entry: entry)) }
        return changes.sorted { $0.entry.path < $1.entry.path }
    }
}

/// A count of entries by kind and their bytes: `12 entries (9 files, 2
/// directories, 1 deletion), 4 KiB`.
public func persistSummary(_ entries: [PersistEntry]) -> String {
    var counts: [(String, Int)] = []
    for (name, plural) in [("file", "files"), ("directory", "directories"), ("link", "links"), ("deletion", "deletions")] {
        let n = entries.filter { $0.kindName.hasPrefix(name) }.count
        if n > 0 { counts.append((n == 1 ? name : plural, n)) }
    }
    let bytes = entries.reduce(0) { $0 + $1.contentBytes }
    let size = bytes >= 1 << 20 ? "\(bytes >> 20) MiB" : bytes >= 1 << 10 ? "\(bytes >> 10) KiB" : "\(bytes) bytes"
    return "\(entries.count) entr\(entries.count == 1 ? "y" : "ies")"
        + (counts.isEmpty ? "" : " (" + counts.map { "\($0.1) \($0.0)" }.joined(separator: ", ") + ")") + ", \(size)"
}
