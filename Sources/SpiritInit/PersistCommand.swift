import BootCascade
import Glibc
import Overlay
import Persistence
import SpiritCommands
import SpiritCore

/// `spirit persist status|diff|commit|restore`: the writable layer's
/// changes under the configured paths, kept as one archive on the boot
/// medium (see Persistence). The work is in the Persistence target; this
/// file reads the arguments and finds the medium again by its UUID.
enum PersistCommand {
    static let usage = "persist status|diff|commit|restore [--paths /etc,/root] [--passphrase-file FILE]"

    static func run(_ arguments: [String]) -> Int32 {
        guard let verb = arguments.first, ["status", "diff", "commit", "restore"].contains(verb) else {
            return Usage.fail("persist needs status, diff, commit or restore: \(usage)")
        }
        let console = Console.tool
        return exitStatus {
            let options = try Options(Array(arguments.dropFirst()))
            guard options.words.isEmpty, Set(options.named.keys).isSubset(of: ["paths", "passphrase-file"]) else {
                throw UsageError(message: "unexpected arguments: \(usage)")
            }
            let selection = try PersistStore.selection(paths: options.named["paths"].map { $0.split(separator: ",").map(String.init) })
            let passphrase = try options.named["passphrase-file"].map(readPassphrase)
            let medium = try PersistStore.bootMedium()
            let refusal = PersistMedium.refusal(medium)
            let readable = refusal == nil || medium.fstype == "iso9660"
            let store = PersistStore(medium: medium, device: try medium.currentDevice(), console: console)
            let saved = readable ? try store.readArchive() : nil
            let current = { () throws -> [PersistEntry] in
                let (entries, skipped) = try UpperScan(upper: RootLayout().upper, selection: selection).entries()
                if !skipped.isEmpty { console.warning("persist: not kept (sockets, pipes, devices): " + skipped.joined(separator: " ")) }
                return entries
            }
            switch verb {
            case "status":
                print("boot medium: \(medium.description)" + (refusal.map { "; no commit: " + $0 } ?? ", writable"))
                if let saved {
                    let path = PersistMedium.archivePath(medium)
                    do {
                        let trailer = try PersistArchive.check(saved)
                        print("archive: \(path), \(saved.count) bytes, committed \(utcText(trailer.time))"
                              + (trailer.encrypted ? ", encrypted (ChaCha20-Poly1305, scrypt)" : ""))
                    } catch {
                        print("archive: \(path), \(saved.count) bytes: \(error); the next boot ignores it, the next commit replaces it")
                    }
                } else {
                    print("archive: none" + (readable ? "" : " (the medium is not read at run time)"))
                }
                print("at boot: " + ((try? Kernel.readText(RunFiles.persistReport))?.trimmed ?? "nothing restored"))
                print("paths: \(selection)")
                print("would save: \(persistSummary(try current()))")
            case "diff":
                let before = try saved.map { try PersistArchive.open($0, passphrase: passphrase).1 } ?? []
                for change in PersistChange.compare(saved: before, current: try current()) { print(change) }
            case "commit":
                if let refusal { throw SpiritError("unable to commit: \(refusal)") }
                let entries = try current()
                try store.commit(try PersistArchive.seal(entries, time: Int64(time(nil)), passphrase: passphrase))
                console.info("persist: saved \(persistSummary(entries)) of \(selection) to \(medium.description)"
                             + (passphrase == nil ? "" : ", encrypted"))
            default:
                guard let saved else { throw SpiritError("no \(PersistArchive.fileName) on \(medium.description) to restore") }
                let (_, entries) = try PersistArchive.open(saved, passphrase: passphrase)
                let (applied, failures) = ArchiveApply(root: "/").apply(entries)
                for failure in failures { console.warning("persist: \(failure)") }
                console.info("persist: restored \(applied) of \(entries.count) entries from \(medium.description)")
                if !failures.isEmpty { throw SpiritError("\(failures.count) entries could not be restored") }
            }
        }
    }

    /// The passphrase: the file's first line.
    static func readPassphrase(_ path: String) throws -> [UInt8] {
        let line = Array(try Kernel.readFile(path).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).first ?? [])
        guard !line.isEmpty else { throw UsageError(message: "\(path): the passphrase file is empty") }
        return line
    }
}
