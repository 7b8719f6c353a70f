/// The NBD protocol's numbers, from the protocol document
/// (github.com/NetworkBlockDevice/nbd, doc/proto.md): the fixed newstyle
/// handshake, its options and replies, and the transmission phase with
/// simple replies. Every integer on the wire is big-endian.
public enum NBD {
    public static let greetingMagic: UInt64 = 0x4e42_444d_4147_4943 // "NBDMAGIC"
    public static let optionMagic: UInt64 = 0x4948_4156_454f_5054 // "IHAVEOPT"
    public static let replyMagic: UInt64 = 0x0003_e889_0455_65a9
    public static let requestMagic: UInt32 = 0x2560_9513
    public static let simpleReplyMagic: UInt32 = 0x6744_6698

    /// Handshake flags (server) and client flags.
    public static let flagFixedNewstyle: UInt16 = 1 << 0
    public static let flagNoZeroes: UInt16 = 1 << 1

    /// The longest name or description a string may be (the document's
    /// limit). Past CVEs of nbd-server and QEMU came from export names.
    public static let maxStringLength = 4096
    /// The largest option payload read: NBD_OPT_GO with a 4096-byte name
    /// and a few info requests. A longer one ends the connection.
    public static let maxOptionLength = 4096 + 4 + 2 + 2 * 64
    /// The largest read (or write payload) one request may ask for. The
    /// document's default maximum block size is 32 MiB.
    public static let maxRequestLength = 32 << 20

    public enum Option: UInt32, Sendable {
        case exportName = 1, abort = 2, list = 3, peekExport = 4, startTLS = 5, info = 6, go = 7
        case structuredReply = 8, listMetaContext = 9, setMetaContext = 10, extendedHeaders = 11
    }

    public enum Reply: UInt32, Sendable {
        case ack = 1, server = 2, info = 3, metaContext = 4
        case errorUnsupported = 0x8000_0001, errorPolicy = 0x8000_0002, errorInvalid = 0x8000_0003
        case errorPlatform = 0x8000_0004, errorTLSRequired = 0x8000_0005, errorUnknown = 0x8000_0006
        case errorShutdown = 0x8000_0007, errorBlockSizeRequired = 0x8000_0008, errorTooBig = 0x8000_0009

        public var isError: Bool { rawValue & 0x8000_0000 != 0 }
    }

    public enum Info: UInt16, Sendable {
        case export = 0, name = 1, description = 2, blockSize = 3
    }

    /// Transmission flags of an export.
    public struct TransmissionFlags: OptionSet, Sendable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public static let hasFlags = TransmissionFlags(rawValue: 1 << 0)
        public static let readOnly = TransmissionFlags(rawValue: 1 << 1)
        public static let sendFlush = TransmissionFlags(rawValue: 1 << 2)
        public static let sendFUA = TransmissionFlags(rawValue: 1 << 3)
        public static let rotational = TransmissionFlags(rawValue: 1 << 4)
        public static let sendTrim = TransmissionFlags(rawValue: 1 << 5)
        public static let sendWriteZeroes = TransmissionFlags(rawValue: 1 << 6)
        public static let canMultiConn = TransmissionFlags(rawValue: 1 << 8)
    }

    public enum Command: UInt16, Sendable {
        case read = 0, write = 1, disconnect = 2, flush = 3, trim = 4, cache = 5, writeZeroes = 6, blockStatus = 7
    }

    /// The errors of a simple reply (the document's values, which are
    /// Linux's errno numbers).
    public enum Error: UInt32, Sendable {
        case permission = 1, io = 5, noMemory = 12, invalid = 22, noSpace = 28, overflow = 75
        case notSupported = 95, shutdown = 108
    }
}

/// Big-endian integers appended to a byte array.
struct ByteWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func append(_ data: [UInt8]) { bytes.append(contentsOf: data) }
    mutating func append(_ text: String) { bytes.append(contentsOf: Array(text.utf8)) }
}

/// Big-endian integers read from bytes that came off the wire; reading past
/// the end throws instead of trapping (a short message is the peer's
/// mistake, never a crash of ours).
struct ByteReader {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    struct Short: Swift.Error, CustomStringConvertible {
        var description: String { "a message ended before its fields did" }
    }

    var remaining: Int { bytes.count - position }

    mutating func take(_ count: Int) throws(Short) -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else { throw Short() }
        defer { position += count }
        return bytes[position..<position + count]
    }

    mutating func u16() throws(Short) -> UInt16 { try take(2).reduce(0) { $0 << 8 | UInt16($1) } }
    mutating func u32() throws(Short) -> UInt32 { try take(4).reduce(0) { $0 << 8 | UInt32($1) } }
    mutating func u64() throws(Short) -> UInt64 { try take(8).reduce(0) { $0 << 8 | UInt64($1) } }
}

/// A request of the transmission phase (28 bytes on the wire).
public struct NBDRequest: Sendable, Equatable {
    public static let size = 28
    public var flags: UInt16
    public var type: UInt16
    public var cookie: UInt64
    public var offset: UInt64
    public var length: UInt32

    public init(flags: UInt16 = 0, type: UInt16, cookie: UInt64, offset: UInt64, length: UInt32) {
        self.flags = flags
        self.type = type
        self.cookie = cookie
        self.offset = offset
        self.length = length
    }

    /// nil if the magic is wrong (the client is not speaking NBD: the
    /// connection cannot be trusted any more).
    public static func parse(_ bytes: [UInt8]) -> NBDRequest? {
        var reader = ByteReader(bytes)
        guard let magic = try? reader.u32(), magic == NBD.requestMagic,
              let flags = try? reader.u16(), let type = try? reader.u16(), let cookie = try? reader.u64(),
              let offset = try? reader.u64(), let length = try? reader.u32()
        else { return nil }
        return NBDRequest(flags: flags, type: type, cookie: cookie, offset: offset, length: length)
    }

    public var encoded: [UInt8] {
        var writer = ByteWriter(capacity: Self.size)
        writer.u32(NBD.requestMagic)
        writer.u16(flags)
        writer.u16(type)
        writer.u64(cookie)
        writer.u64(offset)
        writer.u32(length)
        return writer.bytes
    }
}

/// The header of a simple reply (16 bytes); a successful read's data follows.
struct NBDSimpleReply {
    static let size = 16

    static func encode(error: UInt32, cookie: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: size)
        writer.u32(NBD.simpleReplyMagic)
        writer.u32(error)
        writer.u64(cookie)
        return writer.bytes
    }
}
