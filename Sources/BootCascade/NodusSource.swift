import Nodus
import Overlay
import SpiritCore

/// The Nodus source: a peer on the LAN serving its own image over NBD.
/// The network up (shared with the HTTP source), then the peer named by
/// `crom.nodus.server=`, or the peers that answer a discovery broadcast on
/// every interface, best first (a peer naming its image before one that
/// does not, then the newest build). Each peer's manifest is read from its
/// `manifest` export and checked here (its signature and its version
/// against the initramfs's minimum), so that a rogue, broken or replayed
/// old peer is skipped; of the rest the newest image is chosen
/// (PeerSelection) and said on the console, with why the others were not.
/// The image is then copied into RAM from every peer serving it at once,
/// each block checked against the signed block list (MultiPeerReader: a
/// peer that stalls, vanishes or sends a bad block is dropped by name and
/// its blocks go to the others), and the connections closed, so that
/// nothing depends on the network after the boot. The
/// layers `crom.layers=` asks for and the model packs (crom.ai=) come from
/// the same peer's `layers` and `models` exports (NodusShelf.swift).
public struct NodusSource: BootSource {
    public let name: SourceName = .nodus
    public let timeoutMicros: Int64
    let server: Endpoint?
    let discovery: Bool
    let trust: ImageTrust?
    let network: Network
    let stream: Bool
    let idleMillis: Int
    /// How long answers to a discovery broadcast are gathered.
    public static let discoveryWindowMillis = 1500
    /// Once a peer answered, how long the window stays open for others
    /// after one more round of seeks (DiscoveryWindow).
    public static let discoveryQuietMillis = 250

    /// `stream` is crom.nodus.stream=1: the root is mounted from the
    /// peers' export at once and the image copied into RAM behind it (see
    /// Hydrator), when the manifest has a block list to check each block
    /// against; without one the image is copied first, as without the flag.
    public init(server: Endpoint?, discovery: Bool, trust: ImageTrust?, networkTimeoutSeconds: Int, stream: Bool = false,
                network: Network = Network()) {
        self.server = server
        self.stream = stream
        self.discovery = discovery
        self.trust = trust
        self.network = network
        // Link and lease, then discovery and the manifests of a few peers.
        (idleMillis, timeoutMicros) = Network.sourceTimes(timeoutSeconds: networkTimeoutSeconds)
    }

    public func locate(_ context: SourceContext) throws -> FoundImage {
        guard server != nil || discovery else {
            throw SpiritError("discovery is off (crom.nodus=off) and no peer is named (crom.nodus.server=)")
        }
        try context.cancel.check(name)
        let lease = try network.up(context, idleMillis: idleMillis)
        context.console.debug("nodus: \(lease)")
        try context.cancel.check(name)
        let offers = try candidates(context)
        // Each peer's manifest, read and checked (signature, minimum
        // version) before one is chosen: a rogue, broken or replayed old
        // peer is skipped with its reason, whatever it announced.
        var read: [PeerSelection.Candidate] = []
        for offer in offers.prefix(Self.maxPeers) {
            try context.cancel.check(name)
            read.append(PeerSelection.Candidate(offer: offer, manifest: Self.manifest(of: offer, idleMillis: idleMillis)))
        }
        let (choice, skipped) = PeerSelection.choose(read, trust: trust)
        guard let choice else {
            for (offer, reason) in skipped { context.console.warning("nodus: peer \(offer.description): \(reason); skipped") }
            throw SpiritError("no peer had a usable image ("
                + skipped.map { "\($0.offer.host):\($0.offer.port): \($0.reason)" }.joined(separator: "; ") + ")")
        }
        for (offer, reason) in choice.skipped { context.console.warning("nodus: peer \(offer.description): \(reason); skipped") }
        context.console.info("nodus: " + choice.lines[0])
        return try found(choice, console: context.console)
    }

    /// At most this many peers' manifests are read (each a connection).
    public static let maxPeers = 8

    /// The peer named on the command line, or those that answered.
    func candidates(_ context: SourceContext) throws -> [Discovery.Offer] {
        if let server { return [Discovery.Offer(host: server.host, port: server.port)] }
        let targets = DiscoverySeeker.broadcastTargets()
        guard !targets.isEmpty else { throw SpiritError("no interface with a broadcast address to look for peers on") }
        let offers = try DiscoverySeeker.seek(targets: targets.map(\.address), windowMilliseconds: Self.discoveryWindowMillis,
                                              quietMilliseconds: Self.discoveryQuietMillis)
        guard !offers.isEmpty else {
            throw SpiritError("no peer answered on " + targets.map(\.interface).joined(separator: ", ")
                + " within \(Self.discoveryWindowMillis) ms (UDP \(Discovery.port))")
        }
        context.console.info("nodus: \(offers.count) peer(s): " + offers.map(\.description).joined(separator: ", "))
        return Discovery.ranked(offers)
    }

    /// A peer's manifest from its `manifest` export, parsed (not yet checked).
    public static func manifest(of peer: Discovery.Offer, idleMillis: Int) -> Result<Manifest, SpiritError> {
        do {
            let address = try SocketAddress(host: peer.host, port: peer.port)
            return .success(try Manifest.parse(try readSmallExport(address, NodusExports.manifest, idleMillis: idleMillis)))
        } catch {
            return .failure(SpiritError("\(error)"))
        }
    }

    /// The chosen image, read from every peer that serves it.
    func found(_ choice: PeerSelection.Choice, console: Console) throws -> FoundImage {
        let addresses = try choice.peers.map { try SocketAddress(host: $0.host, port: $0.port) }
        if stream, choice.manifest.blocks != nil {
            console.info("nodus: crom.nodus.stream=1: the root will read the image from " + addresses.map { "\($0)" }.joined(separator: ", ")
                + " while it is copied into RAM, each block checked against the signed block list")
            var found = FoundImage(source: name, origin: "nodus peer \(addresses[0]) (streamed)", manifest: choice.manifest,
                                   openImage: { throw SpiritError("a streamed image is read by spirit nodus hydrate, not copied first") },
                                   release: {}, layers: .nodus(addresses, idleMillis: idleMillis), models: .nodus(addresses, idleMillis: idleMillis))
            found.stream = StreamedImage(peers: addresses.map { "\($0)" }, stallMillis: Self.streamStallMillis)
            return found
        }
        if stream {
            console.warning("crom.nodus.stream=1: the manifest of \(choice.manifest.image) has no block list to check streamed blocks "
                + "against; the image is copied into RAM first")
        }
        let open = try Self.imageReader(choice, idleMillis: idleMillis, stallMillis: Self.stallMillis, console: console)
        // The layers and model packs from the first of these peers that answers.
        return FoundImage(source: name, origin: "nodus peer \(addresses[0])", manifest: choice.manifest, openImage: open,
                          release: {}, layers: .nodus(addresses, idleMillis: idleMillis), models: .nodus(addresses, idleMillis: idleMillis))
    }

    /// How long a peer may take over one block before its blocks go to the others.
    public static let stallMillis = 5000
    /// The same for a streaming boot: longer, because the root already
    /// reads through the peers, and dropping the last one for a slow link
    /// would fail the root's reads that a little patience would have served.
    public static let streamStallMillis = 30_000

    /// How the chosen image is read: from every peer serving it at once,
    /// each block checked against the signed block list (MultiPeerReader);
    /// or, for a manifest without a block list (or when no peer serves a
    /// list that matches it), from the first peer alone, in order, as
    /// before block lists (the copy still checks the image's SHA-256).
    public static func imageReader(_ choice: PeerSelection.Choice, idleMillis: Int, stallMillis: Int,
                                   console: Console) throws -> @Sendable () throws -> any ImageStream {
        let manifest = choice.manifest
        let addresses = try choice.peers.map { try SocketAddress(host: $0.host, port: $0.port) }
        let primary = addresses[0]
        let single: @Sendable () throws -> any ImageStream = {
            try stream(primary, export: manifest.sha256, size: manifest.size, idleMillis: idleMillis)
        }
        guard let blocks = manifest.blocks else {
            if addresses.count > 1 { console.info("nodus: the manifest has no block list: reading the image from \(primary) alone") }
            return single
        }
        guard let hashes = blockList(manifest: manifest, blocks: blocks, addresses: addresses, idleMillis: idleMillis, console: console) else {
            console.info("nodus: no peer served a block list matching the manifest: reading the image from \(primary) alone")
            return single
        }
        console.info("nodus: reading the image from \(addresses.count) peer(s) (" + addresses.map { "\($0)" }.joined(separator: ", ")
            + "), each \(blocks.blockSize >> 10) KiB block checked against the signed block list")
        return {
            let peers = blockPeers(addresses, manifest: manifest, stallMillis: stallMillis)
            let reader = MultiPeerReader(hashes: hashes, peers: peers, stallMicros: Int64(stallMillis) * 1000) { console.warning("nodus: " + $0) }
            try reader.start()
            return MultiPeerImageStream(reader: reader, console: console)
        }
    }
}

extension NodusSource {
    /// The first block list a peer serves that matches the signed
    /// manifest's `blocks_sha256`; nil (each peer's problem said) if none.
    public static func blockList(manifest: Manifest, blocks: Manifest.Blocks, addresses: [SocketAddress], idleMillis: Int,
                                 console: Console) -> BlockHashes? {
        for address in addresses {
            do {
                let count = BlockHashes.blockCount(imageSize: manifest.size, blockSize: blocks.blockSize)
                let bytes = try readSmallExport(address, NodusExports.blocks, idleMillis: idleMillis, limit: count * BlockHashes.digestSize)
                return try BlockHashes.parse(bytes, blocks: blocks, imageSize: manifest.size)
            } catch {
                console.warning("nodus: peer \(address): no usable block list: \(error)")
            }
        }
        return nil
    }

    /// Each peer's image export as a BlockPeer: a connection refuses an
    /// export whose size is not the manifest's.
    public static func blockPeers(_ addresses: [SocketAddress], manifest: Manifest, stallMillis: Int) -> [BlockPeer] {
        addresses.map { address in
            BlockPeer(name: "\(address)") {
                let client = try NBDClient.connect(address, export: manifest.sha256, timeoutMilliseconds: stallMillis)
                guard client.size == manifest.size else {
                    client.disconnect()
                    throw SpiritError("its export is \(client.size) bytes; the manifest says \(manifest.size)")
                }
                return NBDBlockFetcher(client: client)
            }
        }
    }
}

/// The image read from several peers at once (MultiPeerReader).
public struct MultiPeerImageStream: ImageStream {
    public let reader: MultiPeerReader
    let console: Console
    public init(reader: MultiPeerReader, console: Console) {
        self.reader = reader
        self.console = console
    }
    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try reader.read(into: buffer) }
    public func close() {
        reader.close()
        console.info("nodus: read the image from " + reader.summary)
    }
}

/// An NBD export read in order, as the image copy reads any source.
public struct NBDExportStream: ImageStream {
    var reader: NBDSequentialReader
    public init(reader: NBDSequentialReader) { self.reader = reader }
    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try reader.read(into: buffer) }
    public func close() { reader.close() }
}

extension NodusSource {
    /// A small export (a manifest, a list of layers or models) read whole.
    static func readSmallExport(_ address: SocketAddress, _ export: String, idleMillis: Int,
                                limit: Int = MediaFiles.manifestLimit) throws -> [UInt8] {
        let client = try NBDClient.connect(address, export: export, timeoutMilliseconds: idleMillis)
        defer { client.disconnect() }
        guard client.size <= limit else {
            throw SpiritError("its \(export) export is \(client.size) bytes, more than the \(limit) it can be")
        }
        var reader = NBDSequentialReader(client: client)
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try reader.read(into: $0) }
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        return bytes
    }

    /// A file of `size` bytes on a peer's export, for ImageCopy.
    static func stream(_ address: SocketAddress, export: String, size: Int64, idleMillis: Int) throws -> any ImageStream {
        let client = try NBDClient.connect(address, export: export, timeoutMilliseconds: idleMillis)
        guard client.size == size else {
            client.disconnect()
            throw SpiritError("the peer's export \(export.isEmpty ? "(default)" : export) is \(client.size) bytes; the manifest says \(size)")
        }
        return NBDExportStream(reader: NBDSequentialReader(client: client))
    }
}
