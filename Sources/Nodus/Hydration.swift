import SpiritCore

/// Brings a streamed image into RAM block by block, from several peers at
/// once, while readers (the kernel, through the Hydrator's NBD session) ask
/// for any part of it: a reader's blocks are fetched first, the rest in
/// order behind them. Each block is checked against the signed block list
/// before it is stored and counted as present; a peer that fails, stalls
/// or sends a bad block is dropped by name and its blocks go to the others
/// (HydrationScheduler, the pure core, decides). Where the bytes go is a
/// closure (`store`, given a block's offset and bytes): the RAM file in
/// `spirit nodus hydrate`, memory in tests.
public final class Hydration: @unchecked Sendable {
    public let hashes: BlockHashes
    let peers: [BlockPeer]
    let store: @Sendable (Int64, [UInt8]) throws -> Void
    let report: @Sendable (String) -> Void
    let monitor = Monitor()
    let startedMicros: Int64
    // Under `monitor`:
    var scheduler: HydrationScheduler
    var closed = false
    var storeFailure: String?
    var saidStuck = false

    /// `report` gets a line for each peer dropped, naming it and why, and
    /// one when no peer is left.
    public init(hashes: BlockHashes, peers: [BlockPeer], stallMicros: Int64 = 5_000_000,
                store: @escaping @Sendable (Int64, [UInt8]) throws -> Void, report: @escaping @Sendable (String) -> Void) {
        self.hashes = hashes
        self.peers = peers
        self.store = store
        self.report = report
        startedMicros = Kernel.bootTimeMicros()
        scheduler = HydrationScheduler(blockCount: hashes.count, peers: peers.count, stallMicros: stallMicros)
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
            if valid {
                do {
                    try store(hashes.range(of: block).offset, bytes)
                } catch {
                    // RAM is full or the file is gone: no peer can help.
                    monitor.withLock {
                        if storeFailure == nil { storeFailure = "unable to store block \(block) in RAM: \(error)" }
                        monitor.broadcast()
                    }
                    return false
                }
            }
            let outcome = monitor.withLock {
                let outcome = scheduler.arrived(block, from: peer, valid: valid)
                if case .dropped(let reason) = outcome { sayDropped(peer, reason) }
                monitor.broadcast()
                return outcome
            }
            // .ignored: dropped meanwhile (it stalled): its blocks went to the others.
            return outcome == .accepted
        }
    }

    /// The next block for a connection of `peer`, waiting while every
    /// absent block is in flight; nil when it should stop.
    func nextBlock(for peer: Int) -> Int? {
        monitor.withLock {
            while !closed, storeFailure == nil, scheduler.dropped[peer] == nil, !scheduler.isComplete {
                let now = Kernel.bootTimeMicros()
                if let block = scheduler.next(for: peer, now: now) { return block }
                monitor.wait(untilBootMicros: now + 1_000_000)
            }
            return nil
        }
    }

    func fail(_ peer: Int, _ why: String) {
        monitor.withLock {
            if !closed, scheduler.failed(peer, why) { sayDropped(peer, .failed(why)) }
            monitor.broadcast()
        }
    }

    /// Says a drop, under `monitor` and before the broadcast that wakes the
    /// waiters: the peer's line comes before whatever they say of it (the
    /// copy's end, a read's EIO).
    func sayDropped(_ peer: Int, _ reason: BlockScheduler.DropReason) {
        let others = scheduler.activePeers.map { peers[$0].name }
        report("dropped peer \(peers[peer].name): \(reason); "
            + (others.isEmpty ? "no peer is left" : "its blocks go to " + others.joined(separator: ", ")))
    }

    /// Why nothing more can arrive, or nil while something can. Under `monitor`.
    func stuckReason() -> String? {
        if let storeFailure { return storeFailure }
        guard scheduler.isStuck else { return nil }
        let reasons = peers.indices.map { "\(peers[$0].name): \(scheduler.dropped[$0].map { "\($0)" } ?? "")" }
        return "no peer is left to read the image from (" + reasons.joined(separator: "; ") + ")"
    }

    /// Waits until bytes `offset..<offset+length` are in RAM: nil when
    /// they are (the reader may read them from the store), `.io` when they
    /// cannot come (every peer dropped; said once on the console, so that a
    /// root that cannot be read is never a silent hang).
    public func ensure(offset: Int64, length: Int) -> NBD.Error? {
        let range = HydrationScheduler.blocks(offset: offset, length: length, blockSize: hashes.blockSize, imageSize: hashes.imageSize)
        var stuck: String?
        defer {
            if let stuck { report(stuck + ": reads of the image fail (EIO)") }
        }
        return monitor.withLock { () -> NBD.Error? in
            var missing = scheduler.demand(range)
            if !missing.isEmpty { monitor.broadcast() }
            while true {
                missing.removeAll { scheduler.isPresent($0) }
                if missing.isEmpty { return nil }
                if closed { return .io }
                if let reason = stuckReason() {
                    if !saidStuck {
                        saidStuck = true
                        stuck = reason
                    }
                    return .io
                }
                let now = Kernel.bootTimeMicros()
                let expired = scheduler.expire(now: now)
                if !expired.isEmpty {
                    for (peer, reason) in expired { sayDropped(peer, reason) }
                    monitor.broadcast()
                }
                monitor.wait(untilBootMicros: min(scheduler.nextDeadline ?? .max, now + 1_000_000))
            }
        }
    }

    /// Waits until every block is in RAM (nil) or none more can come (why).
    /// `progress` is called about once a second, outside the lock.
    public func waitUntilComplete(progress: (HydrationProgress) -> Void = { _ in }) -> String? {
        while true {
            let outcome: (done: Bool, problem: String?) = monitor.withLock {
                let deadline = Kernel.bootTimeMicros() + 1_000_000
                while true {
                    if scheduler.isComplete { return (true, nil) }
                    if let reason = stuckReason() { return (true, reason) }
                    if closed { return (true, "the copy was stopped") }
                    let now = Kernel.bootTimeMicros()
                    let expired = scheduler.expire(now: now)
                    if !expired.isEmpty {
                        for (peer, reason) in expired { sayDropped(peer, reason) }
                        monitor.broadcast()
                    }
                    if now >= deadline { return (false, nil) }
                    monitor.wait(untilBootMicros: min(scheduler.nextDeadline ?? .max, deadline))
                }
            }
            progress(self.progress(.streaming))
            if outcome.done { return outcome.problem }
        }
    }

    /// Stops the connections (each closes its socket when its read ends);
    /// waiting readers get EIO.
    public func close() {
        monitor.withLock {
            closed = true
            monitor.broadcast()
        }
    }

    /// Where the copy is, for the state file.
    public func progress(_ state: HydrationProgress.State, endedMicros: Int64? = nil, problem: String? = nil) -> HydrationProgress {
        monitor.withLock {
            let present = scheduler.presentCount
            var bytes = Int64(present) * Int64(hashes.blockSize)
            // The last block may be short.
            if present > 0, hashes.count > 0, scheduler.isPresent(hashes.count - 1) {
                bytes -= Int64(hashes.blockSize - hashes.range(of: hashes.count - 1).length)
            }
            return HydrationProgress(state: state, present: present, total: hashes.count, bytes: bytes, totalBytes: hashes.imageSize,
                                     peers: peers.indices.map { .init(name: peers[$0].name, blocks: scheduler.delivered[$0],
                                                                      dropped: scheduler.dropped[$0].map { "\($0)" }) },
                                     startedMicros: startedMicros, endedMicros: endedMicros, problem: problem)
        }
    }
}
