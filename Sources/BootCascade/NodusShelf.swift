import Nodus
import Overlay
import SpiritCore

/// The names Nodus exports besides the image's SHA-256 and "".
public enum NodusExports {
    public static let manifest = "manifest"
    /// The image's block list (BlockHashes.encoded).
    public static let blocks = "blocks"
    /// The names of the layers a peer serves, one a line; `models` for its
    /// model packs.
    public static let layers = list(LayerManifest.self)
    public static let models = list(ModelManifest.self)

    /// A shelf's list export: its folder's name (`layers`, `models`).
    public static func list<Item: ShelfItem>(_: Item.Type) -> String { Item.directory }
    /// An item's file (`layer/NAME`, `model/NAME`).
    public static func item<Item: ShelfItem>(_: Item.Type, _ name: String) -> String { Item.kind + "/" + name }
    /// An item's manifest (`layer/NAME.json`, `model/NAME.json`).
    public static func itemManifest<Item: ShelfItem>(_: Item.Type, _ name: String) -> String {
        Item.kind + "/" + Item.manifestFile(name)
    }
}

/// What a shelf needs of a peer: a small export read whole (nil when the
/// peer has no export of that name), and a larger one as a stream of the
/// size its manifest says. Over NBD on a Spirit; a table in tests.
public struct NodusPeerExports: Sendable {
    public var origin: String
    public var readSmall: @Sendable (String) throws -> [UInt8]?
    public var open: @Sendable (_ export: String, _ size: Int64) throws -> any ImageStream

    public init(origin: String, readSmall: @escaping @Sendable (String) throws -> [UInt8]?,
                open: @escaping @Sendable (String, Int64) throws -> any ImageStream) {
        self.origin = origin
        self.readSmall = readSmall
        self.open = open
    }

    /// The peer at `address`, over NBD, a connection per export.
    public static func nbd(_ address: SocketAddress, idleMillis: Int) -> NodusPeerExports {
        NodusPeerExports(
            origin: "nodus peer \(address)",
            readSmall: { export in
                do {
                    return try NodusSource.readSmallExport(address, export, idleMillis: idleMillis)
                } catch is NBDUnknownExport {
                    return nil
                }
            },
            open: { export, size in try NodusSource.stream(address, export: export, size: size, idleMillis: idleMillis) })
    }

    /// The peers at `addresses` (serving the same image), each tried in
    /// turn: a peer that went away during the image's copy does not take
    /// the layers and model packs with it.
    public static func nbd(_ addresses: [SocketAddress], idleMillis: Int) -> NodusPeerExports {
        let peers = addresses.map { nbd($0, idleMillis: idleMillis) }
        guard peers.count > 1 else { return peers[0] }
        return NodusPeerExports(
            origin: peers[0].origin,
            readSmall: { export in try firstAnswer(peers) { try $0.readSmall(export) } },
            open: { export, size in try firstAnswer(peers) { try $0.open(export, size) } })
    }

    /// What the first peer that answers gives; the first peer's error if none does.
    public static func firstAnswer<T>(_ peers: [NodusPeerExports], _ body: (NodusPeerExports) throws -> T) throws -> T {
        var firstError: (any Error)?
        for peer in peers {
            do {
                return try body(peer)
            } catch {
                firstError = firstError ?? error
            }
        }
        throw firstError ?? SpiritError("no peer to read from")
    }
}

extension Shelf {
    /// The layers or model packs a peer serves (`spirit nodus serve
    /// --layers`, `--models`): the list from its `layers` or `models`
    /// export (a peer without one has none), each item and its manifest
    /// from their own exports.
    public static func nodus(_ address: SocketAddress, idleMillis: Int) -> Shelf {
        nodus(.nbd(address, idleMillis: idleMillis))
    }

    /// Several peers serving the same image, tried in turn.
    public static func nodus(_ addresses: [SocketAddress], idleMillis: Int) -> Shelf {
        nodus(.nbd(addresses, idleMillis: idleMillis))
    }

    public static func nodus(_ peer: NodusPeerExports) -> Shelf {
        Shelf(
            origin: peer.origin,
            names: {
                guard let bytes = try peer.readSmall(NodusExports.list(Item.self)) else { return [] }
                return String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).map { String($0).trimmed }.filter { !$0.isEmpty }
            },
            manifest: { name in
                try Item.checkName(name)
                guard let bytes = try peer.readSmall(NodusExports.itemManifest(Item.self, name)) else {
                    throw SpiritError("the \(peer.origin) serves no \(Item.kind) \(name)")
                }
                do {
                    return try Item.parse(bytes)
                } catch {
                    throw SpiritError("\(peer.origin), \(Item.kind) \(name): \(error)")
                }
            },
            open: { item in try peer.open(NodusExports.item(Item.self, item.name), item.size) })
    }
}

/// A folder of layers or model packs as `spirit nodus serve` offers it:
/// each item (NAME.json beside its file, as the boot, `spirit layer add`
/// and `spirit ai pull` leave them in RAM) checked against its manifest
/// like the image, exported as `layer/NAME` and `layer/NAME.json` (`model/…`)
/// with their list as `layers` (`models`), written beside them. An item
/// that does not match, or a file without its manifest, is not served and
/// its reason kept for the log: one bad pack never stops the server.
public struct NodusServedShelf: Sendable {
    public var exports: [NBDExport]
    /// The names served, sorted.
    public var names: [String]
    /// The names left out, each with why.
    public var refused: [(name: String, reason: String)]

    public init<Item: ShelfItem>(_: Item.Type, directory: String) throws {
        exports = []
        names = []
        refused = []
        let entries = Kernel.directoryEntries(directory).filter { $0.kind == .regular }.map(\.name)
        let manifests = Set(entries.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(".json".count)) })
        // A data file whose manifest is missing is said, not silently skipped.
        let suffix = Item.file("")
        let orphans = entries.filter { $0.hasSuffix(suffix) }.map { String($0.dropLast(suffix.count)) }.filter { !manifests.contains($0) }
        for name in orphans.sorted() {
            refused.append((name, "\(Item.file(name)) has no manifest (\(Item.manifestFile(name)))"))
        }
        for name in manifests.sorted() {
            do {
                try Item.checkName(name)
                let manifestPath = directory + "/" + Item.manifestFile(name)
                let item = try Item.parse(try Kernel.readFile(manifestPath))
                guard item.name == name else { throw SpiritError("its manifest names the \(Item.kind) \(item.name)") }
                let path = directory + "/" + item.file
                guard Kernel.exists(path) else { throw SpiritError("its \(item.file) is missing") }
                let measured = try ImageCopy.measure(path, expectedSize: item.size)
                try item.verifyFile(size: measured.size, sha256: measured.sha256)
                exports.append(try NBDExport(path: path, names: [NodusExports.item(Item.self, name)],
                                             description: "the \(Item.kind) \(name), SHA-256 \(measured.sha256.prefix(12))"))
                exports.append(try NBDExport(path: manifestPath, names: [NodusExports.itemManifest(Item.self, name)],
                                             description: "the signed manifest of the \(Item.kind) \(name)"))
                names.append(name)
            } catch {
                refused.append((name, "\(error)"))
            }
        }
        guard !names.isEmpty else { return }
        let index = directory + "/" + Shelf<Item>.index
        try Kernel.writeFileAtomically(index, names.map { $0 + "\n" }.joined())
        exports.append(try NBDExport(path: index, names: [NodusExports.list(Item.self)], description: "the \(Item.directory) served here"))
    }
}
