import Glibc
import SpiritCore
import Synchronization
import SystemPackage

/// The NBD server: accepts clients on one TCP socket and serves each on a
/// thread of its own, so that a client that stalls or vanishes mid-request
/// holds only its own thread (and only until its timeout). Every read is
/// bounds-checked by the session; data goes out with sendfile(2).
public final class NBDServer: Sendable {
    public let exports: NBDExports
    let listener: Socket
    let console: Console
    /// More clients than this at once are turned away at accept.
    public let maxClients: Int
    /// A handshake, or a request once begun, that stalls longer ends its
    /// connection; an idle connection between requests is kept.
    public let stallMilliseconds: Int
    let counters = Mutex(Counters())

    public struct Counters: Sendable, Equatable {
        public var active = 0
        public var served = 0
        public var refused = 0
        public var turnedAway = 0
    }

    public init(listener: Socket, exports: NBDExports, console: Console, maxClients: Int = 128, stallMilliseconds: Int = 30_000) {
        self.listener = listener
        self.exports = exports
        self.console = console
        self.maxClients = maxClients
        self.stallMilliseconds = stallMilliseconds
    }

    public var snapshot: Counters { counters.withLock { $0 } }

    /// Accepts clients until the listener fails; returns why.
    public func serve() -> SystemError {
        // sendfile(2) has no MSG_NOSIGNAL: without this, a client that
        // resets its connection while its read is being sent would end
        // the whole server with SIGPIPE instead of failing its own
        // request with EPIPE.
        SignalQueue.ignore(SIGPIPE)
        while true {
            let client: Socket
            let peer: SocketAddress
            do {
                (client, peer) = try listener.accept()
            } catch {
                // EMFILE and friends pass; the listener itself failing does not.
                if ([.tooManyOpenFiles, .tooManyOpenFilesInSystem, .connectionAbort, .noMemory, .noBufferSpace] as [Errno]).contains(error.errno) {
                    console.warning("nodus: \(error)")
                    Kernel.sleep(milliseconds: 100)
                    continue
                }
                return error
            }
            let admitted = counters.withLock { state -> Bool in
                guard state.active < maxClients else { state.turnedAway += 1; return false }
                state.active += 1
                return true
            }
            guard admitted else {
                console.warning("nodus: \(peer) turned away: \(maxClients) clients are connected already")
                client.close()
                continue
            }
            do {
                try Threads.start { [self] in self.serve(client, peer: peer) }
            } catch {
                console.warning("nodus: \(peer): \(error)")
                counters.withLock { $0.active -= 1 }
                client.close()
            }
        }
    }

    func serve(_ client: Socket, peer: SocketAddress) {
        defer { client.close() }
        do {
            try client.setNoDelay()
            try client.setTimeouts(milliseconds: stallMilliseconds)
        } catch {
            console.warning("nodus: \(peer): \(error)")
        }
        let end = NBDServerSession(exports: exports).run(SocketTransport(socket: client))
        counters.withLock { state in
            state.active -= 1
            if case .refused = end { state.refused += 1 } else { state.served += 1 }
        }
        switch end {
        case .disconnected, .aborted: console.debug("nodus: \(peer) \(end)")
        case .refused, .failed: console.info("nodus: \(peer) \(end)")
        }
    }
}

/// A session's bytes over a TCP socket.
struct SocketTransport: NBDTransport {
    let socket: Socket

    func read(exactly count: Int) throws -> [UInt8] { try socket.read(exactly: count) }

    func write(_ bytes: [UInt8], more: Bool) throws { try socket.write(bytes, more: more) }

    func writeExport(header: [UInt8], export: NBDExport, offset: Int64, length: Int) throws {
        try socket.write(header, more: true)
        try socket.sendFile(export.fd, offset: offset, count: length)
    }

    /// A busy client's next request has usually arrived already: one
    /// non-blocking read takes it; only an idle one costs a poll(2).
    func readRequest() throws -> [UInt8] {
        var header = [UInt8](repeating: 0, count: NBDRequest.size)
        if let n = try header.withMutableBytes({ raw throws(SystemError) in try socket.readIfReady(into: raw) }) {
            if n == NBDRequest.size { return header }
            if n == 0 { throw SystemError("read a request from \(socket.name)", .connectionReset, hint: "the client closed the connection") }
            return Array(header[0..<n]) + (try socket.read(exactly: NBDRequest.size - n))
        }
        _ = try socket.waitReadable(milliseconds: nil)
        return try socket.read(exactly: NBDRequest.size)
    }
}
