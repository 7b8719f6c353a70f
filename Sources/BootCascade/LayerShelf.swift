import Net
import Overlay
import SpiritCore

/// Where a source keeps its add-on layers: `layers/` beside the image, on
/// every medium (a CROM_SPIRIT stick, the parasite folder, an HTTP base
/// URL). The boot stacks the ones `crom.layers=` chooses; `spirit layer add
/// --from` reads the same shelves at run time.
public struct LayerShelf: Sendable {
    public static let directory = "layers"
    /// On a server, where directories cannot be listed: the names of its
    /// layers, one a line. `make iso` and `make netboot` write it.
    public static let index = "index"

    /// Where, for messages: `/dev/vda (ext4, CROM_SPIRIT)/layers`.
    public var origin: String
    /// The names of the layers the shelf holds.
    public var names: @Sendable () throws -> [String]
    /// A layer's manifest, parsed (not yet checked).
    public var manifest: @Sendable (String) throws -> LayerManifest
    /// A layer's squashfs as a stream of the size its manifest says.
    public var open: @Sendable (LayerManifest) throws -> any ImageStream

    public init(origin: String, names: @escaping @Sendable () throws -> [String],
                manifest: @escaping @Sendable (String) throws -> LayerManifest,
                open: @escaping @Sendable (LayerManifest) throws -> any ImageStream) {
        self.origin = origin
        self.names = names
        self.manifest = manifest
        self.open = open
    }

    /// `DIRECTORY/layers/` on mounted media or a local folder.
    public static func folder(_ mediaDirectory: String, origin: String) -> LayerShelf {
        let path = mediaDirectory + "/" + directory
        return LayerShelf(
            origin: origin + "/" + directory,
            names: {
                Kernel.directoryEntries(path).compactMap { entry in
                    guard entry.kind == .regular, entry.name.hasSuffix(".json") else { return nil }
                    let name = String(entry.name.dropLast(".json".count))
                    return (try? LayerManifest.checkName(name)) == nil ? nil : name
                }.sorted()
            },
            manifest: { name in
                let file = path + "/" + LayerManifest.manifestFile(name)
                guard Kernel.exists(file) else { throw SpiritError("there is no layer \(name) in \(origin)/\(directory) (no \(LayerManifest.manifestFile(name)))") }
                let bytes = try Kernel.readFile(file)
                guard bytes.count <= MediaFiles.manifestLimit else { throw SpiritError("\(file) is \(bytes.count) bytes, more than a manifest can be") }
                do {
                    return try LayerManifest.parse(bytes)
                } catch {
                    throw SpiritError("\(file): \(error)")
                }
            },
            open: { layer in try FileImageStream(path: path + "/" + layer.image) })
    }

    /// `BASE/layers/` on an HTTP server: the names from `layers/index` (a
    /// server without one has no layers), each manifest and squashfs by URL.
    public static func http(_ base: HTTPURL, idleMillis: Int, console: Console) -> LayerShelf {
        let shelf = base.appending(directory + "/")
        return LayerShelf(
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
                try LayerManifest.checkName(name)
                let url = shelf.appending(LayerManifest.manifestFile(name))
                let bytes: [UInt8]
                do {
                    bytes = try HTTPSource.withRetries(console: console) { () throws(HTTPError) -> [UInt8] in
                        try HTTPClient.open(url, idleMillis: idleMillis).readAll(limit: MediaFiles.manifestLimit)
                    }
                } catch let error as HTTPError where error.status == 404 {
                    throw SpiritError("there is no layer \(name) at \(shelf) (\(url) answered 404)")
                }
                do {
                    return try LayerManifest.parse(bytes)
                } catch {
                    throw SpiritError("\(url): \(error)")
                }
            },
            open: { layer in
                HTTPImageStream(url: shelf.appending(layer.image), size: layer.size, idleMillis: idleMillis, console: console)
            })
    }
}
