import BootCascade
import Glibc
import ModuleLoader
import Nodus
import Overlay
import SpiritCore

/// `spirit nodus …`: the Nodus daemon (serve a system image to peers over
/// NBD, answer discovery), and the client side by hand: info, fetch,
/// attach (a kernel /dev/nbdN), detach. `spirit net scan` looks for peers.
package enum NodusCommand {

    static func run(_ arguments: [String]) -> Int32 {
        guard let verb = arguments.first else { return Usage.fail("nodus needs serve, info, fetch, attach, detach or hydrate") }
        return exitStatus {
            let options = try Options(Array(arguments.dropFirst()))
            switch verb {
            case "serve": try serve(options)
            case "info": try info(options)
            case "fetch": try fetch(options)
            case "attach": try attach(options)
            case "hydrate": try hydrate(options)
            case "detach":
                guard options.words.count == 1 else { throw UsageError(message: "detach takes one DEVICE") }
                try NBDKernelDevice.detach(options.words[0])
            default: throw UsageError(message: "unknown nodus command '\(verb)'")
            }
        }
    }

    /// `spirit net scan`: seeks on every interface (or at `--to`), lists
    /// the peers that answered.
    static func net(_ arguments: [String]) -> Int32 {
        guard arguments.first == "scan" else { return Usage.fail("net needs scan") }
        return exitStatus {
            let options = try Options(Array(arguments.dropFirst()))
            let port = try number(options, "port", default: Discovery.port, in: 1...65535)
            let window = try number(options, "timeout", default: 2000, in: 1...60_000)
            let targets: [SocketAddress]
            if let to = options.named["to"] {
                targets = try to.split(separator: ",").map { try SocketAddress(host: String($0), port: port) }
            } else {
                let interfaces = DiscoverySeeker.broadcastTargets(port: port)
                guard !interfaces.isEmpty else {
                    throw SpiritError("no network interface is up with an IPv4 address and a broadcast address; try 'ip addr' and udhcpc")
                }
                Console.tool.info("seeking on " + interfaces.map { "\($0.interface) (\($0.address.host))" }.joined(separator: ", "))
                targets = interfaces.map(\.address)
            }
            let offers = try DiscoverySeeker.seek(targets: targets, windowMilliseconds: window)
            for offer in offers { print(offer.description) }
            if offers.isEmpty { Console.tool.info("no peer answered within \(window) ms") }
        }
    }

    package static func number(_ options: Options, _ name: String, default value: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let text = options.named[name] else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw UsageError(message: "--\(name) \(text): expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    // MARK: the daemon

    static func serve(_ options: Options) throws {
        let console = Console.tool
        let imagePath = try options.required("image")
        let manifestPath = try options.required("manifest")
        let manifest = try Manifest.parse(try Kernel.readFile(manifestPath))
        if let key = options.named["public-key"] {
            try manifest.verifySignature(publicKey: try SigningKey.read(key))
        }
        try waitForStreamedImage(console: console)
        // Peers check what they get, but a seeder that hands out an image
        // its manifest does not describe wastes every peer's boot: refuse.
        // The boot's RAM copy was checked by stage 1, and is not hashed again
        // unless it changed since.
        if VerifiedStamp.holds(for: imagePath, sha256: manifest.sha256) {
            console.info("nodus: \(imagePath) was checked against its manifest at boot and has not changed since")
        } else {
            let measured = try ImageCopy.measure(imagePath, expectedSize: manifest.size)
            do {
                try manifest.verifyImage(size: measured.size, sha256: measured.sha256)
            } catch {
                throw SpiritError("refusing to serve \(imagePath): \(error)")
            }
        }
        let nbdPort = try number(options, "nbd-port", default: BootConfig.defaultNBDPort, in: 1...65535)
        let discoveryPort = try number(options, "discovery-port", default: Discovery.port, in: 0...65535)
        let listen = options.named["listen"] ?? "0.0.0.0"
        let listenAddress = try SocketAddress(host: listen, port: nbdPort)

        let description = "Crom-OS Spirit \(manifest.version) system image"
        // The layers and model packs in RAM (the service file names them).
        let layers = shelfExports(LayerManifest.self, options.named["layers"], console: console)
        let models = shelfExports(ModelManifest.self, options.named["models"], console: console)
        let blocks = try blockListExport(manifest, imagePath: imagePath, console: console)
        let exports = NBDExports([
            try NBDExport(path: imagePath, names: [manifest.sha256, ""], description: description),
            try NBDExport(path: manifestPath, names: [NodusExports.manifest, manifest.sha256 + ".manifest"],
                          description: "the signed manifest of \(manifest.sha256)"),
        ] + (blocks.map { [$0] } ?? []) + (layers?.exports ?? []) + (models?.exports ?? []))
        let listener = try Socket.listenTCP(listenAddress)
        let server = NBDServer(listener: listener, exports: exports, console: console,
                               maxClients: try number(options, "max-clients", default: 256, in: 1...4096),
                               maxClientsPerAddress: try number(options, "max-per-address", default: 32, in: 1...4096),
                               stallMilliseconds: try number(options, "stall-ms", default: 30_000, in: 100...600_000),
                               handshakeMilliseconds: try number(options, "handshake-ms", default: 10_000, in: 100...600_000),
                               idleMilliseconds: try number(options, "idle-seconds", default: 600, in: 1...86_400) * 1000)

        var discovery = "discovery off"
        if discoveryPort != 0 {
            // A daemon bound to one address names it; one bound to all
            // names the address each seek came in on.
            let advertised = options.named["advertise"] ?? (listen == "0.0.0.0" || listen == "::" ? "" : listen)
            let offer = Discovery.Offer(host: advertised, port: nbdPort, protocolVersion: Discovery.protocolVersion,
                                        sha256: manifest.sha256, imageVersion: manifest.version, buildTime: manifest.buildTime,
                                        size: manifest.size, layers: layers?.names)
            let responder = try DiscoveryResponder(port: discoveryPort, offer: offer, console: console)
            try Threads.start {
                let error = responder.serve()
                console.error("nodus: discovery stopped: \(error)")
            }
            discovery = "discovery on UDP \(discoveryPort)"
        }
        let served = [("layers", layers), ("models", models)].compactMap { kind, shelf in
            shelf.flatMap { $0.names.isEmpty ? nil : ", \(kind) " + $0.names.joined(separator: ", ") }
        }.joined()
        console.info("nodus: serving \(manifest.image) \(manifest.version) (sha256 \(manifest.sha256.prefix(12)), "
            + "\(manifest.size >> 20) MiB) and its manifest" + (blocks == nil ? "" : ", block list") + served
            + " over NBD on \(listenAddress); \(discovery)")
        ServiceNotify.ready()
        let error = server.serve()
        throw SpiritError("nodus: the NBD server stopped: \(error)")
    }

    /// After a streaming boot (crom.nodus.stream=1) the image in RAM is
    /// whole only once `spirit nodus hydrate` is done: until then the
    /// daemon says it is ready (its service must not time out for a copy
    /// that may take minutes) but serves nothing, and starts serving when
    /// the copy is whole and checked. A copy that failed is not served.
    static func waitForStreamedImage(console: Console) throws {
        var said = false
        while let bytes = try? Kernel.readFile(RootLayout.hydrateState) {
            let progress: HydrationProgress
            do {
                progress = try HydrationProgress.parse(bytes)
            } catch {
                throw SpiritError("\(RootLayout.hydrateState): \(error)")
            }
            switch progress.state {
            case .done: return
            case .failed: throw SpiritError("the streamed image never came whole into RAM (\(progress.problem ?? "no reason given")): not serving it")
            case .streaming, .verifying:
                if !said {
                    said = true
                    ServiceNotify.ready()
                    console.info("nodus: the image is still coming into RAM (crom.nodus.stream=1): serving it once it is whole and checked")
                }
                Kernel.sleep(milliseconds: 1000)
            }
        }
    }

    /// The image's block list as the `blocks` export, made from the image
    /// here (a peer reading several peers checks each block against it,
    /// and the list against the signed manifest's `blocks_sha256`). nil for
    /// a manifest without one; a list that does not match the manifest is
    /// said and not served, the image still is (checked whole by SHA-256).
    static func blockListExport(_ manifest: Manifest, imagePath: String, console: Console) throws -> NBDExport? {
        guard let blocks = manifest.blocks else {
            console.info("nodus: \(manifest.image)'s manifest has no block list: peers will read it from one peer at a time")
            return nil
        }
        let list = try ImageCopy.blockHashes(imagePath, blockSize: blocks.blockSize)
        guard list.listSHA256 == blocks.sha256 else {
            console.warning("nodus: not serving a block list: the image's is \(list.listSHA256.prefix(12)), "
                + "the manifest says \(blocks.sha256.prefix(12))")
            return nil
        }
        return try NBDExport(bytes: list.encoded, names: [NodusExports.blocks],
                             description: "the SHA-256 of each \(blocks.blockSize >> 10) KiB block of \(manifest.sha256)")
    }

    /// A folder of layers (`--layers`) or model packs (`--models`), each
    /// checked against its manifest; what is left out is said by name. A
    /// folder that cannot be served at all (its list unwritable) is said
    /// too, and the image is served without it.
    static func shelfExports<Item: ShelfItem>(_: Item.Type, _ directory: String?, console: Console) -> NodusServedShelf? {
        guard let directory else { return nil }
        let shelf: NodusServedShelf
        do {
            shelf = try NodusServedShelf(Item.self, directory: directory)
        } catch {
            console.warning("nodus: not serving the \(Item.directory) in \(directory): \(error)")
            return nil
        }
        for (name, reason) in shelf.refused {
            console.warning("nodus: not serving the \(Item.kind) \(name) in \(directory): \(reason)")
        }
        return shelf
    }

    // MARK: the client by hand

    static func connect(_ options: Options) throws -> NBDClient {
        let server = try SocketAddress.parse(try options.required("server"), defaultPort: BootConfig.defaultNBDPort)
        return try NBDClient.connect(server, export: options.named["export"] ?? "")
    }

    static func info(_ options: Options) throws {
        let client = try connect(options)
        defer { client.disconnect() }
        print("export '\(client.exportName)' on \(client.server): \(client.size) bytes, flags 0x\(String(client.flags.rawValue, radix: 16))"
            + (client.flags.contains(.readOnly) ? " (read-only)" : ""))
    }

    /// Copies an export into a file (or stdout) while hashing it; with
    /// `--peers`, the image as a boot copies it (PeerSelection, then
    /// MultiPeerReader over every peer serving the chosen image).
    static func fetch(_ options: Options) throws {
        if let peers = options.named["peers"] { return try fetchFromPeers(peers, options) }
        let client = try connect(options)
        var stream = NBDExportStream(reader: NBDSequentialReader(client: client))
        defer { stream.close() }
        // /proc, not /dev/stdout: devtmpfs has no such link without udev.
        let out = options.named["out"] ?? "/proc/self/fd/1"
        let copied = try ImageCopy.copy(from: &stream, to: out, expectedSize: client.size)
        Console.tool.info("fetched \(copied.size) bytes of '\(client.exportName)' from \(client.server) into \(options.named["out"] ?? "stdout"): "
            + "sha256 \(copied.sha256)")
    }

    static func fetchFromPeers(_ list: String, _ options: Options) throws {
        let console = Console.tool
        let stallMillis = try number(options, "stall-ms", default: NodusSource.stallMillis, in: 100...600_000)
        let trust = try options.named["public-key"].map { ImageTrust(publicKey: try SigningKey.read($0), minimumVersion: nil) }
        var candidates: [PeerSelection.Candidate] = []
        for text in list.split(separator: ",") {
            let address = try SocketAddress.parse(String(text), defaultPort: BootConfig.defaultNBDPort)
            let offer = Discovery.Offer(host: address.host, port: address.port)
            candidates.append(PeerSelection.Candidate(offer: offer, manifest: NodusSource.manifest(of: offer, idleMillis: 10_000)))
        }
        let (choice, skipped) = PeerSelection.choose(candidates, trust: trust)
        guard let choice else {
            throw SpiritError("no peer has a usable image: " + skipped.map { "\($0.offer.host):\($0.offer.port): \($0.reason)" }.joined(separator: "; "))
        }
        for line in choice.lines { console.info("nodus: " + line) }
        let openImage = try NodusSource.imageReader(choice, idleMillis: 10_000, stallMillis: stallMillis, console: console)
        let out = options.named["out"] ?? "/proc/self/fd/1"
        let start = Kernel.bootTimeMicros()
        var stream = try openImage()
        defer { stream.close() }
        let copied = try ImageCopy.copy(from: &stream, to: out, expectedSize: choice.manifest.size)
        let micros = max(1, Kernel.bootTimeMicros() - start)
        try choice.manifest.verifyImage(size: copied.size, sha256: copied.sha256)
        console.info("fetched \(copied.size) bytes of \(choice.manifest.image) \(choice.manifest.version) in \(micros / 1000) ms "
            + "(\((copied.size * 1_000_000 / micros) >> 20) MiB/s): sha256 \(copied.sha256) matches the manifest")
    }

    /// Serves /dev/nbdN from a peer until `detach` (or the peer goes).
    static func attach(_ options: Options) throws {
        let device = options.named["device"] ?? "/dev/nbd0"
        OnDemandLoading.install(console: Console.tool)
        let client = try connect(options)
        try NBDKernelDevice.attach(client, device: device) {
            Console.tool.info("\(device) is '\(client.exportName)' on \(client.server), \(client.size) bytes"
                + (client.flags.contains(.readOnly) ? ", read-only" : ""))
        }
        Console.tool.info("\(device) detached")
    }

    /// `spirit nodus hydrate`: the streaming boot's copy (crom.nodus.stream=1,
    /// started by the boot worker; by hand for a test). Serves the image to
    /// the kernel as /dev/nbdN with a read-only loop over it while it is
    /// copied from the peers into `--image` (each block checked against the
    /// signed block list), writes the loop's path to `--ready`, and when the
    /// copy is whole and checked moves the loop onto it (Hydrator). Stays
    /// up, serving what is in RAM, if the copy cannot complete.
    static func hydrate(_ options: Options) throws {
        let console = Console.tool
        OnDemandLoading.install(console: console)
        let manifest = try Manifest.parse(try Kernel.readFile(try options.required("manifest")))
        if let key = options.named["public-key"] {
            try manifest.verifySignature(publicKey: try SigningKey.read(key))
        }
        guard let blocks = manifest.blocks else {
            throw SpiritError("the manifest of \(manifest.image) has no block list: its blocks cannot be checked as they stream")
        }
        let addresses = try (try options.required("peers")).split(separator: ",").map {
            try SocketAddress.parse(String($0), defaultPort: BootConfig.defaultNBDPort)
        }
        let stallMillis = try number(options, "stall-ms", default: NodusSource.stallMillis, in: 100...600_000)
        let image = try options.required("image")
        let slash = image.lastIndex(of: "/")
        let directory = slash.map { $0 == image.startIndex ? "/" : String(image[..<$0]) } ?? "."
        let name = slash.map { String(image[image.index(after: $0)...]) } ?? image
        guard let hashes = NodusSource.blockList(manifest: manifest, blocks: blocks, addresses: addresses, idleMillis: 10_000,
                                                 console: console) else {
            throw SpiritError("no peer of " + addresses.map { "\($0)" }.joined(separator: ", ") + " served a block list matching the manifest")
        }
        let file = try HydrationFile(path: image, size: manifest.size)
        let hydration = Hydration(hashes: hashes, peers: NodusSource.blockPeers(addresses, manifest: manifest, stallMillis: stallMillis),
                                  stallMicros: Int64(stallMillis) * 1000, store: file.store,
                                  report: { console.warning("nodus: " + $0) })
        var settings = Hydrator.Settings(imageDirectory: directory, imageName: name, sha256: manifest.sha256, nbdDevice: options.named["device"])
        if let state = options.named["state"] { settings.stateFile = state }
        if let timeline = options.named["timeline"] { settings.timelineDirectory = timeline }
        // Until the root reads RAM, the root may need this process: the
        // shutdown's SIGTERM and SIGHUP do not end it (its SIGKILL does,
        // after the services are stopped; see the README).
        signal(SIGTERM, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        // Nor the OOM killer: killed, it would take the root's reads with it.
        try? Kernel.writeFile("/proc/self/oom_score_adj", "-1000\n")
        let hydrator = Hydrator(settings: settings, hydration: hydration, console: console)
        try hydrator.start()
        // The state is there before the root is: nodus serve, finding none,
        // would take the half-filled image for a whole one.
        try Kernel.writeFileAtomically(settings.stateFile, hydration.progress(.streaming).json)
        if let ready = options.named["ready"] { try Kernel.writeFileAtomically(ready, hydrator.loopDevice + "\n") }
        console.info("nodus: streaming \(manifest.image) \(manifest.version) from " + addresses.map { "\($0)" }.joined(separator: ", ")
            + " as \(hydrator.nbdDevice) under \(hydrator.loopDevice), copying it into RAM behind the reads")
        var lastQuarter = -1
        let stateFile = settings.stateFile
        let timeline = Timeline(directory: settings.timelineDirectory, process: "hydrator")
        let problem = hydrator.finish { progress in
            try? Kernel.writeFileAtomically(stateFile, progress.json)
            let quarter = progress.total == 0 ? 4 : progress.present * 4 / progress.total
            if progress.state == .streaming, quarter > lastQuarter, quarter < 4 {
                lastQuarter = quarter
                console.info("nodus: " + progress.line(now: Kernel.bootTimeMicros()))
            }
        }
        let final = hydration.progress(problem == nil ? .done : .failed)
        timeline.record(TimelineStep(step: "hydrate", process: "hydrator", pid: Kernel.pid, startMicros: final.startedMicros,
                                     endMicros: Kernel.bootTimeMicros(), ok: problem == nil,
                                     detail: "\(final.present)/\(final.total) blocks from " + final.peers.map { "\($0.name) \($0.blocks)" }.joined(separator: ", ")))
        if let problem {
            console.error("nodus: the image cannot be brought into RAM: \(problem); the root keeps reading what is in RAM through "
                + "\(hydrator.nbdDevice), and reads of the rest fail (EIO)")
            while true { Kernel.sleep(milliseconds: 3_600_000) }
        }
        console.info("nodus: \(manifest.image) is in RAM and checked (SHA-256 \(manifest.sha256.prefix(12))): the root reads it "
            + "through \(hydrator.loopDevice); the peers may go")
    }
}

/// The RAM file a Hydration stores blocks into, by pwrite(2) at their
/// offsets: made at the image's full size (sparse) before anything is
/// fetched, and written through its descriptor, which stays valid after
/// switch_root.
final class HydrationFile: Sendable {
    let fd: CInt
    let path: String

    init(path: String, size: Int64) throws(SystemError) {
        self.path = path
        fd = try Kernel.open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o444)
        try Kernel.truncate(fd, size: size, path)
    }

    var store: @Sendable (Int64, [UInt8]) throws -> Void {
        { [fd, path] offset, bytes in
            try bytes.withBytes { raw throws(SystemError) in try Kernel.write(fd, raw, at: offset, path) }
        }
    }
}
