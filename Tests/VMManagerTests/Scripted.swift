import SpiritCore
import VMManager

/// A clock that moves only when a client sleeps or waits out a timeout.
final class FakeClock: VMClock {
    var nowMilliseconds: Int64 = 0
    var slept: [Int] = []
    func sleep(milliseconds: Int) {
        slept.append(milliseconds)
        nowMilliseconds += Int64(milliseconds)
    }
}

/// Plays QEMU (or the guest agent) from a transcript: each `receive` gives
/// the next recorded chunk; `.silence` is a timeout (the clock moves by the
/// whole wait); `.end` is the peer closing. What the client sends is kept.
final class ScriptedStream: ByteStream {
    enum Chunk {
        case bytes([UInt8])
        case silence
        case end
    }

    var chunks: [Chunk]
    let clock: FakeClock
    var sent: [[UInt8]] = []
    var passed: [Int32] = []

    init(_ chunks: [Chunk], clock: FakeClock) {
        self.chunks = chunks
        self.clock = clock
    }

    convenience init(lines: [String], clock: FakeClock) {
        self.init(lines.map { .bytes(Array(($0 + "\n").utf8)) }, clock: clock)
    }

    var sentText: [String] { sent.map { String(decoding: $0.filter { $0 != 0xFF }, as: UTF8.self) } }

    func send(_ bytes: [UInt8]) throws(VMError) { sent.append(bytes) }

    func send(_ bytes: [UInt8], passing descriptor: Int32) throws(VMError) {
        sent.append(bytes)
        passed.append(descriptor)
    }

    func receive(milliseconds: Int) throws(VMError) -> [UInt8]? {
        guard !chunks.isEmpty else {
            clock.nowMilliseconds += Int64(milliseconds)
            return nil
        }
        switch chunks.removeFirst() {
        case .bytes(let bytes): return bytes
        case .silence:
            clock.nowMilliseconds += Int64(milliseconds)
            return nil
        case .end: return []
        }
    }
}
