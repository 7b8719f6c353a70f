/// Which block of a streamed image each peer connection fetches next, and
/// which are in RAM already: the pure core of the Hydrator (streaming
/// boot, crom.nodus.stream=1), with no threads, sockets or clock of its own
/// (the time is passed in), so that a test plays the peers and the kernel.
///
/// Unlike BlockScheduler (the copy-first path, which hands the image out in
/// order through a window), a streamed image is written into its RAM file
/// block by block as blocks arrive, in any order, so there is no window:
/// a block the kernel is waiting for (`demand`) goes first, then the lowest
/// block not yet in RAM, so that the background copy runs front to back. A
/// peer is dropped as BlockScheduler drops one: its connection broke, a
/// block was not back by its deadline, or a block did not match the signed
/// block list; its blocks in flight go back for the others.
public struct HydrationScheduler: Sendable {
    enum Block: Equatable {
        case absent
        case inFlight(peer: Int, deadline: Int64)
        case present
    }

    public let blockCount: Int
    public let stallMicros: Int64
    var blocks: [Block]
    /// Blocks a reader waits for, oldest first (each at most once).
    var demanded: [Int] = []
    /// Why each peer was dropped; nil while it is in use.
    public private(set) var dropped: [BlockScheduler.DropReason?]
    /// The blocks each peer delivered.
    public private(set) var delivered: [Int]
    /// How many blocks are in RAM.
    public private(set) var presentCount = 0
    /// The lowest block that may still be absent (where the search starts).
    var lowestAbsent = 0

    public init(blockCount: Int, peers: Int, stallMicros: Int64) {
        self.blockCount = blockCount
        self.stallMicros = stallMicros
        blocks = Array(repeating: .absent, count: blockCount)
        dropped = Array(repeating: nil, count: peers)
        delivered = Array(repeating: 0, count: peers)
    }

    public var activePeers: [Int] { dropped.indices.filter { dropped[$0] == nil } }
    public var isComplete: Bool { presentCount == blockCount }
    /// Nothing more can arrive: every peer is dropped with blocks missing.
    public var isStuck: Bool { !isComplete && activePeers.isEmpty }

    public func isPresent(_ block: Int) -> Bool { blocks[block] == .present }

    /// The blocks (of `blockSize` bytes) that bytes `offset..<offset+length`
    /// of an image of `imageSize` bytes touch; empty if the range is empty
    /// or not inside the image (the NBD session refuses such a read first).
    public static func blocks(offset: Int64, length: Int, blockSize: Int, imageSize: Int64) -> Range<Int> {
        guard length > 0, offset >= 0, blockSize > 0, offset < imageSize,
              Int64(length) <= imageSize - offset else { return 0..<0 }
        let first = Int(offset / Int64(blockSize))
        let last = Int((offset + Int64(length) - 1) / Int64(blockSize))
        return first..<(last + 1)
    }

    /// A reader needs `range`: its absent blocks go to the front of the
    /// queue. Returns those not in RAM yet (what the reader waits for).
    public mutating func demand(_ range: Range<Int>) -> [Int] {
        var missing: [Int] = []
        for block in range where blocks[block] != .present {
            missing.append(block)
            if !demanded.contains(block) { demanded.append(block) }
        }
        return missing
    }

    /// The next block for `peer` to fetch, or nil (none is absent and not
    /// in flight, or the peer is dropped: it should stop when nil comes
    /// with `isComplete` or its drop).
    public mutating func next(for peer: Int, now: Int64) -> Int? {
        guard dropped[peer] == nil else { return nil }
        demanded.removeAll { blocks[$0] == .present }
        if let block = demanded.first(where: { blocks[$0] == .absent }) {
            blocks[block] = .inFlight(peer: peer, deadline: now + stallMicros)
            return block
        }
        while lowestAbsent < blockCount, blocks[lowestAbsent] == .present { lowestAbsent += 1 }
        var index = lowestAbsent
        while index < blockCount {
            if blocks[index] == .absent {
                blocks[index] = .inFlight(peer: peer, deadline: now + stallMicros)
                return index
            }
            index += 1
        }
        return nil
    }

    /// `peer` sent `block`; `valid` is whether it matched the block list
    /// (the shell has written a valid block into the RAM file before it
    /// says so, so that `.accepted` means readers may read it there).
    public mutating func arrived(_ block: Int, from peer: Int, valid: Bool) -> BlockScheduler.Outcome {
        guard dropped[peer] == nil, case .inFlight(let owner, _) = blocks[block], owner == peer else { return .ignored }
        guard valid else {
            drop(peer, .corrupt(block: block))
            return .dropped(.corrupt(block: block))
        }
        blocks[block] = .present
        presentCount += 1
        delivered[peer] += 1
        demanded.removeAll { $0 == block }
        return .accepted
    }

    /// `peer` cannot go on (its connection broke, it refused a read).
    /// Returns false if it was dropped already.
    @discardableResult
    public mutating func failed(_ peer: Int, _ why: String) -> Bool {
        guard dropped[peer] == nil else { return false }
        drop(peer, .failed(why))
        return true
    }

    /// Drops each peer with a block past its deadline; returns them. The
    /// last peer left is not dropped for being slow (its deadline starts
    /// again): the root reads through it, and a slow peer is better than
    /// none. A dead one still ends at its connection's own timeout
    /// (`failed`).
    public mutating func expire(now: Int64) -> [(peer: Int, reason: BlockScheduler.DropReason)] {
        var expired: [(Int, BlockScheduler.DropReason)] = []
        for index in blocks.indices {
            guard case .inFlight(let peer, let deadline) = blocks[index], deadline <= now, dropped[peer] == nil else { continue }
            if activePeers == [peer] {
                blocks[index] = .inFlight(peer: peer, deadline: now + stallMicros)
                continue
            }
            let reason = BlockScheduler.DropReason.stalled(block: index, seconds: stallMicros / 1_000_000)
            drop(peer, reason)
            expired.append((peer, reason))
        }
        return expired
    }

    /// The earliest deadline of a block in flight (when to call `expire`).
    public var nextDeadline: Int64? {
        blocks.compactMap { if case .inFlight(_, let deadline) = $0 { deadline } else { nil } }.min()
    }

    mutating func drop(_ peer: Int, _ reason: BlockScheduler.DropReason) {
        dropped[peer] = reason
        for index in blocks.indices {
            if case .inFlight(peer, _) = blocks[index] {
                blocks[index] = .absent
                lowestAbsent = min(lowestAbsent, index)
            }
        }
    }
}
