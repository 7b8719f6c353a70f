import BootCascade
import SpiritCommands
import SpiritCore

/// The shelf `--from` names for `spirit layer add` and `spirit ai pull`
/// (ShelfLocation: a URL, a directory, `peer`, `nodus://ADDR`); without
/// it, the HTTP server this Spirit booted from.
func shelf<Item: ShelfItem>(from: String?, for command: String, console: Console) throws -> Shelf<Item> {
    guard let text = from ?? bootSourceURL() else {
        throw UsageError(message: "\(command) needs --from URL|DIR|peer|nodus://ADDR: this Spirit did not boot over HTTP")
    }
    return try ShelfLocation.parse(text, directory: Item.directory, exists: Kernel.exists).shelf(console: console)
}

/// The base URL of an HTTP boot (RunFiles.bootMedium).
func bootSourceURL() -> String? {
    guard let bytes = try? Kernel.readFile(RunFiles.bootMedium), let medium = try? BootMedium(json: bytes) else { return nil }
    return medium.source == SourceName.http.rawValue ? medium.origin : nil
}
