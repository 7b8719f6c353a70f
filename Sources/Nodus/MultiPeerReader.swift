import SpiritCore

/// A connection to one peer that reads byte ranges of the image: NBD on a
/// Spirit (NBDBlockFetcher), a script in tests.
public protocol BlockFetching {
    mutating func read(offset: Int64, length: Int) throws -> [UInt8]
    func close()
}

/// A peer offering the image: a name for the console, how many
/// connections to read it over, and how to open one.
public struct BlockPeer: Sendable {
    public var name: String
    public var connections: Int
    public var connect: @Sendable () throws -> any BlockFetching

    public init(name: String, connections: Int = 2, connect: @escaping @Sendable () throws -> any BlockFetching) {
        self.name = name
        self.connections = max(1, connections)
        self.connect = connect
    }
}

extension BlockPeer {
    /// One connection's loop, the same for the copy (MultiPeerReader) and
    /// the streaming boot (Hydration): connect, fetch each block `next`
    /// hands out and check it against `hashes`; `deliver` takes the block
    /// and whether it matched, and says whether to go on. A connection or a
    /// read that fails goes to `fail`.
    func fetchBlocks(_ hashes: BlockHashes, next: () -> Int?, fail: (String) -> Void,
                     deliver: (_ block: Int, _ bytes: [UInt8], _ valid: Bool) -> Bool) {
        var fetcher: any BlockFetching
        do {
            fetcher = try connect()
        } catch {
            fail("unable to connect: \(error)")
            return
        }
        defer { fetcher.close() }
        while let block = next() {
            let (offset, length) = hashes.range(of: block)
            let bytes: [UInt8]
            do {
                bytes = try fetcher.read(offset: offset, length: length)
            } catch {
                fail("\(error)")
                return
            }
            guard deliver(block, bytes, hashes.verify(block, bytes)) else { return }
        }
    }
}

/// Reads an image from several peers at once and hands it out in order:
/// user-space failover, chosen over reconfiguring the kernel's nbd client,
/// because the copy already reads in user space, and only here can a block
/// be checked as it arrives and a peer that sent a bad one be named. Each
/// connection is a thread of its own that owns its socket; BlockScheduler
/// (the pure core) decides which block each reads, and which peers are
/// dropped. Each block is checked against the signed block list
/// (BlockHashes) before it is accepted; the copy hashes the whole image
/// against the manifest as well.
public final class MultiPeerReader: @unchecked Sendable {
    let hashes: BlockHashes
    let peers: [BlockPeer]
    let report: @Sendable (String) -> Void
    let monitor = Monitor()
    // Under `monitor`:
    var scheduler: BlockScheduler
    var arrived: [Int: [UInt8]] = [:]
    var closed = false
    // The consumer's own (one thread reads).
    var current: [UInt8] = []
    var currentUsed = 0

    /// `report` gets a line for each peer dropped, naming it and why.
    public init(hashes: BlockHashes, peers: [BlockPeer], window: Int = 16, stallMicros: Int64 = 5_000_000,
                report: @escaping @Sendable (String) -> Void) {
        self.hashes = hashes
        self.peers = peers
        self.report = report
        scheduler = BlockScheduler(blockCount: hashes.count, peers: peers.count, window: window, stallMicros: stallMicros)
    }

    /// Starts a thread per connection.
    public func start() throws(SystemError) {
        for (index, peer) in peers.enumerated() {
            for _ in 0..<peer.connections {
                try Threads.start { [self] in work(peer: index) }
            }
        }
    }

    func work(peer: Int) {
        peers[peer].fetchBlocks(hashes, next: { nextBlock(for: peer) }, fail: { fail(peer, $0) }) { block, bytes, valid in
            let outcome = monitor.withLock {
                let outcome = scheduler.arrived(block, from: peer, valid: valid)
                if outcome == .accepted { arrived[block] = bytes }
                monitor.broadcast()
                return outcome
            }
            switch outcome {
            case .accepted: return true
            case .ignored: return false // dropped meanwhile (it stalled): its blocks went to the others
            case .dropped(let reason):
                say(peer, reason)
                return false
            }
        }
    }

    /// The next block for a connection of `peer`, waiting while the window
    /// is full; nil when it should stop.
    func nextBlock(for peer: Int) -> Int? {
        monitor.withLock {
            while !closed, scheduler.dropped[peer] == nil, !scheduler.isComplete {
                let now = Kernel.bootTimeMicros()
                if let block = scheduler.next(for: peer, now: now) { return block }
                monitor.wait(untilBootMicros: now + 1_000_000)
            }
            return nil
        }
    }

    func fail(_ peer: Int, _ why: String) {
        let dropped = monitor.withLock {
            let dropped = !closed && scheduler.failed(peer, why)
            monitor.broadcast()
            return dropped
        }
        if dropped { say(peer, .failed(why)) }
    }

    func say(_ peer: Int, _ reason: BlockScheduler.DropReason) {
        let others = monitor.withLock { scheduler.activePeers.map { peers[$0].name } }
        report("dropped peer \(peers[peer].name): \(reason); "
            + (others.isEmpty ? "no peer is left" : "its blocks go to " + others.joined(separator: ", ")))
    }

    /// Up to buffer.count bytes of the image, in order; 0 at its end.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if currentUsed == current.count {
            guard let next = try nextInOrder() else { return 0 }
            current = next
            currentUsed = 0
        }
        let n = min(buffer.count, current.count - currentUsed)
        current.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + currentUsed, byteCount: n) }
        currentUsed += n
        return n
    }

    func nextInOrder() throws -> [UInt8]? {
        var stalled: [(peer: Int, reason: BlockScheduler.DropReason)] = []
        defer { for (peer, reason) in stalled { say(peer, reason) } }
        return try monitor.withLock { () throws -> [UInt8]? in
            while true {
                if scheduler.isComplete { return nil }
                if scheduler.nextReady {
                    let block = scheduler.consumed
                    scheduler.consume()
                    monitor.broadcast()
                    return arrived.removeValue(forKey: block)
                }
                let now = Kernel.bootTimeMicros()
                let expired = scheduler.expire(now: now)
                if !expired.isEmpty {
                    stalled += expired
                    monitor.broadcast()
                }
                if scheduler.isStuck {
                    let reasons = peers.indices.map { "\(peers[$0].name): \(scheduler.dropped[$0].map { "\($0)" } ?? "")" }
                    throw SpiritError("no peer is left to read block \(scheduler.consumed) of \(scheduler.blockCount) from ("
                        + reasons.joined(separator: "; ") + ")")
                }
                monitor.wait(untilBootMicros: min(scheduler.nextDeadline ?? .max, now + 1_000_000))
            }
        }
    }

    /// Stops the connections (each closes its own socket when its read ends).
    public func close() {
        monitor.withLock {
            closed = true
            monitor.broadcast()
        }
    }

    /// Which peer sent how much, and which were dropped: for the console.
    public var summary: String {
        monitor.withLock {
            peers.indices.map { index in
                let blocks = scheduler.delivered[index]
                var text = "\(peers[index].name) \(blocks) block\(blocks == 1 ? "" : "s")"
                if scheduler.dropped[index] != nil { text += " (dropped)" }
                return text
            }.joined(separator: ", ")
        }
    }

    /// The blocks each peer delivered, in the order of `peers`.
    public var deliveredBlocks: [Int] { monitor.withLock { scheduler.delivered } }
}

/// One NBD connection reading block after block.
public struct NBDBlockFetcher: BlockFetching {
    public let client: NBDClient
    var cookie: UInt64 = 1

    public init(client: NBDClient) { self.client = client }

    public mutating func read(offset: Int64, length: Int) throws -> [UInt8] {
        cookie += 1
        return try client.readBlock(cookie: cookie, offset: offset, length: length)
    }

    public func close() { client.disconnect() }
}
