import SpiritCore
import Testing
@testable import Netboot

/// DHCPDISCOVERs captured with tcpdump on a bridge (the README's "Network
/// boot server" section says how): QEMU's iPXE ROMs (Debian's ipxe-qemu,
/// pxe-e1000.rom under SeaBIOS and efi-e1000.rom under OVMF), OVMF's own
/// PXE client, and busybox udhcpc, an ordinary DHCP client.
enum Fixtures {
    static let directory = "/" + #filePath.split(separator: "/").dropLast().joined(separator: "/") + "/Fixtures"
    static func bytes(_ name: String) throws -> [UInt8] { try Kernel.readFile(directory + "/" + name) }
    static func packet(_ name: String) throws -> DHCPPacket { try DHCPPacket.parse(try bytes(name)) }
}

@Suite struct DHCPPacketTests {
    @Test func parsesIPXEsBIOSDiscover() throws {
        let packet = try Fixtures.packet("ipxe-bios-discover.bin")
        #expect(packet.op == 1)
        #expect(packet.messageType == .discover)
        #expect(packet.xid == 0xba0f_a20c)
        #expect(packet.clientHardwareAddress == "52:54:00:12:34:56")
        #expect(packet.vendorClass == "PXEClient:Arch:00000:UNDI:002001")
        #expect(packet.clientArchitectures == [0])
        #expect(packet.userClasses.contains("iPXE"))
        #expect(packet.option(97)?.count == 17)
    }

    @Test func parsesUEFIDiscoversAndAPlainClient() throws {
        let efi = try Fixtures.packet("ipxe-efi-discover.bin")
        #expect(efi.clientArchitectures == [7])
        #expect(efi.userClasses.contains("iPXE"))
        let ovmf = try Fixtures.packet("ovmf-pxe-discover.bin")
        #expect(ovmf.clientArchitectures == [7])
        #expect(ovmf.vendorClass == "PXEClient:Arch:00007:UNDI:003001")
        #expect(ovmf.userClasses.isEmpty)
        #expect(ovmf.flags == 0x8000)
        let plain = try Fixtures.packet("udhcpc-discover.bin")
        #expect(plain.vendorClass == "udhcp 1.35.0")
        #expect(plain.clientArchitectures == nil)
    }

    @Test func encodeThenParseGivesTheSamePacket() throws {
        let captured = try Fixtures.packet("ipxe-bios-discover.bin")
        #expect(try DHCPPacket.parse(captured.encode()) == captured)
        // A captured packet's options come back byte for byte.
        let bytes = try Fixtures.bytes("ipxe-bios-discover.bin")
        #expect(Array(captured.encode().prefix(240)) == Array(bytes.prefix(240)))
    }

    @Test func badPacketsAreRefusedWithWhatIsWrong() throws {
        let good = try Fixtures.bytes("ipxe-bios-discover.bin")
        #expect(throws: DHCPError("100 bytes is shorter than a DHCP message (240 at least)")) { try DHCPPacket.parse(Array(good.prefix(100))) }
        var noCookie = good
        noCookie[236] = 0
        #expect(throws: DHCPError("no DHCP magic cookie (99.130.83.99) after the BOOTP head: a plain BOOTP or not a DHCP message")) {
            try DHCPPacket.parse(noCookie)
        }
        // The first option (53) claims 200 bytes in a 243-byte datagram.
        var overrun = Array(good.prefix(243))
        overrun[241] = 200
        #expect(throws: DHCPError("option 53 at byte 240 claims 200 bytes; only 1 are left")) { try DHCPPacket.parse(overrun) }
        var unended = Array(good.prefix(243))
        unended[241] = 1
        #expect(throws: DHCPError("the options have no end (255)")) { try DHCPPacket.parse(unended) }
        var badOp = good
        badOp[0] = 7
        #expect(throws: DHCPError("op 7 is neither BOOTREQUEST (1) nor BOOTREPLY (2)")) { try DHCPPacket.parse(badOp) }
    }

    @Test func userClassReadsIPXEsBareFormAndRFC3004Items() {
        var packet = DHCPPacket(op: 1, xid: 1)
        packet.set(77, "iPXE")
        #expect(packet.userClasses.contains("iPXE"))
        packet.set(77, [4] + Array("iPXE".utf8) + [3] + Array("foo".utf8))
        #expect(packet.userClasses.contains("iPXE") && packet.userClasses.contains("foo"))
        packet.set(77, "iPXEx")
        #expect(!packet.userClasses.contains("iPXE"))
    }
}

@Suite struct ProxyDHCPTests {
    let server: [UInt8] = [10, 77, 0, 1]
    let offerings = ProxyDHCP.Offerings(biosFile: "undionly.kpxe", efiFile: "ipxe.efi", httpPort: 8080)

    func answer(_ request: DHCPPacket, port: ProxyDHCP.Port = .dhcp) -> (DHCPPacket, String)? {
        guard case .answer(let reply, let file) = ProxyDHCP.decide(request, port: port, server: server, offerings: offerings) else { return nil }
        return (reply, file)
    }

    /// A PXE ROM that is not iPXE: the captured BIOS discover without its user class.
    func pxeROM(_ name: String = "ipxe-bios-discover.bin") throws -> DHCPPacket {
        var packet = try Fixtures.packet(name)
        packet.options.removeAll { $0.code == 77 }
        return packet
    }

    @Test func iPXEGetsTheBootScriptNotItselfAgain() throws {
        // The chainload loop break: iPXE asking gets the script's URL.
        for name in ["ipxe-bios-discover.bin", "ipxe-efi-discover.bin"] {
            let request = try Fixtures.packet(name)
            let (reply, file) = try #require(answer(request))
            #expect(file == "http://10.77.0.1:8080/boot.ipxe")
            #expect(reply.file == file)
            #expect(reply.option(67) == Array(file.utf8))
        }
    }

    @Test func biosPXEGetsUndionlyOverTFTP() throws {
        let request = try pxeROM()
        let (reply, file) = try #require(answer(request))
        #expect(file == "undionly.kpxe")
        #expect(reply.op == 2 && reply.xid == request.xid && reply.chaddr == request.chaddr)
        #expect(reply.messageType == .offer)
        #expect(reply.siaddr == server)
        #expect(reply.option(66) == Array("10.77.0.1".utf8))
        #expect(reply.option(54) == server)
        #expect(reply.option(60) == Array("PXEClient".utf8))
        #expect(reply.option(43) == [6, 1, 8, 255])
        #expect(reply.option(97) == request.option(97))
    }

    @Test func uefiPXEGetsIPXEEFI() throws {
        let (reply, file) = try #require(answer(try Fixtures.packet("ovmf-pxe-discover.bin")))
        #expect(file == "ipxe.efi")
        #expect(reply.flags == 0x8000)
        var arch9 = try pxeROM()
        arch9.set(93, [0, 9])
        #expect(answer(arch9)?.1 == "ipxe.efi")
    }

    @Test func uefiHTTPBootGetsTheLoaderByURL() throws {
        var request = try pxeROM()
        request.set(60, "HTTPClient:Arch:00016:UNDI:003001")
        request.set(93, [0, 16])
        let (reply, file) = try #require(answer(request))
        #expect(file == "http://10.77.0.1:8080/ipxe.efi")
        #expect(reply.option(60) == Array("HTTPClient".utf8))
        #expect(reply.option(43) == nil && reply.option(66) == nil)
    }

    @Test func neverAnAddressNorALease() throws {
        for name in ["ipxe-bios-discover.bin", "ipxe-efi-discover.bin", "ovmf-pxe-discover.bin"] {
            let (reply, _) = try #require(answer(try Fixtures.packet(name)))
            #expect(reply.yiaddr == [0, 0, 0, 0])
            for code: UInt8 in [1, 3, 6, 51, 58, 59] { #expect(reply.option(code) == nil, "option \(code) in a proxy answer") }
            let parsed = try DHCPPacket.parse(reply.encode())
            #expect(parsed.yiaddr == [0, 0, 0, 0])
        }
    }

    @Test func aPlainDHCPClientGetsNothing() throws {
        let decision = ProxyDHCP.decide(try Fixtures.packet("udhcpc-discover.bin"), port: .dhcp, server: server, offerings: offerings)
        #expect(decision == .ignore("not a PXE client (vendor class 'udhcp 1.35.0')"))
        var noVendor = try Fixtures.packet("udhcpc-discover.bin")
        noVendor.options.removeAll { $0.code == 60 }
        #expect(ProxyDHCP.decide(noVendor, port: .dhcp, server: server, offerings: offerings) == .ignore("not a PXE client (vendor class '')"))
    }

    @Test func requestsOnPort4011AreAcknowledgedToTheSender() throws {
        var request = try pxeROM()
        request.set(53, [DHCPMessageType.request.rawValue])
        request.ciaddr = [10, 77, 0, 120]
        let (reply, file) = try #require(answer(request, port: .pxe))
        #expect(file == "undionly.kpxe")
        #expect(reply.messageType == .ack)
        #expect(reply.ciaddr == [10, 77, 0, 120] && reply.yiaddr == [0, 0, 0, 0])
        let target = ProxyDHCP.destination(of: request, port: .pxe, sender: ([10, 77, 0, 120], 68))
        #expect(target.address == [10, 77, 0, 120] && target.port == 68)
    }

    @Test func anAddressRequestToTheRealServerIsNotOurs() throws {
        var request = try Fixtures.packet("ipxe-bios-discover.bin")
        request.set(53, [DHCPMessageType.request.rawValue])
        request.set(54, [10, 77, 0, 2])
        #expect(ProxyDHCP.decide(request, port: .dhcp, server: server, offerings: offerings) == .ignore("a REQUEST for another server's offer"))
        for type in [DHCPMessageType.release, .decline, .inform] {
            request.set(53, [type.rawValue])
            guard case .ignore = ProxyDHCP.decide(request, port: .dhcp, server: server, offerings: offerings) else {
                Issue.record("answered a DHCP \(type)")
                continue
            }
        }
    }

    @Test func unknownArchitecturesAndMissingLoadersGetNothing() throws {
        var arm = try pxeROM()
        arm.set(93, [0, 11])
        #expect(ProxyDHCP.decide(arm, port: .dhcp, server: server, offerings: offerings) == .ignore("no boot file for client architecture 11 (RFC 4578)"))
        let none = ProxyDHCP.Offerings(biosFile: nil, efiFile: nil, httpPort: 80)
        guard case .ignore = ProxyDHCP.decide(try pxeROM(), port: .dhcp, server: server, offerings: none) else {
            Issue.record("offered a BIOS loader it does not have")
            return
        }
        // iPXE still gets the script, at port 80 without a port in the URL.
        guard case .answer(_, let file) = ProxyDHCP.decide(try Fixtures.packet("ipxe-bios-discover.bin"), port: .dhcp, server: server, offerings: none) else {
            Issue.record("no script for iPXE")
            return
        }
        #expect(file == "http://10.77.0.1/boot.ipxe")
    }

    @Test func answersGoThroughTheRelayOrAreBroadcast() throws {
        var request = try Fixtures.packet("ipxe-bios-discover.bin")
        let broadcast = ProxyDHCP.destination(of: request, port: .dhcp, sender: ([0, 0, 0, 0], 68))
        #expect(broadcast.address == [255, 255, 255, 255] && broadcast.port == 68)
        request.giaddr = [10, 1, 0, 1]
        let relayed = ProxyDHCP.destination(of: request, port: .dhcp, sender: ([10, 1, 0, 1], 67))
        #expect(relayed.address == [10, 1, 0, 1] && relayed.port == 67)
    }

    @Test func repliesAreNotAnsweredAndUntypedBOOTPIsIgnored() throws {
        let (reply, _) = try #require(answer(try Fixtures.packet("ipxe-bios-discover.bin")))
        #expect(ProxyDHCP.decide(reply, port: .dhcp, server: server, offerings: offerings) == .ignore("a BOOTREPLY, not a request"))
        var bootp = try Fixtures.packet("ipxe-bios-discover.bin")
        bootp.options.removeAll { $0.code == 53 }
        #expect(ProxyDHCP.decide(bootp, port: .dhcp, server: server, offerings: offerings) == .ignore("a BOOTP message without a DHCP message type"))
    }
}
