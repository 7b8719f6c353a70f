import SpiritCore
import Synchronization
import Testing
@testable import Nodus

/// The streaming boot's core: the scheduler with the test playing peers,
/// readers and the clock; then Hydration with peers played in memory.
@Suite struct HydrationSchedulerTests {
    @Test func aReadersBlocksGoFirstThenTheRestInOrder() {
        var scheduler = HydrationScheduler(blockCount: 10, peers: 2, stallMicros: 1000)
        do { let got = scheduler.next(for: 0, now: 0); #expect(got == 0) }
        do { let got = scheduler.demand(7..<9); #expect(got == [7, 8]) }
        do { let got = scheduler.next(for: 1, now: 0); #expect(got == 7) }
        do { let got = scheduler.next(for: 0, now: 0); #expect(got == 8) }
        do { let got = scheduler.next(for: 0, now: 0); #expect(got == 1) } // nothing demanded is absent: in order again
        do { let got = scheduler.arrived(7, from: 1, valid: true); #expect(got == .accepted) }
        #expect(scheduler.isPresent(7))
        do { let got = scheduler.demand(6..<8); #expect(got == [6]) } // 7 is in RAM: only 6 is waited for
        do { let got = scheduler.next(for: 1, now: 0); #expect(got == 6) }
        #expect(scheduler.presentCount == 1)
        #expect(scheduler.delivered == [0, 1])
    }

    @Test func everyBlockIsFetchedOnceAndThenItIsComplete() {
        var scheduler = HydrationScheduler(blockCount: 5, peers: 1, stallMicros: 1000)
        var seen: [Int] = []
        while let block = scheduler.next(for: 0, now: 0) {
            seen.append(block)
            do { let got = scheduler.arrived(block, from: 0, valid: true); #expect(got == .accepted) }
        }
        #expect(seen == [0, 1, 2, 3, 4])
        #expect(scheduler.isComplete)
        #expect(!scheduler.isStuck)
        do { let got = scheduler.demand(0..<5); #expect(got.isEmpty) }
    }

    @Test func aBadBlockDropsThePeerAndGoesToTheOther() {
        var scheduler = HydrationScheduler(blockCount: 3, peers: 2, stallMicros: 1000)
        do { let got = scheduler.next(for: 0, now: 0); #expect(got == 0) }
        do { let got = scheduler.arrived(0, from: 0, valid: false); #expect(got == .dropped(.corrupt(block: 0))) }
        do { let got = scheduler.next(for: 0, now: 0); #expect(got == nil) }
        do { let got = scheduler.next(for: 1, now: 0); #expect(got == 0) }
        #expect(scheduler.activePeers == [1])
        #expect(!scheduler.isPresent(0))
    }

    @Test func aStalledPeerIsDroppedAtItsDeadlineAndALateBlockIsIgnored() {
        var scheduler = HydrationScheduler(blockCount: 3, peers: 2, stallMicros: 5_000_000)
        do { let got = scheduler.next(for: 0, now: 0); #expect(got == 0) }
        #expect(scheduler.nextDeadline == 5_000_000)
        #expect(scheduler.expire(now: 4_999_999).isEmpty)
        let expired = scheduler.expire(now: 5_000_000)
        #expect(expired.count == 1)
        #expect(expired.first?.peer == 0)
        #expect(expired.first?.reason == .stalled(block: 0, seconds: 5))
        do { let got = scheduler.arrived(0, from: 0, valid: true); #expect(got == .ignored) }
        do { let got = scheduler.next(for: 1, now: 5_000_000); #expect(got == 0) }
    }

    @Test func theLastPeerLeftIsNotDroppedForBeingSlow() {
        var scheduler = HydrationScheduler(blockCount: 3, peers: 2, stallMicros: 5_000_000)
        scheduler.failed(1, "connection reset by peer")
        do { let got = scheduler.next(for: 0, now: 0); #expect(got == 0) }
        #expect(scheduler.expire(now: 5_000_000).isEmpty)
        #expect(scheduler.dropped[0] == nil)
        // Its deadline started again; the block it was sent is still taken.
        #expect(scheduler.nextDeadline == 10_000_000)
        do { let got = scheduler.arrived(0, from: 0, valid: true); #expect(got == .accepted) }
    }

    @Test func withEveryPeerGoneItIsStuck() {
        var scheduler = HydrationScheduler(blockCount: 2, peers: 2, stallMicros: 1000)
        do { let got = scheduler.failed(0, "connection reset"); #expect(got) }
        do { let got = scheduler.failed(0, "again"); #expect(!got) } // once
        #expect(!scheduler.isStuck)
        do { let got = scheduler.failed(1, "connection refused"); #expect(got) }
        #expect(scheduler.isStuck)
    }

    @Test func theBlocksOfARangeStopAtTheImagesEnd() {
        #expect(HydrationScheduler.blocks(offset: 0, length: 1, blockSize: 10, imageSize: 25) == 0..<1)
        #expect(HydrationScheduler.blocks(offset: 9, length: 2, blockSize: 10, imageSize: 25) == 0..<2)
        #expect(HydrationScheduler.blocks(offset: 20, length: 5, blockSize: 10, imageSize: 25) == 2..<3)
        #expect(HydrationScheduler.blocks(offset: 20, length: 6, blockSize: 10, imageSize: 25).isEmpty) // past the end
        #expect(HydrationScheduler.blocks(offset: 0, length: 0, blockSize: 10, imageSize: 25).isEmpty)
        #expect(HydrationScheduler.blocks(offset: -1, length: 2, blockSize: 10, imageSize: 25).isEmpty)
        #expect(HydrationScheduler.blocks(offset: Int64.max - 1, length: 4, blockSize: 10, imageSize: 25).isEmpty)
    }
}

@Suite struct HydrationProgressTests {
    @Test func itReadsBackWhatItWrote() throws {
        let progress = HydrationProgress(state: .streaming, present: 3, total: 10, bytes: 3 << 20, totalBytes: 10 << 20,
                                         peers: [.init(name: "10.0.0.1:10809", blocks: 3), .init(name: "b \"x\"", blocks: 0, dropped: "stalled")],
                                         startedMicros: 1_000_000, endedMicros: nil, problem: nil)
        #expect(try HydrationProgress.parse(Array(progress.json.utf8)) == progress)
        var done = progress
        done.state = .done
        done.endedMicros = 9_000_000
        done.problem = "x"
        #expect(try HydrationProgress.parse(Array(done.json.utf8)) == done)
    }

    @Test func itsLineSaysHowFarTheCopyIs() {
        let progress = HydrationProgress(state: .streaming, present: 5, total: 20, bytes: 5 << 20, totalBytes: 20 << 20,
                                         peers: [.init(name: "p1", blocks: 5), .init(name: "p2", blocks: 0, dropped: "gone")],
                                         startedMicros: 0)
        #expect(progress.line(now: 3_000_000) == "image: streaming 5/20 blocks (25%, 5 of 20 MiB in RAM), for 3 s; peers: p1 5, p2 0 (dropped)")
    }

    @Test func badStateIsRefusedWithAReason() {
        #expect(throws: SpiritError.self) { try HydrationProgress.parse(Array("{".utf8)) }
        #expect(throws: SpiritError.self) { try HydrationProgress.parse(Array("{\"state\":\"odd\"}".utf8)) }
        #expect(throws: SpiritError.self) {
            try HydrationProgress.parse(Array("{\"state\":\"done\",\"blocks_present\":5,\"blocks_total\":4,\"bytes_present\":0,\"bytes_total\":0,\"started_us\":0}".utf8))
        }
    }
}

/// Hydration with peers played in memory, each connection a thread; the
/// store is memory.
@Suite struct HydrationTests {
    static let blockSize = 4096
    let image: [UInt8] = {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<(30 * 4096 + 100)).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state >> 32)
        }
    }()

    struct Peer: BlockFetching {
        let image: [UInt8]
        var corrupt = false
        var failAfter: Int?
        /// Blocks before this one wait until `released` (a slow peer).
        var holdBefore: Int?
        var delayMillis = 0
        let script: Script

        mutating func read(offset: Int64, length: Int) throws -> [UInt8] {
            let count = script.reads.add(1, ordering: .relaxed).newValue
            script.order.withLock { $0.append(Int(offset) / HydrationTests.blockSize) }
            if let failAfter, count > failAfter { throw SpiritError("connection reset by peer") }
            if let holdBefore, Int(offset) / HydrationTests.blockSize < holdBefore {
                while !script.released.load(ordering: .relaxed) { Kernel.sleep(milliseconds: 5) }
            }
            if delayMillis > 0 { Kernel.sleep(milliseconds: delayMillis) }
            var bytes = Array(image[Int(offset)..<Int(offset) + length])
            if corrupt { bytes[1] ^= 0x55 }
            return bytes
        }

        func close() {}
    }

    final class Script: Sendable {
        let reads = Atomic<Int>(0)
        let released = Atomic<Bool>(false)
        let order = Mutex<[Int]>([])
        let lines = Mutex<[String]>([])
        let stored = Mutex<[Int: [UInt8]]>([:])
    }

    func hydration(_ peers: [(name: String, corrupt: Bool, failAfter: Int?, holdBefore: Int?)], script: Script,
                   stallMicros: Int64 = 5_000_000) -> Hydration {
        let image = self.image
        let hashes = BlockHashes.of(image, blockSize: Self.blockSize)
        let blockPeers = peers.map { peer in
            BlockPeer(name: peer.name, connections: 1) {
                // Honest peers take a little time, so that a liar gets blocks too.
                Peer(image: image, corrupt: peer.corrupt, failAfter: peer.failAfter, holdBefore: peer.holdBefore,
                     delayMillis: peer.corrupt ? 0 : 2, script: script)
            }
        }
        return Hydration(hashes: hashes, peers: blockPeers, stallMicros: stallMicros,
                         store: { offset, bytes in script.stored.withLock { $0[Int(offset) / Self.blockSize] = bytes } },
                         report: { line in script.lines.withLock { $0.append(line) } })
    }

    func assembled(_ script: Script) -> [UInt8] {
        script.stored.withLock { stored in (0..<stored.count).flatMap { stored[$0] ?? [] } }
    }

    @Test func twoPeersBringTheWholeImageIntoRAM() throws {
        let script = Script()
        let hydration = hydration([("a", false, nil, nil), ("b", false, nil, nil)], script: script)
        try hydration.start()
        defer { hydration.close() }
        #expect(hydration.waitUntilComplete() == nil)
        #expect(assembled(script) == image)
        let progress = hydration.progress(.done)
        #expect(progress.present == 31)
        #expect(progress.bytes == Int64(image.count))
        #expect(progress.peers.map(\.blocks).reduce(0, +) == 31)
    }

    @Test func aReaderIsServedBeforeTheBackgroundCopyReachesItsBlock() throws {
        let script = Script()
        // The peer holds every block below 25 until released: a read of
        // block 27 must be answered while the background copy waits.
        let hydration = hydration([("only", false, nil, 25)], script: script)
        try hydration.start()
        defer {
            script.released.store(true, ordering: .relaxed)
            hydration.close()
        }
        Kernel.sleep(milliseconds: 50) // the connection is holding block 0
        // One connection, busy with block 0: release after the demand is queued.
        Threads.startForTest { Kernel.sleep(milliseconds: 100); script.released.store(true, ordering: .relaxed) }
        #expect(hydration.ensure(offset: 27 * 4096 + 10, length: 100) == nil)
        let order = script.order.withLock { $0 }
        // Block 27 was fetched right after the block in flight, not after 1...26.
        #expect(order.prefix(2) == [0, 27])
        #expect(script.stored.withLock { $0[27] } == Array(image[27 * 4096..<28 * 4096]))
        #expect(hydration.waitUntilComplete() == nil)
        #expect(assembled(script) == image)
    }

    @Test func aLyingPeerIsDroppedByNameAndItsBytesNeverStored() throws {
        let script = Script()
        let hydration = hydration([("liar", true, nil, nil), ("good", false, nil, nil)], script: script)
        try hydration.start()
        defer { hydration.close() }
        #expect(hydration.ensure(offset: 0, length: 30 * 4096 + 100) == nil)
        #expect(hydration.waitUntilComplete() == nil)
        #expect(assembled(script) == image)
        let lines = script.lines.withLock { $0 }
        #expect(lines.count == 1)
        #expect(lines.first?.hasPrefix("dropped peer liar: block ") == true)
        #expect(lines.first?.contains("its blocks go to good") == true)
    }

    @Test func withNoPeerLeftAReadFailsWithEIOAndSaysWhy() throws {
        let script = Script()
        let hydration = hydration([("a", false, 2, nil), ("b", false, 2, nil)], script: script)
        try hydration.start()
        defer { hydration.close() }
        #expect(hydration.ensure(offset: 0, length: 30 * 4096 + 100) == .io) // 2 blocks come, 29 cannot
        let problem = hydration.waitUntilComplete()
        #expect(problem?.hasPrefix("no peer is left to read the image from (a: connection reset by peer; b: connection reset by peer)") == true)
        // A drop is said just after the scheduler hears of it: give the line a moment.
        for _ in 0..<100 where script.lines.withLock({ $0.count }) < 3 { Kernel.sleep(milliseconds: 10) }
        let lines = script.lines.withLock { $0 }
        #expect(lines.contains { $0.hasSuffix("reads of the image fail (EIO)") })
        #expect(lines.contains { $0.hasPrefix("dropped peer a: connection reset by peer") })
    }

    @Test func aStalledPeerIsDroppedAndTheReaderGetsItsBlockFromTheOther() throws {
        let script = Script()
        let stuck = Script() // never released
        let image = self.image
        let hashes = BlockHashes.of(image, blockSize: Self.blockSize)
        let hydration = Hydration(hashes: hashes, peers: [
            BlockPeer(name: "slow", connections: 1) { Peer(image: image, holdBefore: 1000, script: stuck) },
            BlockPeer(name: "quick", connections: 1) { Peer(image: image, delayMillis: 20, script: script) },
        ], stallMicros: 300_000, store: { offset, bytes in script.stored.withLock { $0[Int(offset) / Self.blockSize] = bytes } },
           report: { line in script.lines.withLock { $0.append(line) } })
        try hydration.start()
        defer {
            stuck.released.store(true, ordering: .relaxed)
            hydration.close()
        }
        #expect(hydration.waitUntilComplete() == nil)
        #expect(assembled(script) == image)
        #expect(script.lines.withLock { $0 }.contains { $0.hasPrefix("dropped peer slow: block ") && $0.contains("(stalled)") })
    }
}

extension Threads {
    static func startForTest(_ body: @escaping @Sendable () -> Void) {
        do {
            try start(body)
        } catch {
            Issue.record("unable to start a thread: \(error)")
        }
    }
}

/// The session's hook for the Hydrator: a read is answered only once its
/// bytes are in RAM; when they cannot come, the reply is EIO and the
/// session goes on.
@Suite struct HydratingSessionTests {
    @Test func aReadWaitsForTheHookAndAFailedOneIsEIO() throws {
        let export = try NBDExport(bytes: Array(0..<64), names: ["image"], description: "")
        var session = NBDServerSession(exports: NBDExports([export]))
        let asked = Mutex<[String]>([])
        session.beforeRead = { offset, length in
            asked.withLock { $0.append("\(offset)+\(length)") }
            return offset >= 32 ? .io : nil
        }
        var script = ClientScript()
        script.writer = ByteWriter() // the kernel's client sends no handshake
        script.request(.read, cookie: 1, offset: 8, length: 4)
        script.request(.read, cookie: 2, offset: 40, length: 4)
        script.request(.read, cookie: 3, offset: 60, length: 8) // past the end: refused before the hook
        script.request(.disconnect, cookie: 4, offset: 0, length: 0)
        let transport = ScriptedTransport(script.bytes)
        #expect(session.serveTransmission(export, transport) == .disconnected)
        #expect(asked.withLock { $0 } == ["8+4", "40+4"])
        var reader = ByteReader(transport.output)
        func reply() throws -> (error: UInt32, cookie: UInt64) {
            #expect(try reader.u32() == 0x6744_6698)
            return (try reader.u32(), try reader.u64())
        }
        let first = try reply()
        #expect(first.error == 0 && first.cookie == 1)
        #expect(try reader.take(4) == [8, 9, 10, 11])
        let second = try reply()
        #expect(second.error == NBD.Error.io.rawValue && second.cookie == 2)
        let third = try reply()
        #expect(third.error == NBD.Error.invalid.rawValue && third.cookie == 3)
        #expect(reader.remaining == 0)
    }
}
