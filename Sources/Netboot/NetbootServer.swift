import Glibc
import Net
import SpiritCore
import Synchronization
import SystemPackage

/// The I/O shell of `spirit serve netboot`: three listeners, each on its own
/// thread, around the pure cores (ProxyDHCP, TFTPTransfer, HTTPFileAnswer).
/// Blocking sockets with timeouts, a thread a connection or transfer, as
/// Nodus serves NBD.

/// The HTTP server: the media files by name, and the iPXE script.
public final class NetbootHTTPServer: Sendable {
    let listener: Socket
    let media: NetbootMedia
    /// The Nodus peer the script names; nil: this machine, at the address
    /// the request came in on, on `nodusPort`.
    let peer: String?
    let nodusPort: Int
    let append: String
    let console: Console
    let maxClients: Int
    let clients = Mutex(0)

    public init(listener: Socket, media: NetbootMedia, peer: String?, nodusPort: Int, append: String, console: Console, maxClients: Int = 64) {
        self.listener = listener
        self.media = media
        self.peer = peer
        self.nodusPort = nodusPort
        self.append = append
        self.console = console
        self.maxClients = maxClients
    }

    /// Accepts until the listener fails; returns why.
    public func serve() -> SystemError {
        while true {
            let client: Socket
            let from: SocketAddress
            do {
                (client, from) = try listener.accept()
            } catch {
                if error.errno == .interrupted || error.errno == .connectionAbort { continue }
                // Out of descriptors or memory for a moment (a flood): the
                // clients that hold them will end; the server goes on.
                if [.tooManyOpenFiles, .tooManyOpenFilesInSystem, .noBufferSpace, .noMemory].contains(error.errno) {
                    console.warning("netboot: http: \(error); waiting 100 ms")
                    Kernel.sleep(milliseconds: 100)
                    continue
                }
                return error
            }
            let admitted = clients.withLock { count in
                guard count < maxClients else { return false }
                count += 1
                return true
            }
            guard admitted else {
                try? client.write(HTTPAnswer.whole(status: 503, contentType: "text/plain", "busy: \(maxClients) clients already\n"))
                client.close()
                continue
            }
            do {
                try Threads.start { [self] in
                    self.answer(client, from: from)
                    client.close()
                    self.clients.withLock { $0 -= 1 }
                }
            } catch {
                client.close()
                clients.withLock { $0 -= 1 }
                console.warning("netboot: http: \(error)")
            }
        }
    }

    func answer(_ client: Socket, from: SocketAddress) {
        try? client.setTimeouts(milliseconds: 30_000)
        let request: HTTPRequest
        do {
            request = try HTTPRequest.read(from: client, bodyLimit: 0, idleMillis: 10_000)
        } catch {
            try? client.write(HTTPAnswer.whole(status: error.status, contentType: "text/plain", error.message + "\n"))
            return
        }
        let head = request.method == "HEAD"
        guard request.method == "GET" || head else {
            try? client.write(HTTPAnswer.whole(status: 405, contentType: "text/plain", "only GET and HEAD are served\n"))
            return
        }
        let local = (try? client.localAddress())?.host ?? "0.0.0.0"
        if request.path == "/" + NetbootMedia.script {
            let port = (try? listener.localAddress())?.port ?? 80
            let base = "http://\(local)" + (port == 80 ? "" : ":\(port)") + "/"
            let script = Array(NetbootScript.render(httpBase: base, peer: peer ?? "\(local):\(nodusPort)", append: append).utf8)
            let answer = HTTPFileAnswer(head: head, rangeHeader: request.headers["range"], size: Int64(script.count), contentType: "text/plain")
            try? client.write(Array(answer.head.utf8) + Array(script[Int(answer.offset)..<Int(answer.offset + answer.count)]))
            console.info("netboot: http: \(request.method) \(request.path) \(answer.status) to \(from.host)")
            return
        }
        guard let path = media.file(for: request.path) else {
            try? client.write(HTTPAnswer.whole(status: 404, contentType: "text/plain", "\(request.path) is not served here\n"))
            return
        }
        let fd: CInt
        let size: Int64
        do {
            fd = try Kernel.open(path, O_RDONLY)
            size = try Kernel.status(of: fd, path).size
        } catch {
            console.warning("netboot: http: \(request.path): \(error)")
            try? client.write(HTTPAnswer.whole(status: 404, contentType: "text/plain", "\(request.path): \(error)\n"))
            return
        }
        defer { Kernel.close(fd) }
        let answer = HTTPFileAnswer(head: head, rangeHeader: request.headers["range"], size: size)
        do {
            try client.write(Array(answer.head.utf8), more: answer.count > 0)
            if answer.count > 0 { try client.sendFile(fd, offset: answer.offset, count: Int(answer.count)) }
            console.info("netboot: http: \(request.method) \(request.path) \(answer.status) (\(answer.count) bytes) to \(from.host)")
        } catch {
            console.warning("netboot: http: \(request.method) \(request.path) to \(from.host) cut short: \(error)")
        }
    }
}

/// The proxy DHCP responder on one port (67 or 4011).
public final class ProxyDHCPResponder: Sendable {
    let socket: Socket
    let port: ProxyDHCP.Port
    let offerings: ProxyDHCP.Offerings
    let console: Console
    /// The last time each client was said to get nothing, so that a chatty
    /// LAN does not fill the log with the same line.
    let quietUntil = Mutex([String: Int64]())

    public init(port number: Int, kind: ProxyDHCP.Port, offerings: ProxyDHCP.Offerings, console: Console) throws(SystemError) {
        socket = try Socket.bindUDP(SocketAddress(ipv4: 0, port: number), broadcast: true, reuse: true)
        do {
            try socket.enablePacketInfo()
        } catch {
            socket.close()
            throw error
        }
        self.port = kind
        self.offerings = offerings
        self.console = console
    }

    public func serve() -> SystemError {
        var buffer = [UInt8](repeating: 0, count: 1500)
        let name = port == .dhcp ? "proxy DHCP" : "PXE (4011)"
        while true {
            let received: (count: Int, from: SocketAddress, local: UInt32)
            do {
                received = try buffer.withMutableBytes { raw throws(SystemError) in try socket.receiveDatagram(into: raw) }
            } catch {
                if error.errno == .messageTooLong { continue }
                return error
            }
            let request: DHCPPacket
            do {
                request = try DHCPPacket.parse(Array(buffer[0..<received.count]))
            } catch {
                console.debug("netboot: \(name): dropped a datagram from \(received.from): \(error)")
                continue
            }
            let server = withUnsafeBytes(of: received.local) { Array($0) }
            guard received.local != 0 else { continue }
            switch ProxyDHCP.decide(request, port: port, server: server, offerings: offerings) {
            case .ignore(let reason):
                let client = request.clientHardwareAddress
                let now = Kernel.bootTimeMicros()
                let say = quietUntil.withLock { table in
                    if let until = table[client], until > now { return false }
                    if table.count > 4096 { table = [:] }
                    table[client] = now + 60_000_000
                    return true
                }
                if say { console.info("netboot: \(name): no answer to \(client): \(reason)") }
            case .answer(let reply, let bootFile):
                let senderBytes = withUnsafeBytes(of: received.from.ipv4) { Array($0) }
                let target = ProxyDHCP.destination(of: request, port: port, sender: (senderBytes, received.from.port))
                do {
                    let address = try SocketAddress(host: ProxyDHCP.dotted(target.address), port: target.port)
                    try socket.send(reply.encode(), to: address, from: received.local)
                    let kind = reply.messageType == .offer ? "offered" : "acknowledged"
                    console.info("netboot: \(name): \(kind) \(bootFile) to \(request.clientHardwareAddress) "
                        + "(architecture \(request.clientArchitectures?.first ?? 0)\(request.userClasses.contains("iPXE") ? ", iPXE" : ""))")
                } catch {
                    console.warning("netboot: \(name): unable to answer \(request.clientHardwareAddress): \(error)")
                }
            }
        }
    }
}

/// The read-only TFTP server: RRQ on port 69, each transfer from its own
/// port (its transfer ID) on its own thread; one transfer per client port,
/// and at most `maxTransfers` at once: each holds a thread, a file and a
/// socket for seconds, and a flood of requests from forged ports must not
/// use up the process's descriptors.
public final class TFTPServer: Sendable {
    let socket: Socket
    let root: String
    let console: Console
    let timeoutMilliseconds: Int
    let maxRetries: Int
    let maxTransfers: Int
    let active = Mutex(Set<String>())

    public init(port: Int, root: String, console: Console, timeoutMilliseconds: Int = 1000, maxRetries: Int = 5,
                maxTransfers: Int = 32) throws(SystemError) {
        socket = try Socket.bindUDP(SocketAddress(ipv4: 0, port: port), reuse: true)
        self.root = root
        self.console = console
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxRetries = maxRetries
        self.maxTransfers = maxTransfers
    }

    public var port: Int { (try? socket.localAddress())?.port ?? 0 }

    public func serve() -> SystemError {
        var buffer = [UInt8](repeating: 0, count: 1500)
        while true {
            let received: (count: Int, from: SocketAddress, local: UInt32)
            do {
                received = try buffer.withMutableBytes { raw throws(SystemError) in try socket.receiveDatagram(into: raw) }
            } catch {
                if error.errno == .messageTooLong { continue }
                return error
            }
            let client = received.from
            // A retransmitted RRQ while its transfer runs is not a second transfer.
            guard !active.withLock({ $0.contains(client.description) }) else { continue }
            guard active.withLock({ $0.count }) < maxTransfers else {
                try? socket.send(TFTP.errorPacket(.notDefined, "busy: \(maxTransfers) transfers already; try again"), to: client)
                continue
            }
            let request: TFTP.ReadRequest
            let path: String
            do throws(TFTP.Failure) {
                request = try TFTP.parseRequest(Array(buffer[0..<received.count]))
                path = try TFTP.resolve(request.file, under: root)
            } catch {
                console.info("netboot: tftp: refused \(client): \(error)")
                try? socket.send(error.packet, to: client)
                continue
            }
            let fd: CInt
            let size: Int64
            do {
                fd = try Kernel.open(path, O_RDONLY)
                let status = try Kernel.status(of: fd, path)
                guard status.isRegularFile else {
                    Kernel.close(fd)
                    throw SystemError("serve \(path)", .isDirectory)
                }
                size = status.size
            } catch {
                console.info("netboot: tftp: \(client) asked for \(request.file): \(error)")
                try? socket.send(TFTP.errorPacket(.fileNotFound, "no file \(request.file) here"), to: client)
                continue
            }
            active.withLock { _ = $0.insert(client.description) }
            do {
                try Threads.start { [self] in
                    self.transfer(request, fd: fd, size: size, to: client)
                    Kernel.close(fd)
                    self.active.withLock { _ = $0.remove(client.description) }
                }
            } catch {
                Kernel.close(fd)
                active.withLock { _ = $0.remove(client.description) }
                console.warning("netboot: tftp: \(error)")
            }
        }
    }

    func transfer(_ request: TFTP.ReadRequest, fd: CInt, size: Int64, to client: SocketAddress) {
        let socket: Socket
        do {
            socket = try Socket.bindUDP(SocketAddress(ipv4: 0, port: 0))
        } catch {
            console.warning("netboot: tftp: unable to start the transfer of \(request.file) to \(client): \(error)")
            return
        }
        defer { socket.close() }
        let name = request.file
        var transfer = TFTPTransfer(request: request, size: size, maxRetries: maxRetries) { offset, count throws(SystemError) in
            var bytes = [UInt8](repeating: 0, count: count)
            try bytes.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in try Kernel.read(fd, into: raw, at: offset, name) }
            }.get()
            return bytes
        }
        var step = transfer.start()
        var buffer = [UInt8](repeating: 0, count: 1500)
        let started = Kernel.bootTimeMicros()
        while true {
            switch step {
            case .finished:
                let ms = (Kernel.bootTimeMicros() - started) / 1000
                console.info("netboot: tftp: sent \(name) (\(size) bytes, blksize \(transfer.blockSize)) to \(client) in \(ms) ms")
                return
            case .failed(let reason, let packet):
                if let packet { try? socket.send(packet, to: client) }
                console.warning("netboot: tftp: \(name) to \(client): \(reason)")
                return
            case .send(let packet):
                do {
                    try socket.send(packet, to: client)
                } catch {
                    console.warning("netboot: tftp: \(name) to \(client): \(error)")
                    return
                }
                step = .wait
            case .wait:
                let ready: Bool
                do {
                    ready = try socket.waitReadable(milliseconds: timeoutMilliseconds)
                    guard ready else {
                        step = transfer.timeout()
                        continue
                    }
                    let received = try buffer.withMutableBytes { raw throws(SystemError) in try socket.receiveDatagram(into: raw) }
                    guard received.from == client else {
                        // RFC 1350: a packet from another port is answered with
                        // an error, and the transfer goes on.
                        try? socket.send(TFTP.errorPacket(.unknownTransferID, "unknown transfer ID"), to: received.from)
                        continue
                    }
                    step = transfer.receive(Array(buffer[0..<received.count]))
                } catch {
                    console.warning("netboot: tftp: \(name) to \(client): \(error)")
                    return
                }
            }
        }
    }
}
