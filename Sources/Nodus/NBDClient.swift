import SpiritCore

/// An NBD client: connects, negotiates an export with NBD_OPT_GO (or
/// NBD_OPT_EXPORT_NAME with a server that lacks it), then reads. The socket
/// can be handed to the kernel's nbd driver (NBDKernelDevice), or read here
/// to copy an export into RAM (NBDSequentialReader).
public struct NBDClient: Sendable {
    public let socket: Socket
    public let server: SocketAddress
    public let exportName: String
    public let size: Int64
    public let flags: NBD.TransmissionFlags
    /// The server's preferred and largest request (NBD_INFO_BLOCK_SIZE), if told.
    public let preferredBlockSize: Int?
    public let maxBlockSize: Int?

    /// The longest option reply read; a longer one is a broken server.
    static let maxReplyLength: UInt32 = 64 << 10

    public static func connect(_ server: SocketAddress, export: String = "", timeoutMilliseconds: Int = 10_000) throws -> NBDClient {
        let socket = try Socket.connectTCP(server, timeoutMilliseconds: timeoutMilliseconds)
        do {
            try socket.setNoDelay()
            try socket.setTimeouts(milliseconds: timeoutMilliseconds)
            return try negotiate(socket, server: server, export: export)
        } catch {
            socket.close()
            throw error
        }
    }

    static func negotiate(_ socket: Socket, server: SocketAddress, export: String) throws -> NBDClient {
        func broken(_ what: String) -> SpiritError { SpiritError("\(server) is not an NBD server Spirit can use: \(what)") }
        var greeting = ByteReader(try socket.read(exactly: 18))
        guard try greeting.u64() == NBD.greetingMagic else { throw broken("no NBDMAGIC greeting") }
        guard try greeting.u64() == NBD.optionMagic else { throw broken("it speaks the oldstyle handshake, not newstyle") }
        let serverFlags = try greeting.u16()
        guard serverFlags & NBD.flagFixedNewstyle != 0 else { throw broken("it does not speak the fixed newstyle handshake") }
        let noZeroes = serverFlags & NBD.flagNoZeroes != 0
        var clientFlags = ByteWriter()
        clientFlags.u32(UInt32(NBD.flagFixedNewstyle | (noZeroes ? NBD.flagNoZeroes : 0)))
        try socket.write(clientFlags.bytes)

        // NBD_OPT_GO: the name, and a request for the block sizes.
        var go = ByteWriter()
        go.u32(UInt32(export.utf8.count))
        go.append(export)
        go.u16(1)
        go.u16(NBD.Info.blockSize.rawValue)
        try sendOption(socket, .go, go.bytes)

        var size: Int64?
        var flags = NBD.TransmissionFlags()
        var preferred: Int?
        var maximum: Int?
        while true {
            var header = ByteReader(try socket.read(exactly: 20))
            guard try header.u64() == NBD.replyMagic else { throw broken("an option reply without its magic") }
            let option = try header.u32()
            let type = try header.u32()
            let length = try header.u32()
            guard option == NBD.Option.go.rawValue else { throw broken("a reply to option \(option), which was not asked") }
            guard length <= maxReplyLength else { throw broken("an option reply of \(length) bytes") }
            let data = try socket.read(exactly: Int(length))
            let message = String(decoding: data, as: UTF8.self)
            switch NBD.Reply(rawValue: type) {
            case .info:
                var info = ByteReader(data)
                switch NBD.Info(rawValue: try info.u16()) {
                case .export:
                    size = Int64(bitPattern: try info.u64())
                    flags = NBD.TransmissionFlags(rawValue: try info.u16())
                case .blockSize:
                    _ = try info.u32()
                    preferred = Int(try info.u32())
                    maximum = Int(try info.u32())
                default:
                    break // names and descriptions are not needed
                }
            case .ack:
                guard let size, size >= 0 else { throw broken("NBD_OPT_GO ended without the export's size") }
                return NBDClient(socket: socket, server: server, exportName: export, size: size, flags: flags,
                                 preferredBlockSize: preferred, maxBlockSize: maximum)
            case .errorUnsupported:
                return try exportName(socket, server: server, export: export, noZeroes: noZeroes)
            case .errorUnknown:
                throw NBDUnknownExport(server: server, export: export, message: message)
            case let reply? where reply.isError:
                throw SpiritError("\(server) refused export '\(export)': \(reply) \(message)")
            default:
                if type & 0x8000_0000 != 0 { throw SpiritError("\(server) refused export '\(export)': error \(type) \(message)") }
                // Another reply type this client did not ask for: skipped.
            }
        }
    }

    /// The old way, for servers without NBD_OPT_GO.
    static func exportName(_ socket: Socket, server: SocketAddress, export: String, noZeroes: Bool) throws -> NBDClient {
        try sendOption(socket, .exportName, Array(export.utf8))
        // An unknown name: the server closes the connection.
        let reply: [UInt8]
        do {
            reply = try socket.read(exactly: noZeroes ? 10 : 134)
        } catch {
            throw SpiritError("\(server) closed the connection at NBD_OPT_EXPORT_NAME: it has no export named '\(export)'")
        }
        var reader = ByteReader(reply)
        let size = Int64(bitPattern: try reader.u64())
        let flags = NBD.TransmissionFlags(rawValue: try reader.u16())
        return NBDClient(socket: socket, server: server, exportName: export, size: size, flags: flags,
                         preferredBlockSize: nil, maxBlockSize: nil)
    }

    static func sendOption(_ socket: Socket, _ option: NBD.Option, _ data: [UInt8]) throws {
        var writer = ByteWriter(capacity: 16 + data.count)
        writer.u64(NBD.optionMagic)
        writer.u32(option.rawValue)
        writer.u32(UInt32(data.count))
        writer.append(data)
        try socket.write(writer.bytes)
    }

    /// Sends a read request (the reply is read by the caller).
    func requestRead(cookie: UInt64, offset: Int64, length: Int) throws {
        try socket.write(NBDRequest(type: NBD.Command.read.rawValue, cookie: cookie, offset: UInt64(offset), length: UInt32(length)).encoded)
    }

    /// One read, its reply awaited (a client with one request in flight).
    public func readBlock(cookie: UInt64, offset: Int64, length: Int) throws -> [UInt8] {
        try requestRead(cookie: cookie, offset: offset, length: length)
        var header = ByteReader(try socket.read(exactly: NBDSimpleReply.size))
        guard try header.u32() == NBD.simpleReplyMagic else {
            throw SpiritError("\(server) sent a reply without the simple reply magic (structured replies were not asked for)")
        }
        let error = try header.u32()
        guard try header.u64() == cookie else { throw SpiritError("\(server) answered a request that was not made") }
        guard error == 0 else {
            throw SpiritError("\(server) could not read \(length) bytes at \(offset) of '\(exportName)': "
                + (NBD.Error(rawValue: error).map { "\($0)" } ?? "error \(error)"))
        }
        return try socket.read(exactly: length)
    }

    /// NBD_CMD_DISC, then the socket is closed.
    public func disconnect() {
        try? socket.write(NBDRequest(type: NBD.Command.disconnect.rawValue, cookie: 0, offset: 0, length: 0).encoded)
        socket.close()
    }
}

/// Reads an export from the start to the end, several requests in flight
/// (a peer on a LAN answers faster than one request at a time allows), and
/// hands the bytes out in order, however the server orders its replies.
public struct NBDSequentialReader {
    public let client: NBDClient
    let chunk: Int
    let window: Int
    var requested: Int64 = 0
    var nextCookie: UInt64 = 1
    /// Requests in flight, in the order of their offsets.
    var pending: [(cookie: UInt64, offset: Int64, length: Int)] = []
    var arrived: [UInt64: [UInt8]] = [:]
    /// The chunk being handed out, and how much of it is gone.
    var current: [UInt8] = []
    var currentUsed = 0

    public init(client: NBDClient, chunk: Int = 1 << 20, window: Int = 4) {
        self.client = client
        self.chunk = min(chunk, client.maxBlockSize ?? chunk, NBD.maxRequestLength)
        self.window = max(1, window)
    }

    /// Up to buffer.count bytes; 0 at the end of the export.
    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if currentUsed == current.count {
            guard try nextChunk() else { return 0 }
        }
        let n = min(buffer.count, current.count - currentUsed)
        current.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + currentUsed, byteCount: n) }
        currentUsed += n
        return n
    }

    mutating func nextChunk() throws -> Bool {
        while pending.count < window && requested < client.size {
            let length = Int(min(Int64(chunk), client.size - requested))
            try client.requestRead(cookie: nextCookie, offset: requested, length: length)
            pending.append((nextCookie, requested, length))
            nextCookie += 1
            requested += Int64(length)
        }
        guard let head = pending.first else { return false }
        while arrived[head.cookie] == nil { try receiveReply() }
        current = arrived.removeValue(forKey: head.cookie)!
        currentUsed = 0
        pending.removeFirst()
        return true
    }

    mutating func receiveReply() throws {
        let server = client.server
        var header = ByteReader(try client.socket.read(exactly: NBDSimpleReply.size))
        guard try header.u32() == NBD.simpleReplyMagic else {
            throw SpiritError("\(server) sent a reply without the simple reply magic (structured replies were not asked for)")
        }
        let error = try header.u32()
        let cookie = try header.u64()
        guard let request = pending.first(where: { $0.cookie == cookie }), arrived[cookie] == nil else {
            throw SpiritError("\(server) answered a request that was not made (cookie \(cookie))")
        }
        guard error == 0 else {
            throw SpiritError("\(server) could not read \(request.length) bytes at \(request.offset) of '\(client.exportName)': "
                + (NBD.Error(rawValue: error).map { "\($0)" } ?? "error \(error)"))
        }
        arrived[cookie] = try client.socket.read(exactly: request.length)
    }

    public func close() { client.disconnect() }
}

/// A server that has no export of the name asked for (NBD_REP_ERR_UNKNOWN).
public struct NBDUnknownExport: Error, CustomStringConvertible {
    public var server: SocketAddress
    public var export: String
    public var message: String
    public var description: String { "\(server) has no export named '\(export)'" + (message.isEmpty ? "" : ": \(message)") }
}
