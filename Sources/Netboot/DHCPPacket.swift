/// A BOOTP/DHCP message (RFC 2131 §2, options RFC 2132): the fixed
/// 236-byte head, the magic cookie, then options as code, length, value.
/// Parsed from bytes and built to bytes; nothing here touches a socket.
public struct DHCPPacket: Sendable, Equatable {
    /// 1: BOOTREQUEST (client to server), 2: BOOTREPLY.
    public var op: UInt8
    public var htype: UInt8 = 1
    public var hlen: UInt8 = 6
    public var hops: UInt8 = 0
    public var xid: UInt32
    public var secs: UInt16 = 0
    /// Bit 15: the client asks for broadcast answers.
    public var flags: UInt16 = 0
    /// Addresses in network order as four bytes (ciaddr, yiaddr, siaddr, giaddr).
    public var ciaddr: [UInt8] = [0, 0, 0, 0]
    public var yiaddr: [UInt8] = [0, 0, 0, 0]
    public var siaddr: [UInt8] = [0, 0, 0, 0]
    public var giaddr: [UInt8] = [0, 0, 0, 0]
    /// The client's hardware address field, all 16 bytes.
    public var chaddr: [UInt8] = Array(repeating: 0, count: 16)
    /// The server host name and boot file fields (64 and 128 bytes, NUL-padded).
    public var sname: String = ""
    public var file: String = ""
    /// The options in the order they came (or are to be sent), without
    /// pad (0) and end (255).
    public var options: [(code: UInt8, value: [UInt8])] = []

    public static let magicCookie: [UInt8] = [99, 130, 83, 99]
    static let headSize = 236

    public init(op: UInt8, xid: UInt32) {
        self.op = op
        self.xid = xid
    }

    public static func == (a: DHCPPacket, b: DHCPPacket) -> Bool {
        a.op == b.op && a.htype == b.htype && a.hlen == b.hlen && a.hops == b.hops && a.xid == b.xid && a.secs == b.secs
            && a.flags == b.flags && a.ciaddr == b.ciaddr && a.yiaddr == b.yiaddr && a.siaddr == b.siaddr && a.giaddr == b.giaddr
            && a.chaddr == b.chaddr && a.sname == b.sname && a.file == b.file
            && a.options.map(\.code) == b.options.map(\.code) && a.options.map(\.value) == b.options.map(\.value)
    }

    // MARK: options

    public func option(_ code: UInt8) -> [UInt8]? { options.first { $0.code == code }?.value }

    public mutating func set(_ code: UInt8, _ value: [UInt8]) {
        if let index = options.firstIndex(where: { $0.code == code }) {
            options[index].value = value
        } else {
            options.append((code, value))
        }
    }

    public mutating func set(_ code: UInt8, _ text: String) { set(code, Array(text.utf8)) }

    /// Option 53, the DHCP message type.
    public var messageType: DHCPMessageType? { option(53).flatMap { $0.count == 1 ? DHCPMessageType(rawValue: $0[0]) : nil } }

    /// Option 60, the vendor class identifier, as text.
    public var vendorClass: String? { option(60).map { String(decoding: $0, as: UTF8.self) } }

    /// Option 93 (RFC 4578): the client's system architectures, each two
    /// bytes; nil when the client did not send it.
    public var clientArchitectures: [UInt16]? {
        guard let value = option(93), !value.isEmpty, value.count % 2 == 0 else { return nil }
        return stride(from: 0, to: value.count, by: 2).map { UInt16(value[$0]) << 8 | UInt16(value[$0 + 1]) }
    }

    /// Option 77, the user class. iPXE sends its name bare ("iPXE"); RFC
    /// 3004 wraps each class in a length byte. Both are read: the bare value
    /// as one class, and, when the bytes parse as RFC 3004 items, those too.
    public var userClasses: [String] {
        guard let value = option(77), !value.isEmpty else { return [] }
        var classes = [String(decoding: value, as: UTF8.self)]
        var items: [String] = []
        var at = 0
        while at < value.count {
            let length = Int(value[at])
            guard length > 0, at + 1 + length <= value.count else { items = []; break }
            items.append(String(decoding: value[(at + 1)..<(at + 1 + length)], as: UTF8.self))
            at += 1 + length
        }
        classes += items
        return classes
    }

    /// The client's hardware address as `52:54:00:12:34:56`.
    public var clientHardwareAddress: String {
        chaddr.prefix(Int(min(hlen, 16))).map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
        }.joined(separator: ":")
    }

    // MARK: bytes

    /// Parses a datagram; a short one, one without the magic cookie, or an
    /// option that runs past the end is refused with what is wrong.
    public static func parse(_ bytes: [UInt8]) throws(DHCPError) -> DHCPPacket {
        guard bytes.count >= headSize + 4 else {
            throw DHCPError("\(bytes.count) bytes is shorter than a DHCP message (\(headSize + 4) at least)")
        }
        guard Array(bytes[headSize..<(headSize + 4)]) == magicCookie else {
            throw DHCPError("no DHCP magic cookie (99.130.83.99) after the BOOTP head: a plain BOOTP or not a DHCP message")
        }
        guard bytes[0] == 1 || bytes[0] == 2 else { throw DHCPError("op \(bytes[0]) is neither BOOTREQUEST (1) nor BOOTREPLY (2)") }
        guard bytes[2] <= 16 else { throw DHCPError("a hardware address of \(bytes[2]) bytes does not fit chaddr's 16") }
        func word(_ at: Int) -> UInt32 { UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8 | UInt32(bytes[at + 3]) }
        func half(_ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }
        func text(_ range: Range<Int>) -> String { String(decoding: bytes[range].prefix { $0 != 0 }, as: UTF8.self) }
        var packet = DHCPPacket(op: bytes[0], xid: word(4))
        packet.htype = bytes[1]
        packet.hlen = bytes[2]
        packet.hops = bytes[3]
        packet.secs = half(8)
        packet.flags = half(10)
        packet.ciaddr = Array(bytes[12..<16])
        packet.yiaddr = Array(bytes[16..<20])
        packet.siaddr = Array(bytes[20..<24])
        packet.giaddr = Array(bytes[24..<28])
        packet.chaddr = Array(bytes[28..<44])
        packet.sname = text(44..<108)
        packet.file = text(108..<236)
        var at = headSize + 4
        var ended = false
        while at < bytes.count && !ended {
            let code = bytes[at]
            switch code {
            case 0:
                at += 1
            case 255:
                ended = true
            default:
                guard at + 1 < bytes.count else { throw DHCPError("option \(code) at byte \(at) has no length") }
                let length = Int(bytes[at + 1])
                guard at + 2 + length <= bytes.count else {
                    throw DHCPError("option \(code) at byte \(at) claims \(length) bytes; only \(bytes.count - at - 2) are left")
                }
                packet.options.append((code, Array(bytes[(at + 2)..<(at + 2 + length)])))
                at += 2 + length
            }
        }
        guard ended else { throw DHCPError("the options have no end (255)") }
        return packet
    }

    /// The datagram: head, cookie, options, end, padded to BOOTP's 300
    /// bytes (some old clients drop anything shorter).
    public func encode() -> [UInt8] {
        var bytes: [UInt8] = [op, htype, hlen, hops]
        bytes += [UInt8(xid >> 24), UInt8(xid >> 16 & 0xff), UInt8(xid >> 8 & 0xff), UInt8(xid & 0xff)]
        bytes += [UInt8(secs >> 8), UInt8(secs & 0xff), UInt8(flags >> 8), UInt8(flags & 0xff)]
        for address in [ciaddr, yiaddr, siaddr, giaddr] { bytes += Self.fixed(address, 4) }
        bytes += Self.fixed(chaddr, 16)
        bytes += Self.fixed(Array(sname.utf8.prefix(63)), 64)
        bytes += Self.fixed(Array(file.utf8.prefix(127)), 128)
        bytes += Self.magicCookie
        for (code, value) in options {
            // A value over 255 bytes would need RFC 3396's split; nothing
            // this server sends is that long.
            precondition(value.count <= 255, "DHCP option \(code) is \(value.count) bytes")
            bytes += [code, UInt8(value.count)] + value
        }
        bytes.append(255)
        if bytes.count < 300 { bytes += Array(repeating: 0, count: 300 - bytes.count) }
        return bytes
    }

    static func fixed(_ bytes: [UInt8], _ size: Int) -> [UInt8] {
        Array(bytes.prefix(size)) + Array(repeating: 0, count: max(0, size - bytes.count))
    }
}

public enum DHCPMessageType: UInt8, Sendable {
    case discover = 1, offer, request, decline, ack, nak, release, inform
}

/// A datagram that is not a DHCP message this server can read, and why.
public struct DHCPError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
