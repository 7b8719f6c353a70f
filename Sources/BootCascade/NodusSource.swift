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
/// old peer is refused and the next one tried; the image is
/// then copied into RAM over NBD (NBDExportStream) and the connection
/// closed, so that nothing depends on the network after the boot. The
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

    /// `stream` is crom.nodus.stream=1, which this build does not do yet:
    /// it says so and copies the image into RAM as without it.
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
        if stream {
            context.console.warning("crom.nodus.stream=1: using the peer's export as the lower layer is not supported yet; "
                + "the image is copied into RAM")
        }
        try context.cancel.check(name)
        let lease = try network.up(context, idleMillis: idleMillis)
        context.console.debug("nodus: \(lease)")
        try context.cancel.check(name)
        let peers = try candidates(context)
        var reasons: [String] = []
        for peer in peers {
            try context.cancel.check(name)
            do {
                return try offer(peer, context: context)
            } catch {
                context.console.warning("nodus: peer \(peer.description): \(error); trying the next one")
                reasons.append("\(peer.host):\(peer.port): \(error)")
            }
        }
        throw SpiritError("no peer had a usable image (" + reasons.joined(separator: "; ") + ")")
    }

    /// The peer named on the command line, or those that answered.
    func candidates(_ context: SourceContext) throws -> [Discovery.Offer] {
        if let server { return [Discovery.Offer(host: server.host, port: server.port)] }
        let targets = DiscoverySeeker.broadcastTargets()
        guard !targets.isEmpty else { throw SpiritError("no interface with a broadcast address to look for peers on") }
        let offers = try DiscoverySeeker.seek(targets: targets.map(\.address), windowMilliseconds: Self.discoveryWindowMillis)
        guard !offers.isEmpty else {
            throw SpiritError("no peer answered on " + targets.map(\.interface).joined(separator: ", ")
                + " within \(Self.discoveryWindowMillis) ms (UDP \(Discovery.port))")
        }
        context.console.info("nodus: \(offers.count) peer(s): " + offers.map(\.description).joined(separator: ", "))
        return Discovery.ranked(offers)
    }

    /// The peer's manifest, checked; an image stream on its SHA-256 export.
    func offer(_ peer: Discovery.Offer, context: SourceContext) throws -> FoundImage {
        let address = try SocketAddress(host: peer.host, port: peer.port)
        let manifest = try Manifest.parse(try Self.readSmallExport(address, NodusExports.manifest, idleMillis: idleMillis))
        try trust?.check(manifest)
        if let offered = peer.sha256, offered != manifest.sha256 {
            throw SpiritError("it announced image \(offered.prefix(12)) but its manifest is for \(manifest.sha256.prefix(12))")
        }
        let idle = idleMillis
        return FoundImage(source: name, origin: "nodus peer \(address)", manifest: manifest,
                          openImage: { try Self.stream(address, export: manifest.sha256, size: manifest.size, idleMillis: idle) },
                          release: {}, layers: .nodus(address, idleMillis: idle), models: .nodus(address, idleMillis: idle))
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
    static func readSmallExport(_ address: SocketAddress, _ export: String, idleMillis: Int) throws -> [UInt8] {
        let client = try NBDClient.connect(address, export: export, timeoutMilliseconds: idleMillis)
        defer { client.disconnect() }
        guard client.size <= MediaFiles.manifestLimit else {
            throw SpiritError("its \(export) export is \(client.size) bytes, more than a manifest can be")
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
