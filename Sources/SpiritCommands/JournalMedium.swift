import BootCascade
import Glibc
import Persistence
import SpiritCore

/// The journal outlives the RAM it is kept in: PID 1 writes it to the boot
/// medium at shutdown when that is a disk Spirit writes (the ext4 or vfat
/// stick persistence uses), as `spirit.journal` beside `spirit.persist`;
/// the next boot from that medium reads it, checks it, and records its
/// head in its own journal (`boot.previous`), so the two boots' chains are
/// linked by a hash.
enum JournalMedium {
    static let fileName = "spirit.journal"

    /// Writes journal.1.jsonl and journal.jsonl (one chain: a rotation
    /// links the new file to the old) to the medium as persistence writes
    /// its archive: a new file, fsync, rename, fsync of the directory, so
    /// that a power cut leaves the old journal or the new one. Returns the
    /// line for the console; nil when the medium is not one to write to.
    static func save(_ journal: JournalFile, medium: BootMedium) -> String? {
        guard PersistMedium.refusal(medium) == nil, let fstype = medium.fstype else { return nil }
        var mounted = false
        journal.append("journal.save", [("medium", medium.description), ("file", (medium.directory.isEmpty ? "" : medium.directory + "/") + fileName)])
        do {
            var bytes: [UInt8] = []
            if Kernel.exists(journal.rotatedPath) { bytes = try Kernel.readFile(journal.rotatedPath) }
            bytes += try Kernel.readFile(journal.path)
            let check = Journal.verify(bytes)
            let device = try medium.currentDevice()
            try Kernel.makeDirectory(PersistMedium.mountPoint, parents: true)
            try Kernel.mount(PersistMedium.mount(device: device, fstype: fstype, readWrite: true))
            mounted = true
            let directory = medium.directory.isEmpty ? PersistMedium.mountPoint : PersistMedium.mountPoint + "/" + medium.directory
            let path = directory + "/" + fileName
            try Kernel.writeFile(path + ".new", bytes: bytes, sync: true)
            try Kernel.renameFile(path + ".new", to: path)
            try Kernel.syncPath(directory)
            try Kernel.unmount(PersistMedium.mountPoint)
            return "journal saved to \(medium.description) (\(check.records) records, head \(check.head.prefix(16)))"
        } catch {
            if mounted { try? Kernel.unmount(PersistMedium.mountPoint) }
            return "journal not saved to \(medium.description): \(error)"
        }
    }

    /// The last boot's journal on the medium, checked: the fields of this
    /// boot's `boot.previous` record, and a line for the console; nil when
    /// the medium has none.
    static func previous(mediaDirectory: String) -> (fields: [(String, String)], line: String)? {
        let path = mediaDirectory + "/" + fileName
        guard let bytes = try? Kernel.readFile(path) else { return nil }
        let check = Journal.verify(bytes, file: path)
        let verdict = check.problem.map { "does not check out: \($0)" } ?? "checks out"
        return ([("file", path), ("records", "\(check.records)"), ("head", check.head), ("check", check.problem.map { "\($0)" } ?? "whole")],
                "journal: the last boot's, \(check.records) records with head \(check.head.prefix(16)), \(verdict)")
    }
}
