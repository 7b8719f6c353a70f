import BootCascade
import Glibc
import Net
import Nexus
import Nodus
import Overlay
import SpiritCommands
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
                try RuntimeLayers(console: console).add(options.words[0], from: try shelf(from: options.named["from"], for: "layer add", console: console))
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
