import SpiritCore
import Synchronization
import Testing
@testable import Nodus

/// The range scheduler with scripted peers: the test plays the peers and
/// the clock.
@Suite struct BlockSchedulerTests {
    @Test func blocksGoLowestFirstWithinTheWindowAndAreTakenInOrder() {
        var scheduler = BlockScheduler(blockCount: 6, peers: 2, window: 3, stallMicros: 1000)
        #expect(scheduler.next(for: 0, now: 0) == 0)
        #expect(scheduler.next(for: 1, now: 0) == 1)
        #expect(scheduler.next(for: 0, now: 0) == 2)
        #expect(scheduler.next(for: 1, now: 0) == nil) // the window (3 past block 0) is full
        #expect(scheduler.arrived(1, from: 1, valid: true) == .accepted)
        #expect(!scheduler.nextReady) // block 0 first
        #expect(scheduler.arrived(0, from: 0, valid: true) == .accepted)
        #expect(scheduler.nextReady)
        scheduler.consume()
        #expect(scheduler.next(for: 1, now: 0) == 3)
        #expect(scheduler.delivered == [1, 1])
    }

    @Test func aStalledPeerIsDroppedAtItsDeadlineAndItsBlockGoesToTheOther() {
        var scheduler = BlockScheduler(blockCount: 4, peers: 2, window: 4, stallMicros: 5_000_000)
        #expect(scheduler.next(for: 0, now: 0) == 0) // peer 0 will never answer
        #expect(scheduler.next(for: 1, now: 0) == 1)
        #expect(scheduler.arrived(1, from: 1, valid: true) == .accepted)
        #expect(scheduler.expire(now: 4_999_999).isEmpty)
        #expect(scheduler.nextDeadline == 5_000_000)
        let expired = scheduler.expire(now: 5_000_000)
        #expect(expired.map(\.peer) == [0])
        #expect(expired.first?.reason == .stalled(block: 0, seconds: 5))
        #expect(scheduler.next(for: 0, now: 5_000_000) == nil) // dropped: it stops
        #expect(scheduler.next(for: 1, now: 5_000_000) == 0)
        // The stalled peer's late answer is not taken.
        #expect(scheduler.arrived(0, from: 0, valid: true) == .ignored)
        #expect(scheduler.arrived(0, from: 1, valid: true) == .accepted)
        #expect(scheduler.activePeers == [1])
    }

    @Test func aVanishedPeerGivesBackEveryBlockItHeld() {
        var scheduler = BlockScheduler(blockCount: 5, peers: 2, window: 5, stallMicros: 1000)
        #expect(scheduler.next(for: 0, now: 0) == 0)
        #expect(scheduler.next(for: 0, now: 0) == 1) // two connections to peer 0
        #expect(scheduler.next(for: 1, now: 0) == 2)
        let first = scheduler.failed(0, "connection reset")
        let second = scheduler.failed(0, "its second connection too")
        #expect(first)
        #expect(!second) // said once
        #expect(scheduler.dropped[0] == .failed("connection reset"))
        #expect([scheduler.next(for: 1, now: 0), scheduler.next(for: 1, now: 0), scheduler.next(for: 1, now: 0)] == [0, 1, 3])
        #expect(!scheduler.isStuck)
    }

    @Test func aPeerSendingABadBlockIsDroppedAndTheBlockReadAgainElsewhere() {
        var scheduler = BlockScheduler(blockCount: 3, peers: 3, window: 3, stallMicros: 1000)
        #expect(scheduler.next(for: 0, now: 0) == 0)
        #expect(scheduler.next(for: 1, now: 0) == 1)
        #expect(scheduler.arrived(1, from: 1, valid: false) == .dropped(.corrupt(block: 1)))
        #expect(scheduler.dropped[1] == .corrupt(block: 1))
        #expect(scheduler.next(for: 2, now: 0) == 1)
        #expect(scheduler.arrived(1, from: 2, valid: true) == .accepted)
    }

    @Test func withEveryPeerGoneTheReadIsStuck() {
        var scheduler = BlockScheduler(blockCount: 2, peers: 1, window: 2, stallMicros: 1000)
        #expect(scheduler.next(for: 0, now: 0) == 0)
        scheduler.failed(0, "refused")
        #expect(scheduler.isStuck)
    }
}

/// MultiPeerReader with peers played in memory, each connection a thread.
@Suite struct MultiPeerReaderTests {
    static let blockSize = 4096
    let image: [UInt8] = {
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        return (0..<(40 * 4096 + 17)).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state >> 32)
        }
    }()

    /// A peer that serves `image`, corrupting `corrupt` blocks, failing
    /// after `failAfter` reads, or hanging (a stall) after `stallAfter`.
    struct ScriptedPeer: BlockFetching {
        let image: [UInt8]
        var corrupt: Set<Int> = []
        var failAfter: Int? = nil
        var stallAfter: Int? = nil
        let script: Script

        mutating func read(offset: Int64, length: Int) throws -> [UInt8] {
            let count = script.reads.add(1, ordering: .relaxed).newValue
            if let failAfter, count > failAfter { throw SpiritError("connection reset by peer") }
            if let stallAfter, count > stallAfter {
                while !script.released.load(ordering: .relaxed) { Kernel.sleep(milliseconds: 10) }
                throw SpiritError("timed out")
            }
            // Every peer takes a little time, so that each gets blocks.
            Kernel.sleep(milliseconds: 1)
            var bytes = Array(image[Int(offset)..<Int(offset) + length])
            if corrupt.contains(Int(offset) / MultiPeerReaderTests.blockSize) { bytes[0] ^= 0xff }
            return bytes
        }

        func close() {}
    }

    final class Script: Sendable {
        let reads = Atomic<Int>(0)
        let released = Atomic<Bool>(false)
        let lines = Mutex<[String]>([])
    }

    func readAll(_ peers: [(name: String, corrupt: Set<Int>, failAfter: Int?, stallAfter: Int?)],
                 stallMicros: Int64 = 5_000_000) throws -> (bytes: [UInt8], lines: [String], reader: MultiPeerReader, scripts: [Script]) {
        let hashes = BlockHashes.of(image, blockSize: Self.blockSize)
        let scripts = peers.map { _ in Script() }
        let image = self.image
        let blockPeers = peers.enumerated().map { index, peer in
            let script = scripts[index]
            return BlockPeer(name: peer.name, connections: 1) {
                ScriptedPeer(image: image, corrupt: peer.corrupt, failAfter: peer.failAfter, stallAfter: peer.stallAfter,
                             script: script)
            }
        }
        let log = Script()
        let reader = MultiPeerReader(hashes: hashes, peers: blockPeers, window: 8, stallMicros: stallMicros) { line in
            log.lines.withLock { $0.append(line) }
        }
        try reader.start()
        defer {
            reader.close()
            for script in scripts { script.released.store(true, ordering: .relaxed) }
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 10_000)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try reader.read(into: $0) }
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        return (bytes, log.lines.withLock { $0 }, reader, scripts)
    }

    @Test func twoGoodPeersShareTheImage() throws {
        let result = try readAll([("peer-a", [], nil, nil), ("peer-b", [], nil, nil)])
        #expect(result.bytes == image)
        #expect(result.lines.isEmpty)
        #expect(result.reader.deliveredBlocks.reduce(0, +) == 41)
    }

    @Test func aPeerThatVanishesIsDroppedByNameAndTheOtherFinishes() throws {
        let result = try readAll([("peer-a", [], 3, nil), ("peer-b", [], nil, nil)])
        #expect(result.bytes == image)
        #expect(result.lines.count == 1)
        #expect(result.lines.first?.hasPrefix("dropped peer peer-a: connection reset by peer; its blocks go to peer-b") == true)
    }

    @Test func aPeerSendingABadBlockIsDroppedByName() throws {
        let result = try readAll([("good", [], nil, nil), ("liar", Set(0..<41), nil, nil)])
        #expect(result.bytes == image)
        let lines = result.lines
        #expect(lines.count == 1)
        #expect(lines.first?.contains("dropped peer liar: block ") == true)
        #expect(lines.first?.contains("does not match the signed block list") == true)
    }

    @Test func aStalledPeerIsDroppedAtItsDeadline() throws {
        let start = Kernel.bootTimeMicros()
        let result = try readAll([("slow", [], nil, 2), ("quick", [], nil, nil)], stallMicros: 300_000)
        #expect(result.bytes == image)
        #expect(result.lines.count == 1)
        #expect(result.lines.first?.hasPrefix("dropped peer slow: block ") == true)
        #expect(result.lines.first?.contains("(stalled)") == true)
        #expect(Kernel.bootTimeMicros() - start < 5_000_000)
    }

    @Test func withNoPeerLeftTheReadFailsNamingEach() throws {
        #expect(throws: SpiritError.self) {
            _ = try readAll([("a", [], 1, nil), ("b", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], nil, nil)])
        }
    }
}
