import Net
import Overlay
import SpiritCore

/// Where a source keeps its add-on layers (`layers/`) and model packs
/// (`models/`): beside the image, on every medium (a CROM_SPIRIT stick, the
/// parasite folder, an HTTP base URL). The boot stacks the layers
/// `crom.layers=` chooses; `spirit layer add --from` and `spirit ai pull
/// --from` read the same shelves at run time.
public typealias LayerShelf = Shelf<LayerManifest>
public typealias ModelShelf = Shelf<ModelManifest>

public struct Shelf<Item: ShelfItem>: Sendable {
    public static var directory: String { Item.directory }
    /// On a server, where directories cannot be listed: the names of its
    /// items, one a line. `make iso` and `make netboot` write it.
    public static var index: String { "index" }

    /// Where, for messages: `/dev/vda (ext4, CROM_SPIRIT)/layers`.
    public var origin: String
    /// The names of the items the shelf holds.
    public var names: @Sendable () throws -> [String]
    /// An item's manifest, parsed (not yet checked).
    public var manifest: @Sendable (String) throws -> Item
    /// An item's file as a stream of the size its manifest says.
    public var open: @Sendable (Item) throws -> any ImageStream

    public init(origin: String, names: @escaping @Sendable () throws -> [String],
                manifest: @escaping @Sendable (String) throws -> Item,
                open: @escaping @Sendable (Item) throws -> any ImageStream) {
        self.origin = origin
        self.names = names
        self.manifest = manifest
        self.open = open
    }

    /// `DIRECTORY/layers/` on mounted media or a local folder.
    public static func folder(_ mediaDirectory: String, origin: String) -> Shelf {
        let path = mediaDirectory + "/" + directory
        return Shelf(
            origin: origin + "/" + directory,
            names: {
                Kernel.directoryEntries(path).compactMap { entry in
                    guard entry.kind == .regular, entry.name.hasSuffix(".json") else { return nil }
                    let name = String(entry.name.dropLast(".json".count))
                    return (try? Item.checkName(name)) == nil ? nil : name
                }.sorted()
            },
            manifest: { name in
                let file = path + "/" + Item.manifestFile(name)
                guard Kernel.exists(file) else { throw SpiritError("there is no \(Item.kind) \(name) in \(origin)/\(directory) (no \(Item.manifestFile(name)))") }
                let bytes = try Kernel.readFile(file)
                guard bytes.count <= MediaFiles.manifestLimit else { throw SpiritError("\(file) is \(bytes.count) bytes, more than a manifest can be") }
                do {
                    return try Item.parse(bytes)
                } catch {
                    throw SpiritError("\(file): \(error)")
                }
            },
            open: { item in try FileImageStream(path: path + "/" + item.file) })
    }

    /// `BASE/layers/` on an HTTP server: the names from `layers/index` (a
    /// server without one has no layers), each manifest and file by URL.
    public static func http(_ base: HTTPURL, idleMillis: Int, console: Console) -> Shelf {
        let shelf = base.appending(directory + "/")
        return Shelf(
            origin: shelf.description,
            names: {
                let url = shelf.appending(index)
                let bytes: [UInt8]
                do {
                    bytes = try HTTPClient.open(url, idleMillis: idleMillis).readAll(limit: MediaFiles.manifestLimit)
                } catch let error as HTTPError where error.status == 404 {
                    return []
                }
                return String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
                    .map { String($0).trimmed }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
            },
            manifest: { name in
                try Item.checkName(name)
                let url = shelf.appending(Item.manifestFile(name))
                let bytes: [UInt8]
                do {
                    bytes = try HTTPSource.withRetries(console: console) { () throws(HTTPError) -> [UInt8] in
                        try HTTPClient.open(url, idleMillis: idleMillis).readAll(limit: MediaFiles.manifestLimit)
                    }
                } catch let error as HTTPError where error.status == 404 {
                    throw SpiritError("there is no \(Item.kind) \(name) at \(shelf) (\(url) answered 404)")
                }
                do {
                    return try Item.parse(bytes)
                } catch {
                    throw SpiritError("\(url): \(error)")
                }
            },
            open: { item in
                HTTPImageStream(url: shelf.appending(item.file), size: item.size, idleMillis: idleMillis, console: console)
            })
    }
}
