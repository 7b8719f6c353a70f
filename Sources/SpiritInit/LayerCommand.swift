import BootCascade
import Glibc
import Net
import Nexus
import Nodus
import Overlay
import SpiritCore

/// `spirit layer …`: the add-on layers of a running Spirit (list, add,
/// remove: RuntimeLayers), and on the build host the signed manifest of a
/// layer's squashfs (`make layer` calls `manifest`) and its check.
enum LayerCommand {
    static let usage = "layer list [--json] | add NAME [--from URL|DIR|peer|nodus://ADDR] | remove NAME | manifest --image F.squashfs --key K --version V --bases \"V…\" [--build-time S] [--out F] | verify --image F --manifest M --public-key K"

    static func run(_ arguments: [String]) -> Int32 {
        let console = Console.tool
        guard let verb = arguments.first else { return Usage.fail("usage: spirit \(usage)") }
        let rest = Array(arguments.dropFirst())
        return exitStatus {
            switch verb {
            case "list" where rest.isEmpty || rest == ["--json"]:
                try list(json: rest == ["--json"], console: console)
            case "add":
                let options = try Options(rest)
                guard options.words.count == 1 else { throw UsageError(message: "layer add takes one NAME") }
                try RuntimeLayers(console: console).add(options.words[0], from: try shelf(options.named["from"], console: console))
                restartInapplicableServices(console: console)
            case "remove" where rest.count == 1:
                try RuntimeLayers(console: console).remove(rest[0])
            case "manifest":
                try manifest(try Options(rest))
            case "verify":
                try verify(try Options(rest), console: console)
            default:
                throw UsageError(message: "usage: spirit \(usage)")
            }
        }
    }

    static func list(json: Bool, console: Console) throws {
        let rows = try RuntimeLayers(console: console).list()
        if json {
            print("[" + rows.map { row in
                "{\"name\":\(jsonString(row.entry.name)),\"version\":\(jsonString(row.entry.version)),\"size\":\(row.entry.size),"
                    + "\"sha256\":\(jsonString(row.entry.sha256)),\"stacking\":\(jsonString(row.entry.stacking.rawValue)),"
                    + "\"origin\":\(jsonString(row.entry.origin)),\"mounted\":\(row.mounted)}"
            }.joined(separator: ",") + "]")
            return
        }
        guard !rows.isEmpty else {
            print("no layers (crom.layers= stacks them at boot; spirit layer add NAME --from URL|DIR adds one)")
            return
        }
        for row in rows {
            let how = row.entry.stacking == .boot ? "stacked at boot" : "merged over /usr"
            print("\(row.entry.name)  \(row.entry.version)  \(row.entry.size >> 20) MiB  \(how)\(row.mounted ? "" : " (not mounted!)")  from \(row.entry.origin)")
        }
    }

    /// `--from`: an http:// URL (the base of the media files, or its
    /// layers/ folder), a directory (holding layers/ or the layer's files),
    /// `peer` (the best Nodus peer that answers discovery) or
    /// `nodus://ADDR[:PORT]`; without it, the HTTP server this Spirit booted from.
    static func shelf(_ from: String?, console: Console) throws -> LayerShelf {
        if from == "peer" {
            let targets = DiscoverySeeker.broadcastTargets()
            guard !targets.isEmpty else { throw SpiritError("--from peer: no network interface with a broadcast address to look for peers on") }
            let offers = try DiscoverySeeker.seek(targets: targets.map(\.address), windowMilliseconds: NodusSource.discoveryWindowMillis)
            guard let best = Discovery.ranked(offers).first else {
                throw SpiritError("--from peer: no Nodus peer answered within \(NodusSource.discoveryWindowMillis) ms")
            }
            return NodusSource.shelf(try SocketAddress(host: best.host, port: best.port), idleMillis: 10_000)
        }
        if let from, from.hasPrefix("nodus://") {
            let address = try SocketAddress.parse(String(from.dropFirst("nodus://".count)), defaultPort: BootConfig.defaultNBDPort)
            return NodusSource.shelf(address, idleMillis: 10_000)
        }
        guard let from else {
            guard let booted = bootSourceURL() else {
                throw UsageError(message: "layer add needs --from URL|DIR: this Spirit did not boot over HTTP")
            }
            return .http(try HTTPURL.parse(booted), idleMillis: 10_000, console: console)
        }
        if from.hasPrefix("http://") || from.hasPrefix("https://") {
            var url = try HTTPURL.parse(from)
            let path = url.target.prefix { $0 != "?" }
            if path.hasSuffix("/" + LayerShelf.directory) || path.hasSuffix("/" + LayerShelf.directory + "/") {
                url.target = String(path.dropLast(path.hasSuffix("/") ? LayerShelf.directory.count + 1 : LayerShelf.directory.count))
            }
            return .http(url, idleMillis: 10_000, console: console)
        }
        guard Kernel.exists(from) else { throw SpiritError("--from \(from): no such directory (expected a URL or a directory)") }
        let trimmed = from.hasSuffix("/") ? String(from.dropLast()) : from
        if Kernel.exists(trimmed + "/" + LayerShelf.directory) { return .folder(trimmed, origin: trimmed) }
        if trimmed.hasSuffix("/" + LayerShelf.directory) {
            let parent = String(trimmed.dropLast(LayerShelf.directory.count + 1))
            return .folder(parent.isEmpty ? "/" : parent, origin: parent)
        }
        throw SpiritError("--from \(from): no \(LayerShelf.directory)/ folder in it")
    }

    /// The base URL of an HTTP boot (RunFiles.bootMedium).
    static func bootSourceURL() -> String? {
        guard let bytes = try? Kernel.readFile(RunFiles.bootMedium), let medium = try? BootMedium(json: bytes) else { return nil }
        return medium.source == SourceName.http.rawValue ? medium.origin : nil
    }

    /// A layer may bring what a service lacked (the vm layer: QEMU, for the
    /// VM manager): the services that said "not applicable here" at boot are
    /// started again, and say again if they still are not. Without a
    /// supervisor (a rescue shell) there is nothing to do.
    static func restartInapplicableServices(console: Console) {
        let socket = RunFiles.controlSocket
        guard let services = try? supervisedServices() else { return }
        // `why` starts with the supervisor's detail: "not applicable here: …".
        for name in services.filter({ $0.why?.hasPrefix("not applicable") == true }).map(\.name) {
            let head = ControlChannel.send("start \(name)", to: socket, server: "supervisor") { _ in true }
            if case .error(_, let message) = head {
                console.warning("service \(name): unable to start it again: \(message)")
            } else {
                console.info("service \(name): was not applicable here; started again")
            }
        }
    }

    static func manifest(_ options: Options) throws {
        let imagePath = try options.required("image")
        let key = try SigningKey.read(try options.required("key"))
        let file = String(imagePath.split(separator: "/").last ?? "")
        guard file.hasSuffix(".squashfs") else { throw UsageError(message: "--image \(imagePath) is not a NAME.squashfs") }
        let name = String(file.dropLast(".squashfs".count))
        try LayerManifest.checkName(name)
        let buildTime = options.named["build-time"].map { Int64($0) } ?? Int64(time(nil))
        guard let buildTime, buildTime >= 0 else { throw UsageError(message: "--build-time takes whole seconds since 1970") }
        let bases = try options.required("bases").split(separator: " ").map(String.init)
        guard !bases.isEmpty else { throw UsageError(message: "--bases names at least one system image version (or *)") }
        let measured = try ImageCopy.measure(imagePath)
        let manifest = try LayerManifest(name: name, size: measured.size, sha256: measured.sha256, version: try options.required("version"),
                                         buildTime: buildTime, bases: bases).signed(privateKey: key)
        if let out = options.named["out"] {
            try Kernel.writeFileAtomically(out, manifest.json)
        } else {
            print(manifest.json, terminator: "")
        }
    }

    static func verify(_ options: Options, console: Console) throws {
        let manifestPath = try options.required("manifest")
        let manifest: LayerManifest
        do {
            manifest = try LayerManifest.parse(try Kernel.readFile(manifestPath))
            try manifest.verifySignature(publicKey: try SigningKey.read(try options.required("public-key")))
        } catch let error as ManifestError {
            throw SpiritError("\(manifestPath): \(error)")
        }
        let measured = try ImageCopy.measure(try options.required("image"), expectedSize: manifest.size)
        try manifest.verifyImage(size: measured.size, sha256: measured.sha256)
        console.info("layer \(manifest.name) \(manifest.version): signature and SHA-256 \(manifest.sha256.prefix(12)) match")
    }
}
