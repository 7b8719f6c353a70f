/// Where a session's bytes come from and go to: a TCP socket, or in tests
/// a transport that plays the client (as swift-nio's EmbeddedChannel does).
public protocol NBDTransport {
    /// Exactly `count` bytes, or throws (the peer closed, or stalled past
    /// the timeout).
    func read(exactly count: Int) throws -> [UInt8]
    /// Bytes written whole; `more` says that more follows at once.
    func write(_ bytes: [UInt8], more: Bool) throws
    /// A read's reply: `header`, then `length` bytes of `export` at `offset`.
    func writeExport(header: [UInt8], export: NBDExport, offset: Int64, length: Int) throws
    /// The next request's bytes: waits up to the server's idle limit for
    /// them to start arriving, then no longer than a stall allows.
    func readRequest() throws -> [UInt8]
}

/// One client of the NBD server, from the greeting to the end: the fixed
/// newstyle handshake, then requests answered with simple replies, one at a
/// time (one writer per socket: every reply is written whole before the
/// next request is read). Read-only: writes are refused with EPERM.
public struct NBDServerSession {
    public let exports: NBDExports
    /// At most this many options before transmission (NBD_OPT_LIST, INFO…).
    public var maxOptions = 256
    /// Called before a read is answered, with its offset and length (both
    /// checked to be inside the export): the Hydrator fetches the blocks
    /// that are not in RAM yet here; an error is the read's reply.
    public var beforeRead: ((Int64, Int) -> NBD.Error?)?

    public init(exports: NBDExports) { self.exports = exports }

    /// How the session ended, for the server's log and counters.
    public enum End: Equatable, Sendable, CustomStringConvertible {
        case disconnected // NBD_CMD_DISC
        case aborted // NBD_OPT_ABORT
        case refused(String) // a protocol error of the client's: the connection was closed
        case failed(String) // the transport failed (the peer went away, a timeout)

        public var description: String {
            switch self {
            case .disconnected: "disconnected"
            case .aborted: "aborted the handshake"
            case .refused(let reason): "refused: \(reason)"
            case .failed(let reason): reason
            }
        }
    }

    public static let transmissionFlags: NBD.TransmissionFlags = [.hasFlags, .readOnly, .sendFlush, .canMultiConn]

    /// The preferred block size told in NBD_INFO_BLOCK_SIZE.
    static let preferredBlockSize: UInt32 = 4096

    struct Refusal: Error { let reason: String }

    public func run(_ transport: some NBDTransport) -> End {
        do {
            guard let export = try handshake(transport) else { return .aborted }
            return try transmit(export, transport)
        } catch let refusal as Refusal {
            return .refused(refusal.reason)
        } catch {
            return .failed("\(error)")
        }
    }

    // MARK: handshake

    /// The export chosen with NBD_OPT_GO or NBD_OPT_EXPORT_NAME, or nil
    /// after NBD_OPT_ABORT.
    func handshake(_ transport: some NBDTransport) throws -> NBDExport? {
        var greeting = ByteWriter(capacity: 18)
        greeting.u64(NBD.greetingMagic)
        greeting.u64(NBD.optionMagic)
        greeting.u16(NBD.flagFixedNewstyle | NBD.flagNoZeroes)
        try transport.write(greeting.bytes, more: false)

        var flags = ByteReader(try transport.read(exactly: 4))
        let clientFlags = try flags.u32()
        guard clientFlags & ~UInt32(NBD.flagFixedNewstyle | NBD.flagNoZeroes) == 0 else {
            throw Refusal(reason: "unknown client flags 0x\(String(clientFlags, radix: 16))")
        }
        guard clientFlags & UInt32(NBD.flagFixedNewstyle) != 0 else {
            throw Refusal(reason: "the client does not speak the fixed newstyle handshake")
        }
        let noZeroes = clientFlags & UInt32(NBD.flagNoZeroes) != 0

        for _ in 0..<maxOptions {
            var header = ByteReader(try transport.read(exactly: 16))
            guard try header.u64() == NBD.optionMagic else { throw Refusal(reason: "an option without IHAVEOPT") }
            let code = try header.u32()
            let length = try header.u32()
            guard length <= NBD.maxOptionLength else {
                // Reading it would cost what the client chooses; the
                // document lets a server close the connection instead.
                throw Refusal(reason: "option \(code) with \(length) bytes of data (at most \(NBD.maxOptionLength))")
            }
            let data = length > 0 ? try transport.read(exactly: Int(length)) : []
            switch NBD.Option(rawValue: code) {
            case .exportName:
                let name = String(decoding: data, as: UTF8.self)
                guard data.count <= NBD.maxStringLength, let export = exports.find(name) else {
                    // The document: the server must close the connection.
                    throw Refusal(reason: "NBD_OPT_EXPORT_NAME of an unknown export '\(name.prefix(64))'")
                }
                var reply = ByteWriter(capacity: 134)
                reply.u64(UInt64(export.size))
                reply.u16(Self.transmissionFlags.rawValue)
                if !noZeroes { reply.append([UInt8](repeating: 0, count: 124)) }
                try transport.write(reply.bytes, more: false)
                return export
            case .abort:
                try? transport.write(Self.optionReply(code, .ack), more: false)
                return nil
            case .list:
                guard data.isEmpty else {
                    try transport.write(Self.optionReply(code, .errorInvalid, "NBD_OPT_LIST takes no data"), more: false)
                    continue
                }
                for export in exports.all {
                    var entry = ByteWriter()
                    entry.u32(UInt32(export.name.utf8.count))
                    entry.append(export.name)
                    entry.append(export.description)
                    try transport.write(Self.optionReply(code, .server, entry.bytes), more: true)
                }
                try transport.write(Self.optionReply(code, .ack), more: false)
            case .info, .go:
                switch parseInfoRequest(data) {
                case .failure(let failure):
                    try transport.write(Self.optionReply(code, failure.reply, failure.message), more: false)
                case .success(let (export, requests)):
                    try transport.write(Self.infoReplies(code, export, requests) + Self.optionReply(code, .ack), more: false)
                    if NBD.Option(rawValue: code) == .go { return export }
                }
            default:
                // Unknown options, and those Spirit does not offer (TLS,
                // structured replies, meta contexts, extended headers).
                try transport.write(Self.optionReply(code, .errorUnsupported, "option \(code) is not supported"), more: false)
            }
        }
        throw Refusal(reason: "more than \(maxOptions) options")
    }

    /// NBD_OPT_INFO and NBD_OPT_GO: a name, then the info types asked for.
    func parseInfoRequest(_ data: [UInt8]) -> Result<(NBDExport, [UInt16]), InfoFailure> {
        var reader = ByteReader(data)
        guard let nameLength = try? reader.u32() else { return .failure(InfoFailure(.errorInvalid, "the request is too short")) }
        guard nameLength <= NBD.maxStringLength else {
            return .failure(InfoFailure(.errorTooBig, "the export name is \(nameLength) bytes (at most \(NBD.maxStringLength))"))
        }
        guard let name = try? reader.take(Int(nameLength)), let count = try? reader.u16(),
              let requested = try? reader.take(Int(count) * 2), reader.remaining == 0
        else { return .failure(InfoFailure(.errorInvalid, "the lengths in the request do not add up")) }
        let exportName = String(decoding: name, as: UTF8.self)
        guard let export = exports.find(exportName) else {
            return .failure(InfoFailure(.errorUnknown, "no export named '\(exportName.prefix(64))'"))
        }
        var types = ByteReader(Array(requested))
        var requests: [UInt16] = []
        while let type = try? types.u16() { requests.append(type) }
        return .success((export, requests))
    }

    struct InfoFailure: Error {
        let reply: NBD.Reply
        let message: String
        init(_ reply: NBD.Reply, _ message: String) {
            self.reply = reply
            self.message = message
        }
    }

    /// NBD_INFO_EXPORT always; NAME and DESCRIPTION when asked; BLOCK_SIZE
    /// always (a server may send it unasked).
    static func infoReplies(_ code: UInt32, _ export: NBDExport, _ requests: [UInt16]) -> [UInt8] {
        var bytes: [UInt8] = []
        var info = ByteWriter()
        info.u16(NBD.Info.export.rawValue)
        info.u64(UInt64(export.size))
        info.u16(transmissionFlags.rawValue)
        bytes += optionReply(code, .info, info.bytes)
        if requests.contains(NBD.Info.name.rawValue) {
            var name = ByteWriter()
            name.u16(NBD.Info.name.rawValue)
            name.append(export.name)
            bytes += optionReply(code, .info, name.bytes)
        }
        if requests.contains(NBD.Info.description.rawValue) {
            var description = ByteWriter()
            description.u16(NBD.Info.description.rawValue)
            description.append(export.description)
            bytes += optionReply(code, .info, description.bytes)
        }
        var blockSize = ByteWriter()
        blockSize.u16(NBD.Info.blockSize.rawValue)
        blockSize.u32(1)
        blockSize.u32(preferredBlockSize)
        blockSize.u32(UInt32(NBD.maxRequestLength))
        bytes += optionReply(code, .info, blockSize.bytes)
        return bytes
    }

    static func optionReply(_ code: UInt32, _ reply: NBD.Reply, _ data: [UInt8] = []) -> [UInt8] {
        var writer = ByteWriter(capacity: 20 + data.count)
        writer.u64(NBD.replyMagic)
        writer.u32(code)
        writer.u32(reply.rawValue)
        writer.u32(UInt32(data.count))
        writer.append(data)
        return writer.bytes
    }

    static func optionReply(_ code: UInt32, _ reply: NBD.Reply, _ message: String) -> [UInt8] {
        optionReply(code, reply, Array(message.utf8))
    }

    // MARK: transmission

    /// The transmission phase alone, for a client that skips the handshake:
    /// the kernel's nbd driver, handed one end of a socket pair with
    /// NBD_SET_SOCK, sends requests at once (the size and flags were set by
    /// ioctl).
    public func serveTransmission(_ export: NBDExport, _ transport: some NBDTransport) -> End {
        do {
            return try transmit(export, transport)
        } catch let refusal as Refusal {
            return .refused(refusal.reason)
        } catch {
            return .failed("\(error)")
        }
    }

    func transmit(_ export: NBDExport, _ transport: some NBDTransport) throws -> End {
        while true {
            guard let request = NBDRequest.parse(try transport.readRequest()) else {
                throw Refusal(reason: "a request without the request magic")
            }
            let command = NBD.Command(rawValue: request.type)
            // Writes carry their data: it is read (and dropped) so that the
            // stream stays in step, unless it is past the request cap.
            if command == .write {
                guard request.length <= NBD.maxRequestLength else {
                    throw Refusal(reason: "a write of \(request.length) bytes (at most \(NBD.maxRequestLength))")
                }
                _ = try transport.read(exactly: Int(request.length))
            }
            let error: NBD.Error?
            switch command {
            case .read:
                if let problem = check(request, export) {
                    error = problem
                } else if let problem = beforeRead?(Int64(request.offset), Int(request.length)) {
                    error = problem
                } else {
                    try transport.writeExport(header: NBDSimpleReply.encode(error: 0, cookie: request.cookie), export: export,
                                              offset: Int64(request.offset), length: Int(request.length))
                    continue
                }
            case .write, .trim, .writeZeroes:
                error = .permission // a read-only export
            case .flush:
                error = request.flags == 0 ? nil : .invalid
            case .disconnect:
                return .disconnected
            default:
                error = .invalid // the document: unknown commands get EINVAL
            }
            try transport.write(NBDSimpleReply.encode(error: error?.rawValue ?? 0, cookie: request.cookie), more: false)
        }
    }

    /// Bounds of a read: within the export, not empty, within the cap.
    func check(_ request: NBDRequest, _ export: NBDExport) -> NBD.Error? {
        // Flags a read may carry: FUA (0) and DF (bit 2) are harmless; any
        // other is refused.
        if request.flags & ~UInt16(1 << 0 | 1 << 2) != 0 { return .invalid }
        if request.length == 0 || request.length > NBD.maxRequestLength { return .invalid }
        let (end, overflow) = request.offset.addingReportingOverflow(UInt64(request.length))
        if overflow || end > UInt64(export.size) { return .invalid }
        return nil
    }
}
