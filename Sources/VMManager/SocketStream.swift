import SpiritCore

/// A `ByteStream` on a Unix socket (QEMU's QMP, agent and console sockets),
/// through SpiritCore's `Socket`.
public final class SocketStream: ByteStream {
    let socket: Socket
    var buffer = [UInt8](repeating: 0, count: 65536)

    public init(connectingTo path: String) throws(VMError) {
        do {
            socket = try Socket.connectUnix(path)
        } catch {
            throw VMError("\(error)")
        }
    }

    public func send(_ bytes: [UInt8]) throws(VMError) {
        do { try socket.write(bytes) } catch { throw VMError("\(error)") }
    }

    public func send(_ bytes: [UInt8], passing descriptor: Int32) throws(VMError) {
        do { try socket.write(bytes, passing: descriptor) } catch { throw VMError("\(error)") }
    }

    public func receive(milliseconds: Int) throws(VMError) -> [UInt8]? {
        do {
            guard try socket.waitReadable(milliseconds: milliseconds) else { return nil }
            let n = try buffer.withMutableBytes { raw throws(SystemError) in try socket.read(into: raw) }
            return Array(buffer[0..<n])
        } catch {
            throw VMError("\(error)")
        }
    }

    public func close() { socket.close() }
}

/// The daemon's clock: CLOCK_BOOTTIME, and real sleeps.
public final class BootClock: VMClock {
    public init() {}
    public var nowMilliseconds: Int64 { Kernel.bootTimeMicros() / 1000 }
    public func sleep(milliseconds: Int) { Kernel.sleep(milliseconds: milliseconds) }
}
