import BootCascade
import Glibc
import Overlay
import SpiritCore

/// The model packs in RAM (/run/spirit/models, a tmpfs): pulled from a
/// shelf (a medium's models/ folder, an HTTP server), each checked like the
/// system image: the manifest's signature with the image's key first, then
/// the GGUF's size and SHA-256 while it is copied; anything that fails
/// leaves nothing behind.
public struct ModelStore {
    public let paths: AIPaths
    public var publicKeyPath = InitramfsFiles.signingPublicKey
    let console: Console

    public init(paths: AIPaths, console: Console) {
        self.paths = paths
        self.console = console
        self.publicKeyPath = paths.root + InitramfsFiles.signingPublicKey
    }

    /// The packs here, by name. A manifest that cannot be read is skipped
    /// with a warning naming it (the pack is then not offered).
    public func list() -> [ModelManifest] {
        Kernel.directoryEntries(paths.models).compactMap { entry -> ModelManifest? in
            guard entry.kind == .regular, entry.name.hasSuffix(".json") else { return nil }
            let path = paths.models + "/" + entry.name
            do {
                let manifest = try ModelManifest.parse(try Kernel.readFile(path))
                guard Kernel.exists(paths.model(manifest.name)) else { return nil }
                return manifest
            } catch {
                console.warning("ai: \(path): \(error); that pack is not offered")
                return nil
            }
        }.sorted { $0.name < $1.name }
    }

    public func manifest(_ name: String) throws -> ModelManifest {
        guard let found = list().first(where: { $0.name == name }) else {
            let names = list().map(\.name)
            throw SpiritError("there is no model \(name) here (\(names.isEmpty ? "no models; spirit ai pull adds one" : "models: " + names.joined(separator: ", ")))")
        }
        return found
    }

    /// Copies the pack `name` (nil: every pack the shelf offers that is not
    /// here yet) into RAM; returns what was added.
    @discardableResult
    public func pull(_ name: String?, from shelf: ModelShelf) throws -> [ModelManifest] {
        let wanted: [String]
        if let name {
            try ModelManifest.checkName(name)
            wanted = [name]
        } else {
            let here = Set(list().map(\.name))
            wanted = try shelf.names().filter { !here.contains($0) }
            guard !wanted.isEmpty else {
                console.info("ai: \(shelf.origin) offers no model that is not here already")
                return []
            }
        }
        return try wanted.map { try pullOne($0, from: shelf) }
    }

    func pullOne(_ name: String, from shelf: ModelShelf) throws -> ModelManifest {
        let started = Kernel.bootTimeMicros()
        if let present = list().first(where: { $0.name == name }) {
            throw SpiritError("the model \(name) is already here (\(present.size >> 20) MiB, SHA-256 \(present.sha256.prefix(12))); spirit ai remove \(name) first")
        }
        let manifest = try shelf.manifest(name)
        guard manifest.name == name else { throw SpiritError("\(shelf.origin): the manifest for \(name) names the model \(manifest.name)") }
        do {
            try manifest.verifySignature(publicKey: try SigningKey.read(publicKeyPath))
        } catch {
            throw SpiritError("the model \(name) from \(shelf.origin) is refused: \(error); nothing was kept")
        }
        try checkMemory(for: manifest)
        try Kernel.makeDirectory(paths.models, parents: true)
        do {
            try RootAssembler.copyItem(manifest, from: { try shelf.open(manifest) }, into: paths.models, console: console)
        } catch {
            Kernel.remove(paths.modelManifest(name))
            throw SpiritError("the model \(name) from \(shelf.origin) is refused: \(error); nothing was kept")
        }
        console.info("ai: model \(name) pulled from \(shelf.origin): \(manifest.size >> 20) MiB, SHA-256 \(manifest.sha256.prefix(12)), "
                     + "\(manifest.license), in \(formatMilliseconds(Kernel.bootTimeMicros() - started)) ms")
        return manifest
    }

    public func remove(_ name: String) throws {
        let manifest = try self.manifest(name)
        Kernel.remove(paths.modelManifest(name))
        Kernel.remove(paths.model(name))
        console.info("ai: model \(name) removed; \(manifest.size >> 20) MiB of RAM given back")
    }

    /// A pack larger than the memory there is is refused before the copy.
    func checkMemory(for manifest: ModelManifest) throws {
        let meminfo = (try? Kernel.readText(paths.meminfo)) ?? ""
        guard let available = Zram.memAvailableKiB(meminfo: meminfo) else { return }
        // The copy, and what llama-server needs beside the weights (KV cache
        // and compute buffers at a 2048-token context: about 100 MiB).
        let needed = manifest.size >> 10 + (160 << 10)
        guard needed <= available else {
            throw SpiritError("the model \(manifest.name) needs \(manifest.size >> 20) MiB of RAM and 160 MiB to run; \(available >> 10) MiB are available; nothing was copied")
        }
    }
}
