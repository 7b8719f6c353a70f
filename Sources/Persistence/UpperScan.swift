import Glibc
import SpiritCore

/// Reads the changes of the writable layer: the overlay's upper directory
/// holds exactly what was written, created or deleted since the boot (a
/// deletion as a whiteout, a character device 0/0; a directory removed
/// and made again as an opaque directory).
public struct UpperScan {
    /// The overlay's upper directory (RootLayout().upper in a running Spirit).
    public var upper: String
    public var selection: PersistSelection

    public init(upper: String, selection: PersistSelection) {
        self.upper = upper
        self.selection = selection
    }

    /// Every selected entry, parents before children, in path order, and
    /// what was passed over (sockets, pipes, device nodes that are not
    /// whiteouts).
    public func entries() throws(SystemError) -> (entries: [PersistEntry], skipped: [String]) {
        var entries: [PersistEntry] = []
        var skipped: [String] = []
        for path in selection.paths {
            try visit(path, into: &entries, skipped: &skipped)
        }
        return (entries, skipped)
    }

    func visit(_ relative: String, into entries: inout [PersistEntry], skipped: inout [String]) throws(SystemError) {
        guard selection.selects(relative) else { return }
        let full = upper + "/" + relative
        guard let info = try? Kernel.status(full, followLinks: false) else { return }
        func entry(_ kind: PersistEntry.Kind) -> PersistEntry {
            PersistEntry(path: relative, kind: kind, mode: info.permissions, uid: info.ownerID, gid: info.groupID,
                         modificationTime: info.modificationTime)
        }
        if info.isDirectory {
            let opaque = Kernel.extendedAttribute(full, "trusted.overlay.opaque") == Array("y".utf8)
            entries.append(entry(.directory(opaque: opaque)))
            for name in Kernel.listDirectory(full) {
                try visit(relative + "/" + name, into: &entries, skipped: &skipped)
            }
        } else if info.isRegularFile {
            entries.append(entry(.file(try Kernel.readFile(full))))
        } else if info.isSymbolicLink, let target = Kernel.readLink(full) {
            entries.append(entry(.symbolicLink(target)))
        } else if info.isCharacterDevice && info.representedDevice == 0 {
            entries.append(entry(.whiteout))
        } else {
            skipped.append("/" + relative)
        }
    }
}

/// Applies an archive's entries to a root (/sysroot in stage 1, through
/// the overlay, so that overlayfs itself makes the whiteouts and opaque
/// directories): files written, links made, deletions carried out, owner,
/// mode and time set. Nothing is written through a link: an entry whose
/// parent is a link in the root is refused (a crafted archive could
/// otherwise write outside the root).
public struct ArchiveApply {
    public var root: String

    public init(root: String) { self.root = root }

    /// The root as a prefix: "" for /, so that paths read `/etc/x`.
    var prefix: String { root == "/" ? "" : root }

    /// Applies every entry; returns how many were applied, and the errors
    /// of those that could not be.
    public func apply(_ entries: [PersistEntry]) -> (applied: Int, failures: [String]) {
        var applied = 0
        var failures: [String] = []
        for entry in entries {
            do {
                try apply(entry)
                applied += 1
            } catch {
                failures.append("/\(entry.path): \(error)")
            }
        }
        return (applied, failures)
    }

    func apply(_ entry: PersistEntry) throws {
        let target = prefix + "/" + entry.path
        try checkParents(entry.path)
        let existing = try? Kernel.status(target, followLinks: false)
        switch entry.kind {
        case .whiteout:
            try Kernel.removeAll(target)
            return
        case .directory(let opaque):
            if let existing, !existing.isDirectory || opaque {
                // An opaque directory hides what the image has there: made anew.
                try Kernel.removeAll(target)
                try Kernel.makeDirectory(target, mode: 0o700)
            } else if existing == nil {
                try Kernel.makeDirectory(target, mode: 0o700)
            }
        case .file(let bytes):
            if let existing, !existing.isRegularFile { try Kernel.removeAll(target) }
            try Kernel.writeFile(target, bytes: bytes, mode: 0o600)
        case .symbolicLink(let destination):
            if existing != nil { try Kernel.removeAll(target) }
            try Kernel.makeSymbolicLink(target, to: destination)
        }
        try Kernel.setOwner(target, uid: entry.uid, gid: entry.gid)
        if case .symbolicLink = entry.kind { return }
        // After chown, which clears setuid and setgid.
        try Kernel.setMode(target, mode_t(entry.mode))
        if case .file = entry.kind { try Kernel.setModificationTime(target, seconds: entry.modificationTime) }
    }

    /// Every parent of `path` in the root is a directory, not a link.
    func checkParents(_ path: String) throws {
        var parent = prefix
        for part in path.split(separator: "/").dropLast() {
            parent += "/" + part
            if let info = try? Kernel.status(parent, followLinks: false) {
                guard info.isDirectory else { throw SpiritError("\(parent) is not a directory (a link or a file): not written through") }
            } else {
                try Kernel.makeDirectory(parent)
            }
        }
    }
}
