/// The layers a running Spirit has in RAM, in /run/spirit/layers.json:
/// written by the boot worker for the layers it stacked, and by `spirit
/// layer add|remove` for the ones merged at run time.
public struct LayerState: Sendable, Equatable {
    /// How a layer joined the running system.
    public enum Stacking: String, Sendable {
        /// A lower layer of the root overlay (crom.layers=): it stays until
        /// the next boot.
        case boot
        /// Merged over /usr by `spirit layer add`: `spirit layer remove` takes it away.
        case run
    }

    public struct Entry: Sendable, Equatable {
        public var name: String
        public var version: String
        public var sha256: String
        public var size: Int64
        /// Where it came from: `/dev/vda (ext4, CROM_SPIRIT)/layers`, a URL.
        public var origin: String
        public var stacking: Stacking
        /// CLOCK_REALTIME seconds when it joined.
        public var added: Int64

        public init(name: String, version: String, sha256: String, size: Int64, origin: String, stacking: Stacking, added: Int64) {
            self.name = name
            self.version = version
            self.sha256 = sha256
            self.size = size
            self.origin = origin
            self.stacking = stacking
            self.added = added
        }

        public init(_ manifest: LayerManifest, origin: String, stacking: Stacking, added: Int64) {
            self.init(name: manifest.name, version: manifest.version, sha256: manifest.sha256, size: manifest.size,
                      origin: origin, stacking: stacking, added: added)
        }

        var json: String {
            "{\"name\":\(jsonString(name)),\"version\":\(jsonString(version)),\"sha256\":\(jsonString(sha256)),"
                + "\"size\":\(size),\"origin\":\(jsonString(origin)),\"stacking\":\(jsonString(stacking.rawValue)),\"added\":\(added)}"
        }
    }

    public var entries: [Entry]

    public init(entries: [Entry] = []) { self.entries = entries }

    public var json: String {
        "{\"layers\":[" + entries.map(\.json).joined(separator: ",") + "]}\n"
    }

    public subscript(name: String) -> Entry? { entries.first { $0.name == name } }

    public static func parse(_ bytes: [UInt8]) throws(SpiritError) -> LayerState {
        let document: JSONValue
        do {
            document = try JSONReader.parse(bytes)
        } catch {
            throw SpiritError("the layer state is not JSON: \(error)")
        }
        guard case .array(let list)? = document["layers"] else { throw SpiritError("the layer state has no \"layers\" list") }
        var entries: [Entry] = []
        for item in list {
            guard let name = item["name"]?.string, let version = item["version"]?.string, let sha256 = item["sha256"]?.string,
                  let size = item["size"]?.integer, let origin = item["origin"]?.string,
                  let stacking = item["stacking"]?.string.flatMap(Stacking.init(rawValue:)), let added = item["added"]?.integer
            else { throw SpiritError("the layer state has an entry without name, version, sha256, size, origin, stacking or added") }
            entries.append(Entry(name: name, version: version, sha256: sha256, size: size, origin: origin, stacking: stacking, added: added))
        }
        return LayerState(entries: entries)
    }

    /// The state on this machine; none yet is an empty state.
    public static func current(path: String = RunFiles.layers) throws -> LayerState {
        guard Kernel.exists(path) else { return LayerState() }
        return try parse(try Kernel.readFile(path))
    }

    public func save(path: String = RunFiles.layers) throws {
        try Kernel.writeFileAtomically(path, json)
    }
}
