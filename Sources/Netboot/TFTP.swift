import SpiritCore

/// TFTP (RFC 1350) for reading only, with option negotiation (RFC 2347),
/// blksize (RFC 2348) and tsize (RFC 2349): the packets, the request, the
/// path check, and one transfer's state machine. No socket here: the shell
/// feeds it packets and timeouts and sends what it returns.
public enum TFTP {
    public static let port = 69
    public static let defaultBlockSize = 512
    /// RFC 2348's range for blksize.
    public static let blockSizes = 8...65464

    public enum Opcode: UInt16, Sendable {
        case readRequest = 1, writeRequest, data, ack, error, optionAck
    }

    /// The error codes of RFC 1350 (and 8, RFC 2347's option refusal).
    public enum ErrorCode: UInt16, Sendable {
        case notDefined = 0, fileNotFound, accessViolation, diskFull, illegalOperation, unknownTransferID, fileExists, noSuchUser
        case optionRefused = 8
    }

    /// A read request: the file, the mode, and the options in the order given.
    public struct ReadRequest: Sendable, Equatable {
        public var file: String
        public var mode: String
        public var options: [String: String]
    }

    /// A packet that is not what TFTP allows, and why; `code` is what the
    /// error packet to the client says.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var code: ErrorCode
        public var message: String
        public init(_ code: ErrorCode, _ message: String) {
            self.code = code
            self.message = message
        }
        public var description: String { message }
        public var packet: [UInt8] { TFTP.errorPacket(code, message) }
    }

    // MARK: packets

    public static func opcode(_ packet: [UInt8]) -> Opcode? {
        packet.count >= 2 ? Opcode(rawValue: UInt16(packet[0]) << 8 | UInt16(packet[1])) : nil
    }

    /// Parses an RRQ (a WRQ is refused: this server is read-only).
    public static func parseRequest(_ packet: [UInt8]) throws(Failure) -> ReadRequest {
        switch opcode(packet) {
        case .readRequest: break
        case .writeRequest: throw Failure(.accessViolation, "this TFTP server is read-only")
        default: throw Failure(.illegalOperation, "not a read request")
        }
        // NUL-terminated strings: file, mode, then option name/value pairs.
        var fields: [String] = []
        var current: [UInt8] = []
        for byte in packet.dropFirst(2) {
            if byte == 0 {
                fields.append(String(decoding: current, as: UTF8.self))
                current = []
            } else {
                current.append(byte)
            }
        }
        guard current.isEmpty else { throw Failure(.illegalOperation, "the request's last field has no terminating NUL") }
        guard fields.count >= 2, !fields[0].isEmpty else { throw Failure(.illegalOperation, "the request has no file name and mode") }
        let mode = fields[1].lowercased()
        guard mode == "octet" || mode == "netascii" else { throw Failure(.illegalOperation, "mode '\(fields[1])' is not octet") }
        guard mode == "octet" else { throw Failure(.illegalOperation, "only octet mode is served (boot loaders are binary)") }
        var options: [String: String] = [:]
        var rest = fields.dropFirst(2)
        while let name = rest.popFirst() {
            guard let value = rest.popFirst() else { throw Failure(.illegalOperation, "option '\(name)' has no value") }
            options[name.lowercased()] = value
        }
        return ReadRequest(file: fields[0], mode: mode, options: options)
    }

    public static func dataPacket(block: UInt16, _ bytes: ArraySlice<UInt8>) -> [UInt8] {
        [0, 3, UInt8(block >> 8), UInt8(block & 0xff)] + bytes
    }

    public static func ackPacket(block: UInt16) -> [UInt8] { [0, 4, UInt8(block >> 8), UInt8(block & 0xff)] }

    public static func errorPacket(_ code: ErrorCode, _ message: String) -> [UInt8] {
        [0, 5, UInt8(code.rawValue >> 8), UInt8(code.rawValue & 0xff)] + Array(message.utf8.prefix(400)) + [0]
    }

    public static func optionAckPacket(_ options: [(String, String)]) -> [UInt8] {
        var bytes: [UInt8] = [0, 6]
        for (name, value) in options { bytes += Array(name.utf8) + [0] + Array(value.utf8) + [0] }
        return bytes
    }

    // MARK: paths

    /// The path under `root` that `file` names, or an access violation that
    /// names it: no `..`, no way out of the root. A leading `/` is the
    /// root's (clients write `/undionly.kpxe` as often as `undionly.kpxe`).
    public static func resolve(_ file: String, under root: String) throws(Failure) -> String {
        let parts = file.split(separator: "/", omittingEmptySubsequences: true)
        guard !parts.isEmpty else { throw Failure(.fileNotFound, "'\(file)' names no file") }
        for part in parts where part == ".." || part.utf8.contains(0) || part.hasPrefix("\\") || part.contains("\\") {
            throw Failure(.accessViolation, "access violation: '\(file)' is outside the TFTP root")
        }
        let clean = parts.filter { $0 != "." }
        guard !clean.isEmpty else { throw Failure(.fileNotFound, "'\(file)' names no file") }
        return (root.hasSuffix("/") ? String(root.dropLast()) : root) + "/" + clean.joined(separator: "/")
    }
}

/// One read transfer's state: which block is out, how often it was sent.
/// The shell asks `start` for the first packet, then hands it every packet
/// from the client's port (`receive`) and every timeout (`timeout`), and
/// sends what comes back until `.finished` or `.failed`.
public struct TFTPTransfer: Sendable {
    public enum Step: Sendable, Equatable {
        case send([UInt8])
        /// Nothing to send (a duplicate or old ACK): keep waiting.
        case wait
        /// The last block was acknowledged.
        case finished
        /// Give up; send `packet` if there is one (an error for the client).
        case failed(String, packet: [UInt8]?)
    }

    public let size: Int64
    public private(set) var blockSize = TFTP.defaultBlockSize
    /// The options acknowledged (OACK), in the order sent.
    public private(set) var acknowledgedOptions: [(String, String)] = []
    /// The block number last sent (0: the OACK); counts past 65535 (the
    /// wire number wraps to 0, as most clients and servers agree).
    public private(set) var sentBlock: Int64 = 0
    public private(set) var retries = 0
    public let maxRetries: Int
    var lastPacket: [UInt8] = []
    var done = false
    /// Reads `count` bytes of the file at `offset` (fewer at its end).
    let readBlock: @Sendable (Int64, Int) throws(SystemError) -> [UInt8]

    public init(request: TFTP.ReadRequest, size: Int64, maxRetries: Int = 5, read: @escaping @Sendable (Int64, Int) throws(SystemError) -> [UInt8]) {
        self.size = size
        self.maxRetries = maxRetries
        self.readBlock = read
        // Options we do not know are left out of the OACK (RFC 2347); a
        // blksize out of range too, so the client falls back to 512.
        if let text = request.options["blksize"], let wanted = Int(text), TFTP.blockSizes.contains(wanted) {
            blockSize = wanted
            acknowledgedOptions.append(("blksize", String(wanted)))
        }
        if request.options["tsize"] != nil { acknowledgedOptions.append(("tsize", String(size))) }
    }

    /// The number of DATA blocks: the last is shorter than blockSize
    /// (empty when the size is a multiple of it).
    public var blockCount: Int64 { size / Int64(blockSize) + 1 }

    /// The first packet: the OACK when options were taken, else block 1.
    public mutating func start() -> Step {
        if !acknowledgedOptions.isEmpty {
            sentBlock = 0
            lastPacket = TFTP.optionAckPacket(acknowledgedOptions)
            return .send(lastPacket)
        }
        return send(block: 1)
    }

    /// A packet from the client's transfer port.
    public mutating func receive(_ packet: [UInt8]) -> Step {
        guard !done else { return .finished }
        switch TFTP.opcode(packet) {
        case .ack:
            guard packet.count >= 4 else { return .failed("a short ACK", packet: TFTP.errorPacket(.illegalOperation, "short ACK")) }
            let number = UInt16(packet[2]) << 8 | UInt16(packet[3])
            // Only the ACK of what is out moves on; an older one (a
            // duplicate) is not answered, which avoids the Sorcerer's
            // Apprentice bug (RFC 1123 §4.2.3.1).
            guard number == UInt16(truncatingIfNeeded: sentBlock) else { return .wait }
            if sentBlock == blockCount {
                done = true
                return .finished
            }
            return send(block: sentBlock + 1)
        case .error:
            let message = packet.count > 4 ? String(decoding: packet[4...].prefix { $0 != 0 }, as: UTF8.self) : ""
            return .failed("the client ended the transfer: \(message)", packet: nil)
        default:
            return .failed("an unexpected packet (opcode \(TFTP.opcode(packet).map { String($0.rawValue) } ?? "?"))",
                           packet: TFTP.errorPacket(.illegalOperation, "only ACKs are expected"))
        }
    }

    /// The client said nothing in time: the last packet again, up to
    /// `maxRetries` times.
    public mutating func timeout() -> Step {
        guard !done else { return .finished }
        retries += 1
        guard retries <= maxRetries else {
            return .failed("no ACK for block \(sentBlock) after \(maxRetries) retransmissions", packet: nil)
        }
        return .send(lastPacket)
    }

    mutating func send(block: Int64) -> Step {
        let offset = (block - 1) * Int64(blockSize)
        let bytes: [UInt8]
        do {
            bytes = offset >= size ? [] : try readBlock(offset, Int(min(Int64(blockSize), size - offset)))
        } catch {
            return .failed("unable to read block \(block): \(error)", packet: TFTP.errorPacket(.notDefined, "read error"))
        }
        sentBlock = block
        retries = 0
        lastPacket = TFTP.dataPacket(block: UInt16(truncatingIfNeeded: block), bytes[...])
        return .send(lastPacket)
    }
}
