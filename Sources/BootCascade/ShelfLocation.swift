import Net
import Nodus
import SpiritCore

/// Where `spirit layer add --from` and `spirit ai pull --from` take an
/// item from, one parser for both: `peer` (the best Nodus peer that answers
/// discovery), `nodus://ADDR[:PORT]`, an http:// URL (the base of the media
/// files, or its layers/ or models/ folder), or a directory (holding
/// layers/ or models/, or that folder itself).
public enum ShelfLocation: Sendable, Equatable {
    case peer
    case nodus(SocketAddress)
    /// The base URL of the media files.
    case http(HTTPURL)
    /// The directory holding the item's folder.
    case folder(String)

    /// `text` for a shelf of `directory` (`layers`, `models`); `exists`
    /// looks at the file system (a fixture tree in tests).
    public static func parse(_ text: String, directory: String, exists: (String) -> Bool) throws -> ShelfLocation {
        if text == "peer" { return .peer }
        if text.hasPrefix("nodus://") {
            return .nodus(try SocketAddress.parse(String(text.dropFirst("nodus://".count)), defaultPort: BootConfig.defaultNBDPort))
        }
        if text.hasPrefix("http://") || text.hasPrefix("https://") {
            var url = try HTTPURL.parse(text)
            let path = url.target.prefix { $0 != "?" }
            for suffix in ["/" + directory, "/" + directory + "/"] where path.hasSuffix(suffix) {
                url.target = String(path.dropLast(suffix.count)) + "/"
            }
            return .http(url)
        }
        let trimmed = text.hasSuffix("/") && text.count > 1 ? String(text.dropLast()) : text
        guard exists(trimmed) else {
            throw SpiritError("--from \(text): no such directory (expected a URL, a directory, peer or nodus://ADDR)")
        }
        if exists(trimmed + "/" + directory) { return .folder(trimmed) }
        if trimmed.hasSuffix("/" + directory) {
            let parent = String(trimmed.dropLast(directory.count + 1))
            return .folder(parent.isEmpty ? "/" : parent)
        }
        throw SpiritError("--from \(text): no \(directory)/ folder in it")
    }

    /// The shelf there; `.peer` seeks on every interface first.
    public func shelf<Item: ShelfItem>(_: Item.Type = Item.self, console: Console) throws -> Shelf<Item> {
        let idleMillis = 10_000
        switch self {
        case .peer:
            let targets = DiscoverySeeker.broadcastTargets()
            guard !targets.isEmpty else { throw SpiritError("--from peer: no network interface with a broadcast address to look for peers on") }
            let offers = try DiscoverySeeker.seek(targets: targets.map(\.address), windowMilliseconds: NodusSource.discoveryWindowMillis,
                                                  quietMilliseconds: NodusSource.discoveryQuietMillis)
            guard let best = Discovery.ranked(offers).first else {
                throw SpiritError("--from peer: no Nodus peer answered within \(NodusSource.discoveryWindowMillis) ms")
            }
            return .nodus(try SocketAddress(host: best.host, port: best.port), idleMillis: idleMillis)
        case .nodus(let address):
            return .nodus(address, idleMillis: idleMillis)
        case .http(let url):
            return .http(url, idleMillis: idleMillis, console: console)
        case .folder(let path):
            return .folder(path, origin: path)
        }
    }
}
