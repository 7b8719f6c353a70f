import BootCascade
import Net
import Overlay
import SpiritCore
import SystemPackage

/// Runs the steps of an UpgradePlan: the I/O shell of the upgrade. A step
/// that fails stops the run; the medium is unmounted and a half-written
/// slot folder (`X.new`) removed, and nothing the plan had not yet reached
/// (GRUB's environment above all) has changed.
public struct UpgradeRunner {
    let console: Console
    let idleMillis: Int

    public init(console: Console, idleMillis: Int = 10_000) {
        self.console = console
        self.idleMillis = idleMillis
    }

    public func run(_ steps: [UpgradeStep]) throws {
        var mounted: String?
        var incoming: [String] = []
        do {
            for step in steps {
                try run(step)
                switch step {
                case .mount(let spec): mounted = spec.target
                case .unmount: mounted = nil
                case .makeDirectory(let path) where path.hasSuffix(".new"): incoming.append(path)
                case .rename(let from, _): incoming.removeAll { $0 == from }
                default: break
                }
            }
        } catch {
            for path in incoming { try? Kernel.removeAll(path) }
            if let mounted { _ = try? Kernel.unmount(mounted) }
            throw error
        }
    }

    func run(_ step: UpgradeStep) throws {
        switch step {
        case .makeDirectory(let path): try Kernel.makeDirectory(path, parents: true)
        case .mount(let spec): try Kernel.mount(spec)
        case .editEnvironment(let path, let change):
            let before = try GrubEnvironment(parsing: try Kernel.readFile(path), origin: path)
            let after = change.applied(to: before)
            try Kernel.writeFile(path + ".new", bytes: try after.rendered(origin: path), sync: true)
            try Kernel.renameFile(path + ".new", to: path)
            try Kernel.syncPath(String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]))
        case .removeTree(let path): try Kernel.removeAll(path)
        case .checkRoom(let path, let bytes, let reclaiming):
            let room = try Kernel.fileSystemStats(path).availableBytes + Self.treeBytes(reclaiming)
            guard room >= bytes else {
                throw SpiritError("the medium has \(Self.size(room)) free, the release needs \(Self.size(bytes)); nothing of it was written "
                                  + "(a larger stick, or fewer layers in the release)")
            }
        case .fetch(let file, let from, let to):
            console.info("upgrade: writing \(to) (\(Self.size(file.size))) from \(from)")
            var stream: any ImageStream = from.hasPrefix("http://")
                ? HTTPImageStream(url: try HTTPURL.parse(from), size: file.size, idleMillis: idleMillis, console: console)
                : try FileImageStream(path: from)
            defer { stream.close() }
            let copied: ImageCopy.Result
            do {
                copied = try ImageCopy.copy(from: &stream, to: to, expectedSize: file.size)
            } catch let error as SystemError where error.errno == .noSpace {
                throw SpiritError("\(to): the medium is full (\(error.operation)); the release was not armed")
            }
            do {
                try file.verify(size: copied.size, sha256: copied.sha256)
            } catch {
                throw SpiritError("\(from): \(error); refused")
            }
            try Kernel.syncPath(to)
        case .writeFile(let path, let bytes): try Kernel.writeFile(path, bytes: bytes, sync: true)
        case .rename(let from, let to):
            try Kernel.renameFile(from, to: to)
        case .syncDirectory(let path): try Kernel.syncPath(path)
        case .record(let record, let logs):
            for log in logs {
                try Kernel.writeFile(log, record.json + "\n", append: true)
                try Kernel.syncPath(log)
            }
        case .unmount(let target): try Kernel.unmount(target)
        }
    }

    /// The bytes of the files in a folder and its subfolders (a slot).
    static func treeBytes(_ path: String) -> Int64 {
        Kernel.directoryEntries(path).reduce(0) { total, entry in
            let child = path + "/" + entry.name
            return total + (entry.kind == .directory ? treeBytes(child) : Kernel.fileSize(child) ?? 0)
        }
    }

    static func size(_ bytes: Int64) -> String {
        bytes >= 1 << 20 ? "\(bytes >> 20) MiB" : bytes >= 1 << 10 ? "\(bytes >> 10) KiB" : "\(bytes) bytes"
    }
}
