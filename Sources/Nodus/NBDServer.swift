import Glibc
import SpiritCore
import Synchronization
import SystemPackage

/// The NBD server: accepts clients on one TCP socket and serves each on a
/// thread of its own, so that a client that stalls or vanishes mid-request
/// holds only its own thread, and only until a deadline: the whole
/// handshake within `handshakeMilliseconds`, each request's bytes within
/// `stallMilliseconds` once begun, and no more than `idleMilliseconds`
/// between requests. Clients are capped in all and per address, so that
/// slow or hostile peers cannot take every thread. Every read is
/// bounds-checked by the session; data goes out with sendfile(2).
public final class NBDServer: Sendable {
    public let exports: NBDExports
    let listener: Socket
    let console: Console
    /// More clients than this at once are turned away at accept.
    public let maxClients: Int
    /// More from one address than this at once are turned away.
    public let maxClientsPerAddress: Int
    /// A request once begun, or a write, that stalls longer ends its connection.
    public let stallMilliseconds: Int
    /// The greeting to the chosen export, in all.
    public let handshakeMilliseconds: Int
    /// Between requests: a client idle longer is let go.
    public let idleMilliseconds: Int
    let counters = Mutex(Counters())

    public struct Counters: Sendable, Equatable {
        public var active = 0
        public var served = 0
        public var refused = 0
        public var turnedAway = 0
        /// Connections open per address, and the addresses warned about
        /// while over their cap (one warning a burst, not one a connection).
        var perAddress: [String: Int] = [:]
        var warned: Set<String> = []
    }

    public init(listener: Socket, exports: NBDExports, console: Console, maxClients: Int = 256, maxClientsPerAddress: Int = 32,
                stallMilliseconds: Int = 30_000, handshakeMilliseconds: Int = 10_000, idleMilliseconds: Int = 600_000) {
        self.listener = listener
        self.exports = exports
        self.console = console
        self.maxClients = maxClients
        self.maxClientsPerAddress = maxClientsPerAddress
        self.stallMilliseconds = stallMilliseconds
        self.handshakeMilliseconds = handshakeMilliseconds
        self.idleMilliseconds = idleMilliseconds
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
            let address = peer.host
            let (admitted, warning) = counters.withLock { state -> (Bool, String?) in
                let mine = state.perAddress[address, default: 0]
                let full = state.active >= maxClients
                guard full || mine >= maxClientsPerAddress else {
                    state.active += 1
                    state.perAddress[address] = mine + 1
                    return (true, nil)
                }
                state.turnedAway += 1
                // Said once while the cap stays reached: a flood is one line.
                guard state.warned.insert(full ? "" : address).inserted else { return (false, nil) }
                return (false, full ? "\(maxClients) clients are connected already" : "it has \(maxClientsPerAddress) connections open already")
            }
            if let warning { console.warning("nodus: \(peer) turned away: \(warning)") }
            guard admitted else {
                client.close()
                continue
            }
            do {
                try Threads.start { [self] in self.serve(client, peer: peer) }
            } catch {
                console.warning("nodus: \(peer): \(error)")
                release(address)
                client.close()
            }
        }
    }

    func release(_ address: String) {
        counters.withLock { state in
            state.active -= 1
            let left = state.perAddress[address, default: 1] - 1
            state.perAddress[address] = left > 0 ? left : nil
            if left < maxClientsPerAddress { state.warned.remove(address) }
            if state.active < maxClients { state.warned.remove("") }
        }
    }

    func serve(_ client: Socket, peer: SocketAddress) {
        defer { client.close() }
        do {
            try client.setNoDelay()
            // For writes (and sendfile): a client that stops reading its answers.
            try client.setTimeouts(milliseconds: stallMilliseconds)
        } catch {
            console.warning("nodus: \(peer): \(error)")
        }
        let transport = SocketTransport(socket: client, handshakeDeadline: Kernel.bootTimeMicros() + Int64(handshakeMilliseconds) * 1000,
                                        stallMilliseconds: stallMilliseconds, idleMilliseconds: idleMilliseconds)
        let end = NBDServerSession(exports: exports).run(transport)
        release(peer.host)
        counters.withLock { state in
            if case .refused = end { state.refused += 1 } else { state.served += 1 }
        }
        switch end {
        case .disconnected, .aborted: console.debug("nodus: \(peer) \(end)")
        case .refused, .failed: console.info("nodus: \(peer) \(end)")
        }
    }
}

/// A session's bytes over a TCP socket, each read bounded by a deadline:
/// the handshake's until the first request, then the request's own.
final class SocketTransport: NBDTransport {
    let socket: Socket
    let handshakeDeadline: Int64
    let stallMicros: Int64
    let idleMilliseconds: Int
    /// Set by the first request: the handshake is over.
    var transmitting = false

    init(socket: Socket, handshakeDeadline: Int64, stallMilliseconds: Int, idleMilliseconds: Int) {
        self.socket = socket
        self.handshakeDeadline = handshakeDeadline
        stallMicros = Int64(stallMilliseconds) * 1000
        self.idleMilliseconds = idleMilliseconds
    }

    func read(exactly count: Int) throws -> [UInt8] {
        if transmitting { return try socket.read(exactly: count, by: Kernel.bootTimeMicros() + stallMicros, "a request's data") }
        return try socket.read(exactly: count, by: handshakeDeadline, "the handshake")
    }

    func write(_ bytes: [UInt8], more: Bool) throws { try socket.write(bytes, more: more) }

    func writeExport(header: [UInt8], export: NBDExport, offset: Int64, length: Int) throws {
        try socket.write(header, more: true)
        try socket.sendFile(export.fd, offset: offset, count: length)
    }

    /// A busy client's next request has usually arrived already: one
    /// non-blocking read takes it; only an idle one costs a poll(2), for
    /// at most the idle limit.
    func readRequest() throws -> [UInt8] {
        transmitting = true
        var header = [UInt8](repeating: 0, count: NBDRequest.size)
        if let n = try header.withMutableBytes({ raw throws(SystemError) in try socket.readIfReady(into: raw) }) {
            if n == NBDRequest.size { return header }
            if n == 0 { throw SystemError("read a request from \(socket.name)", .connectionReset, hint: "the client closed the connection") }
            return Array(header[0..<n]) + (try socket.read(exactly: NBDRequest.size - n, by: Kernel.bootTimeMicros() + stallMicros, "a request"))
        }
        guard try socket.waitReadable(milliseconds: idleMilliseconds) else {
            throw SystemError("wait for a request from \(socket.name)", .timedOut, hint: "idle for \(idleMilliseconds / 1000) s: let go")
        }
        return try socket.read(exactly: NBDRequest.size, by: Kernel.bootTimeMicros() + stallMicros, "a request")
    }
}
