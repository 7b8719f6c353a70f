import Glibc
import Overlay
import SpiritCore

/// `spirit layer add|remove` on a running Spirit: a layer fetched from a
/// shelf (an HTTP server, a folder), checked like the image (signature, the
/// image it fits, SHA-256 while copied into RAM), mounted read-only and
/// merged over /usr (LayerMerge); taken away again only when no process
/// uses it. The layers stacked at boot stay until the next boot.
public struct RuntimeLayers {
    public var layout = RootLayout()
    public var merge = LayerMerge()
    public var statePath = RunFiles.layers
    public var publicKeyPath = InitramfsFiles.signingPublicKey
    public var proc = "/proc"
    let console: Console

    public init(console: Console) {
        self.console = console
    }

    /// A layer as `spirit layer list` shows it.
    public struct Row: Sendable {
        public var entry: LayerState.Entry
        /// Its squashfs is mounted at /run/spirit/layers/NAME.
        public var mounted: Bool
    }

    public func list() throws -> [Row] {
        let mounts = (try? Kernel.readText(proc + "/self/mountinfo")) ?? ""
        return try LayerState.current(path: statePath).entries.map { entry in
            Row(entry: entry, mounted: Self.isMountPoint(layout.layerMount(entry.name), mountinfo: mounts))
        }
    }

    /// Fetches, checks, mounts and merges the layer `name` from `shelf`.
    /// Any failure leaves nothing behind: no file, no mount, no state.
    public func add(_ name: String, from shelf: LayerShelf) throws {
        let started = Kernel.bootTimeMicros()
        try LayerManifest.checkName(name)
        var state = try LayerState.current(path: statePath)
        if let present = state[name] {
            throw SpiritError("the layer \(name) \(present.version) is already here (\(present.stacking == .boot ? "stacked at boot" : "added at run time"), from \(present.origin))")
        }
        let image = try Manifest.parse(try Kernel.readFile(RunFiles.imageManifest))
        let manifest = try shelf.manifest(name)
        guard manifest.name == name else { throw SpiritError("\(shelf.origin): the manifest for \(name) names the layer \(manifest.name)") }
        try manifest.check(publicKey: try SigningKey.read(publicKeyPath), baseVersion: image.version)
        try checkMemory(for: manifest)

        let mountPoint = layout.layerMount(name)
        try growImageDirectory(by: manifest.size)
        do {
            try Kernel.makeDirectory(layout.layerImages, parents: true)
            do {
                try RootAssembler.copyItem(manifest, from: { try shelf.open(manifest) }, into: layout.layerImages, console: console)
            } catch {
                throw SpiritError("the layer \(name) from \(shelf.origin) is refused: \(error); nothing was kept")
            }
            do {
                try RootAssembler.mountLayer(manifest, images: layout.layerImages, on: mountPoint)
                try checkTree(manifest, at: mountPoint)
                try remerge(state.entries.filter { $0.stacking == .run }.map(\.name) + [name])
            } catch {
                _ = try? Kernel.unmount(mountPoint)
                Kernel.remove(mountPoint)
                throw error
            }
        } catch {
            Kernel.remove(layout.layerImages + "/" + manifest.image)
            Kernel.remove(layout.layerImages + "/" + LayerManifest.manifestFile(name))
            try? growImageDirectory(by: -manifest.size)
            throw error
        }
        state.entries.append(.init(manifest, origin: shelf.origin, stacking: .run, added: Int64(time(nil))))
        try state.save(path: statePath)
        console.info("layer \(name) \(manifest.version) added from \(shelf.origin): \(manifest.size >> 10) KiB, SHA-256 \(manifest.sha256.prefix(12)), merged over /usr in \(formatMilliseconds(Kernel.bootTimeMicros() - started)) ms")
    }

    /// Takes a layer added at run time away: refused while a process uses
    /// it, and for layers stacked at boot.
    public func remove(_ name: String) throws {
        var state = try LayerState.current(path: statePath)
        guard let entry = state[name] else {
            let names = state.entries.map(\.name)
            throw SpiritError("there is no layer \(name) here (\(names.isEmpty ? "no layers" : "layers: " + names.joined(separator: ", ")))")
        }
        guard entry.stacking == .run else {
            throw SpiritError("the layer \(name) was stacked at boot (crom.layers=) under the root itself; it goes at the next boot without it (crom.layers=none or a list without \(name))")
        }
        let mountPoint = layout.layerMount(name)
        let users = try self.users(of: mountPoint)
        guard users.isEmpty else {
            let named = users.prefix(8).map { "\($0.pid) (\($0.command))" }.joined(separator: ", ")
            throw SpiritError("the layer \(name) is in use by \(named)\(users.count > 8 ? " and \(users.count - 8) more" : ""); stop them, then remove it")
        }
        try remerge(state.entries.filter { $0.stacking == .run && $0.name != name }.map(\.name))
        try Kernel.unmount(mountPoint)
        Kernel.remove(mountPoint)
        Kernel.remove(layout.layerImages + "/" + LayerManifest.imageFile(name))
        Kernel.remove(layout.layerImages + "/" + LayerManifest.manifestFile(name))
        try? growImageDirectory(by: -entry.size)
        state.entries.removeAll { $0.name == name }
        try state.save(path: statePath)
        console.info("layer \(name) \(entry.version) removed; \(entry.size >> 10) KiB of RAM given back")
    }

    /// Replaces the merge over /usr with one of `names`: the old overlay is
    /// detached (a process with a file open in it keeps that file), the new
    /// one mounted at once.
    func remerge(_ names: [String]) throws {
        let mounts = (try? Kernel.readText(proc + "/self/mountinfo")) ?? ""
        if !Self.isMountPoint(merge.base, mountinfo: mounts) {
            try Kernel.makeDirectory(merge.base, parents: true)
            try Kernel.mount(merge.baseMount)
        }
        if Self.mountSource(merge.target, mountinfo: mounts) == "spirit-layers" {
            try Kernel.unmount(merge.target, detach: true)
        }
        if let spec = merge.mount(layers: names) { try Kernel.mount(spec) }
    }

    /// A layer's tree must hold `usr/` and nothing else (what is merged).
    func checkTree(_ layer: LayerManifest, at mountPoint: String) throws {
        let entries = Kernel.directoryEntries(mountPoint).map(\.name).sorted()
        guard entries == [LayerManifest.prefix] else {
            throw SpiritError("the layer \(layer.name) holds \(entries.isEmpty ? "nothing" : entries.joined(separator: ", ")), not only \(LayerManifest.prefix)/: it cannot be merged over /\(LayerManifest.prefix)")
        }
    }

    /// Refuses a layer larger than the memory there is to hold it.
    func checkMemory(for layer: LayerManifest) throws {
        let meminfo = (try? Kernel.readText(proc + "/meminfo")) ?? ""
        guard let available = Zram.memAvailableKiB(meminfo: meminfo) else { return }
        let needed = layer.size >> 10 + (64 << 10)
        guard needed <= available else {
            throw SpiritError("the layer \(layer.name) needs \(layer.size >> 20) MiB of RAM and 64 MiB to spare; \(available >> 10) MiB are available")
        }
    }

    /// The tmpfs holding the image and the layers grows (or shrinks) by a
    /// layer: it is sized to what it holds.
    func growImageDirectory(by bytes: Int64) throws {
        let stats = try Kernel.fileSystemStats(layout.imageDirectory)
        let mebibytes = max(stats.totalBytes >> 20 + (bytes < 0 ? -1 : 1) * RootLayout.tmpfsMiB(abs(bytes)), 1)
        try Kernel.mount(MountSpec(source: "spirit-image", target: layout.imageDirectory, fstype: "tmpfs",
                                   flags: [.remount, .noSUID, .noDev, .noExec], data: "size=\(mebibytes)m"))
    }

    /// Who uses the layer mounted at `mountPoint` (LayerMerge.users).
    func users(of mountPoint: String) throws -> [LayerMerge.ProcessView] {
        let device = try Kernel.status(mountPoint).device
        var processes: [LayerMerge.ProcessView] = []
        for entry in Kernel.directoryEntries(proc) {
            guard let pid = Int(entry.name) else { continue }
            let directory = proc + "/" + entry.name
            guard let maps = try? Kernel.readText(directory + "/maps") else { continue }
            var links = ["exe", "cwd", "root"].compactMap { Kernel.readLink(directory + "/" + $0) }
            links += Kernel.directoryEntries(directory + "/fd").compactMap { Kernel.readLink(directory + "/fd/" + $0.name) }
            let command = ((try? Kernel.readText(directory + "/comm")) ?? "?").trimmed
            processes.append(.init(pid: pid, command: command, maps: maps, links: links))
        }
        return LayerMerge.users(of: device, processes: processes) { path in Kernel.exists(mountPoint + path) }
    }

    static func isMountPoint(_ path: String, mountinfo: String) -> Bool {
        mountSource(path, mountinfo: mountinfo) != nil
    }

    /// The source of the topmost mount on `path` (SpiritCore's mountinfo reader).
    static func mountSource(_ path: String, mountinfo: String) -> String? {
        MountInfoEntry.parse(mountinfo).last { $0.mountPoint == path }?.source
    }
}
