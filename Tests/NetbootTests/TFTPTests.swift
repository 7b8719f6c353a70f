import SpiritCore
import Testing
@testable import Netboot

@Suite struct TFTPTests {
    static func request(_ file: String, _ options: [(String, String)] = [], mode: String = "octet") -> [UInt8] {
        var bytes: [UInt8] = [0, 1] + Array(file.utf8) + [0] + Array(mode.utf8) + [0]
        for (name, value) in options { bytes += Array(name.utf8) + [0] + Array(value.utf8) + [0] }
        return bytes
    }

    /// A file of `size` bytes whose byte i is i % 251, read as the shell does.
    static func transfer(size: Int, options: [(String, String)] = [], maxRetries: Int = 5) throws -> TFTPTransfer {
        let parsed = try TFTP.parseRequest(request("undionly.kpxe", options))
        return TFTPTransfer(request: parsed, size: Int64(size), maxRetries: maxRetries) { offset, count in
            (0..<count).map { UInt8((Int(offset) + $0) % 251) }
        }
    }

    /// Plays a client that acknowledges every block: the bytes it got.
    static func receiveAll(_ transfer: inout TFTPTransfer) -> (bytes: [UInt8], blocks: Int, sawOptionAck: [UInt8]?) {
        var step = transfer.start()
        var bytes: [UInt8] = []
        var blocks = 0
        var optionAck: [UInt8]?
        while case .send(let packet) = step {
            switch TFTP.opcode(packet) {
            case .optionAck:
                optionAck = packet
                step = transfer.receive(TFTP.ackPacket(block: 0))
            case .data:
                bytes += packet[4...]
                blocks += 1
                step = transfer.receive(TFTP.ackPacket(block: UInt16(packet[2]) << 8 | UInt16(packet[3])))
            default:
                return (bytes, blocks, optionAck)
            }
        }
        #expect(step == .finished)
        return (bytes, blocks, optionAck)
    }

    @Test func parsesAReadRequestWithOptions() throws {
        let parsed = try TFTP.parseRequest(Self.request("/undionly.kpxe", [("blksize", "1432"), ("tsize", "0")], mode: "OCTET"))
        #expect(parsed == TFTP.ReadRequest(file: "/undionly.kpxe", mode: "octet", options: ["blksize": "1432", "tsize": "0"]))
    }

    @Test func refusesWritesNetasciiAndBrokenRequests() {
        #expect(throws: TFTP.Failure(.accessViolation, "this TFTP server is read-only")) {
            try TFTP.parseRequest([0, 2] + Array("x".utf8) + [0] + Array("octet".utf8) + [0])
        }
        #expect(throws: TFTP.Failure(.illegalOperation, "only octet mode is served (boot loaders are binary)")) {
            try TFTP.parseRequest(Self.request("x", mode: "netascii"))
        }
        #expect(throws: TFTP.Failure(.illegalOperation, "the request's last field has no terminating NUL")) {
            try TFTP.parseRequest([0, 1] + Array("x".utf8) + [0] + Array("octet".utf8))
        }
        #expect(throws: TFTP.Failure(.illegalOperation, "option 'blksize' has no value")) {
            try TFTP.parseRequest([0, 1] + Array("x".utf8) + [0] + Array("octet".utf8) + [0] + Array("blksize".utf8) + [0])
        }
    }

    @Test func pathsOutsideTheRootAreRefusedByName() throws {
        #expect(try TFTP.resolve("/undionly.kpxe", under: "/usr/lib/ipxe") == "/usr/lib/ipxe/undionly.kpxe")
        #expect(try TFTP.resolve("./efi//ipxe.efi", under: "/srv/") == "/srv/efi/ipxe.efi")
        for bad in ["../../etc/shadow", "/a/../../etc/passwd", "..", "a\\..\\b"] {
            #expect(throws: TFTP.Failure(.accessViolation, "access violation: '\(bad)' is outside the TFTP root")) {
                try TFTP.resolve(bad, under: "/usr/lib/ipxe")
            }
        }
        let packet = TFTP.Failure(.accessViolation, "access violation: '../x' is outside the TFTP root").packet
        #expect(Array(packet.prefix(4)) == [0, 5, 0, 2])
        #expect(String(decoding: packet[4...].dropLast(), as: UTF8.self).contains("'../x'"))
        #expect(packet.last == 0)
    }

    @Test func plainTransferIn512ByteBlocks() throws {
        var transfer = try Self.transfer(size: 1300)
        let (bytes, blocks, optionAck) = Self.receiveAll(&transfer)
        #expect(optionAck == nil)
        #expect(blocks == 3)
        #expect(bytes == (0..<1300).map { UInt8($0 % 251) })
    }

    @Test func aSizeThatIsAMultipleOfTheBlockEndsWithAnEmptyBlock() throws {
        var transfer = try Self.transfer(size: 1024)
        let (bytes, blocks, _) = Self.receiveAll(&transfer)
        #expect(blocks == 3)
        #expect(bytes.count == 1024)
    }

    @Test func blksizeAndTsizeAreAcknowledged() throws {
        var transfer = try Self.transfer(size: 74_213, options: [("blksize", "1432"), ("tsize", "0"), ("windowsize", "4")])
        let (bytes, blocks, optionAck) = Self.receiveAll(&transfer)
        // windowsize is not known here: left out of the OACK (RFC 2347).
        #expect(optionAck == TFTP.optionAckPacket([("blksize", "1432"), ("tsize", "74213")]))
        #expect(blocks == 74_213 / 1432 + 1)
        #expect(bytes == (0..<74_213).map { UInt8($0 % 251) })
    }

    @Test func anOutOfRangeBlksizeFallsBackTo512() throws {
        var transfer = try Self.transfer(size: 600, options: [("blksize", "70000")])
        #expect(transfer.blockSize == 512)
        #expect(Self.receiveAll(&transfer).blocks == 2)
    }

    @Test func timeoutsRetransmitThenGiveUp() throws {
        var transfer = try Self.transfer(size: 1000, maxRetries: 2)
        guard case .send(let first) = transfer.start() else { Issue.record("no first block"); return }
        #expect(transfer.timeout() == .send(first))
        #expect(transfer.timeout() == .send(first))
        #expect(transfer.timeout() == .failed("no ACK for block 1 after 2 retransmissions", packet: nil))
    }

    @Test func duplicateAcksAreNotAnswered() throws {
        var transfer = try Self.transfer(size: 2000)
        _ = transfer.start()
        guard case .send(let second) = transfer.receive(TFTP.ackPacket(block: 1)) else { Issue.record("no block 2"); return }
        #expect(Array(second.prefix(4)) == [0, 3, 0, 2])
        // A late duplicate of ACK 1: no second copy of block 2 (Sorcerer's Apprentice).
        #expect(transfer.receive(TFTP.ackPacket(block: 1)) == .wait)
        #expect(transfer.timeout() == .send(second))
    }

    @Test func aClientErrorEndsTheTransfer() throws {
        var transfer = try Self.transfer(size: 2000)
        _ = transfer.start()
        #expect(transfer.receive(TFTP.errorPacket(.notDefined, "cancelled")) == .failed("the client ended the transfer: cancelled", packet: nil))
    }

    @Test func blockNumbersWrapPast65535() throws {
        // 65536 full blocks of 8 bytes and an empty last one: block 65536 is sent as 0.
        var transfer = try Self.transfer(size: 65_536 * 8, options: [("blksize", "8")])
        let (bytes, blocks, _) = Self.receiveAll(&transfer)
        #expect(blocks == 65_537)
        #expect(bytes.count == 65_536 * 8)
    }
}

@Suite struct HTTPRangeTests {
    @Test func singleRanges() {
        #expect(HTTPRange.parse(nil, size: 100) == .whole)
        #expect(HTTPRange.parse("bytes=0-9", size: 100) == .part(first: 0, last: 9))
        #expect(HTTPRange.parse("bytes=90-", size: 100) == .part(first: 90, last: 99))
        #expect(HTTPRange.parse("bytes=-10", size: 100) == .part(first: 90, last: 99))
        #expect(HTTPRange.parse("bytes=-500", size: 100) == .part(first: 0, last: 99))
        #expect(HTTPRange.parse("bytes=50-5000", size: 100) == .part(first: 50, last: 99))
    }

    @Test func unsatisfiableAndIgnoredRanges() {
        #expect(HTTPRange.parse("bytes=100-", size: 100) == .unsatisfiable)
        #expect(HTTPRange.parse("bytes=200-300", size: 100) == .unsatisfiable)
        #expect(HTTPRange.parse("bytes=-0", size: 100) == .unsatisfiable)
        // Not taken: the whole file is sent (RFC 9110 lets a server ignore Range).
        #expect(HTTPRange.parse("bytes=0-1,5-6", size: 100) == .whole)
        #expect(HTTPRange.parse("items=0-1", size: 100) == .whole)
        #expect(HTTPRange.parse("bytes=9-1", size: 100) == .whole)
        #expect(HTTPRange.parse("bytes=a-b", size: 100) == .whole)
    }

    @Test func answersSayTheRangeAndLength() {
        let part = HTTPFileAnswer(head: false, rangeHeader: "bytes=10-19", size: 100)
        #expect(part.status == 206 && part.offset == 10 && part.count == 10)
        #expect(part.head.hasPrefix("HTTP/1.1 206 Partial Content\r\n"))
        #expect(part.head.contains("Content-Range: bytes 10-19/100\r\n") && part.head.contains("Content-Length: 10\r\n"))
        let missing = HTTPFileAnswer(head: false, rangeHeader: "bytes=100-", size: 100)
        #expect(missing.status == 416 && missing.count == 0 && missing.head.contains("Content-Range: bytes */100\r\n"))
        let head = HTTPFileAnswer(head: true, rangeHeader: nil, size: 100)
        #expect(head.status == 200 && head.count == 0 && head.head.contains("Content-Length: 100\r\n"))
        #expect(head.head.contains("Accept-Ranges: bytes\r\n") && head.head.hasSuffix("\r\n\r\n"))
    }
}

@Suite struct NetbootMediaTests {
    @Test func findsTheMediaFirstPlaceFirstAndOnlyServesItsTable() {
        let present: [String: Int64] = [
            "/run/spirit/image/rootfs.squashfs": 1, "/run/spirit/image/manifest.json": 1, "/run/spirit/image/layers/vm.squashfs": 1,
            "/run/spirit/media/kernel": 1, "/run/spirit/media/initramfs.zst": 1, "/run/spirit/media/manifest.json": 1,
            "/usr/lib/ipxe/undionly.kpxe": 1,
        ]
        let media = NetbootMedia.find(places: ["/run/spirit/image", "/run/spirit/media"], imageName: "rootfs.squashfs", loaders: "/usr/lib/ipxe",
                                      size: { present[$0] }, list: { $0 == "/run/spirit/image/layers" ? ["vm.squashfs", ".tmp"] : [] })
        #expect(media.file(for: "/manifest.json") == "/run/spirit/image/manifest.json")
        #expect(media.file(for: "/kernel") == "/run/spirit/media/kernel")
        #expect(media.file(for: "/vmlinuz") == "/run/spirit/media/kernel")
        #expect(media.file(for: "/layers/vm.squashfs") == "/run/spirit/image/layers/vm.squashfs")
        #expect(media.file(for: "/undionly.kpxe") == "/usr/lib/ipxe/undionly.kpxe")
        #expect(media.file(for: "/../etc/shadow") == nil && media.file(for: "/layers/.tmp") == nil)
        #expect(media.missing == ["ipxe.efi"])
    }

    @Test func theScriptBootsFromTheNodusPeer() {
        let script = NetbootScript.render(httpBase: "http://10.77.0.1:8080", peer: "10.77.0.1:10809", append: "console=ttyS0")
        #expect(script.hasPrefix("#!ipxe\n"))
        #expect(script.contains("\nkernel http://10.77.0.1:8080/kernel initrd=initramfs.zst console=ttyS0 crom.mode=nodus crom.nodus.server=10.77.0.1:10809\n"))
        #expect(script.contains("\ninitrd http://10.77.0.1:8080/initramfs.zst\n"))
        #expect(script.hasSuffix("\nboot\n"))
    }
}
