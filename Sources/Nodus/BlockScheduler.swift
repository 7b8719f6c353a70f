/// Which peer reads which block of an image, when an image is read from
/// several peers at once: the pure core of MultiPeerReader, with no
/// threads, sockets or clock of its own (the time is passed in), so that a
/// test plays the peers.
///
/// Blocks are handed out lowest index first, and never more than `window`
/// past the first block the consumer has not taken yet: the copy writes the
/// image in order, so what arrives early waits in RAM, and the window bounds
/// it. A peer is dropped when it fails (its connection broke), when a block
/// it was given is not back by its deadline (it stalled), or when a block it
/// sent does not match the block list (its bytes are not the image's); its
/// blocks in flight go back to the queue for the others.
public struct BlockScheduler: Sendable {
    public enum DropReason: Sendable, Equatable, CustomStringConvertible {
        case failed(String)
        case stalled(block: Int, seconds: Int64)
        case corrupt(block: Int)

        public var description: String {
            switch self {
            case .failed(let why): why
            case .stalled(let block, let seconds): "block \(block) was not back within \(seconds) s (stalled)"
            case .corrupt(let block): "block \(block) does not match the signed block list (its bytes are not the image's)"
            }
        }
    }

    enum Block: Equatable {
        case waiting
        case inFlight(peer: Int, deadline: Int64)
        case arrived
    }

    public let blockCount: Int
    public let window: Int
    public let stallMicros: Int64
    var blocks: [Block]
    /// Why each peer was dropped; nil while it is in use.
    public private(set) var dropped: [DropReason?]
    /// The blocks each peer delivered (for the summary and the bench).
    public private(set) var delivered: [Int]
    /// The first block the consumer has not taken.
    public private(set) var consumed = 0
    /// The lowest block that may still be waiting (a hint: the search starts here).
    var lowestWaiting = 0

    public init(blockCount: Int, peers: Int, window: Int = 16, stallMicros: Int64) {
        self.blockCount = blockCount
        self.window = max(1, window)
        self.stallMicros = stallMicros
        blocks = Array(repeating: .waiting, count: blockCount)
        dropped = Array(repeating: nil, count: peers)
        delivered = Array(repeating: 0, count: peers)
    }

    public var activePeers: [Int] { dropped.indices.filter { dropped[$0] == nil } }
    public var isComplete: Bool { consumed == blockCount }
    /// Nothing more can arrive: every peer is dropped with blocks missing.
    public var isStuck: Bool { !isComplete && activePeers.isEmpty }

    /// The next block for `peer` to read, or nil (none left in the window,
    /// or the peer is dropped: it should stop).
    public mutating func next(for peer: Int, now: Int64) -> Int? {
        guard dropped[peer] == nil else { return nil }
        while lowestWaiting < blockCount, blocks[lowestWaiting] != .waiting { lowestWaiting += 1 }
        let end = min(blockCount, consumed + window)
        var index = lowestWaiting
        while index < end {
            if blocks[index] == .waiting {
                blocks[index] = .inFlight(peer: peer, deadline: now + stallMicros)
                return index
            }
            index += 1
        }
        return nil
    }

    /// What became of a block a peer sent.
    public enum Outcome: Equatable, Sendable {
        /// Keep it: the consumer takes it in order.
        case accepted
        /// Not wanted: the peer was dropped meanwhile (its block went to another).
        case ignored
        /// The peer is dropped (its block did not match).
        case dropped(DropReason)
    }

    /// `peer` sent `block`; `valid` is whether it matched the block list.
    public mutating func arrived(_ block: Int, from peer: Int, valid: Bool) -> Outcome {
        guard dropped[peer] == nil, case .inFlight(let owner, _) = blocks[block], owner == peer else { return .ignored }
        guard valid else {
            drop(peer, .corrupt(block: block))
            return .dropped(.corrupt(block: block))
        }
        blocks[block] = .arrived
        delivered[peer] += 1
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

    /// Drops each peer with a block past its deadline; returns them.
    public mutating func expire(now: Int64) -> [(peer: Int, reason: DropReason)] {
        var expired: [(Int, DropReason)] = []
        for index in blocks.indices {
            guard case .inFlight(let peer, let deadline) = blocks[index], deadline <= now, dropped[peer] == nil else { continue }
            let reason = DropReason.stalled(block: index, seconds: stallMicros / 1_000_000)
            drop(peer, reason)
            expired.append((peer, reason))
        }
        return expired
    }

    /// The earliest deadline of a block in flight (when to call `expire`).
    public var nextDeadline: Int64? {
        blocks.compactMap { if case .inFlight(_, let deadline) = $0 { deadline } else { nil } }.min()
    }

    /// Whether the consumer's next block has arrived.
    public var nextReady: Bool { consumed < blockCount && blocks[consumed] == .arrived }

    /// The consumer took its next block: the window moves on.
    public mutating func consume() {
        precondition(nextReady)
        consumed += 1
    }

    mutating func drop(_ peer: Int, _ reason: DropReason) {
        dropped[peer] = reason
        for index in blocks.indices {
            if case .inFlight(peer, _) = blocks[index] {
                blocks[index] = .waiting
                lowestWaiting = min(lowestWaiting, index)
            }
        }
    }
}
