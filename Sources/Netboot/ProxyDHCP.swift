/// Who gets what from the proxy DHCP responder (PXE spec 2.1 §2.2.5,
/// "proxyDHCP"): it answers only a PXE or UEFI HTTP boot client's DISCOVER
/// (port 67) or REQUEST (port 4011), and only with boot information — never
/// an address (yiaddr stays 0.0.0.0), never a lease time, a mask or a
/// router. The LAN's own DHCP server gives the address; the client merges
/// the two answers. A client that is not PXE gets nothing at all.
public enum ProxyDHCP {
    /// Where a message came in.
    public enum Port: Sendable, Equatable {
        /// 67: the broadcast DISCOVER every DHCP client sends.
        case dhcp
        /// 4011: the PXE client's REQUEST to the boot server it was offered.
        case pxe
    }

    /// What the responder has to give.
    public struct Offerings: Sendable, Equatable {
        /// The BIOS PXE loader over TFTP (undionly.kpxe), if it is here.
        public var biosFile: String?
        /// The UEFI x64 loader over TFTP (ipxe.efi), if it is here.
        public var efiFile: String?
        /// The HTTP server's port.
        public var httpPort: Int
        /// The iPXE script's path on it.
        public var scriptPath = "/boot.ipxe"
        /// The UEFI HTTP boot loader's path on it (nil: no UEFI HTTP boot).
        public var efiHTTPPath: String? = "/ipxe.efi"

        public init(biosFile: String?, efiFile: String?, httpPort: Int, efiHTTPPath: String? = "/ipxe.efi") {
            self.biosFile = biosFile
            self.efiFile = efiFile
            self.httpPort = httpPort
            self.efiHTTPPath = efiHTTPPath
        }

        func url(_ server: [UInt8], _ path: String) -> String {
            "http://" + ProxyDHCP.dotted(server) + (httpPort == 80 ? "" : ":\(httpPort)") + path
        }
    }

    /// The client architectures of RFC 4578 §2.1 (and IANA's registry) this
    /// responder has a boot file for.
    public enum Architecture {
        public static let biosX86: UInt16 = 0
        public static let efiX64: UInt16 = 7
        /// EFI BC: x64 firmware says 9 as often as 7 (RFC 4578's errata).
        public static let efiByteCode: UInt16 = 9
        public static let efiX64HTTP: UInt16 = 16
    }

    public enum Decision: Sendable, Equatable {
        /// Send this, and the boot file it names (for the log).
        case answer(DHCPPacket, bootFile: String)
        /// Say nothing; the reason is for the debug log.
        case ignore(String)
    }

    /// The answer to `request`, from a responder at `server` (the address
    /// of the interface it came in on, four bytes), or why there is none.
    public static func decide(_ request: DHCPPacket, port: Port, server: [UInt8], offerings: Offerings) -> Decision {
        guard request.op == 1 else { return .ignore("a BOOTREPLY, not a request") }
        guard let type = request.messageType else { return .ignore("a BOOTP message without a DHCP message type") }
        switch (type, port) {
        case (.discover, .dhcp), (.request, .pxe), (.discover, .pxe):
            break
        case (.request, .dhcp):
            // A client asking its DHCP server for the address it was offered:
            // answered only when it names this responder (never with an address).
            guard request.option(54) == server else { return .ignore("a REQUEST for another server's offer") }
        default:
            return .ignore("a DHCP \(type) is the LAN's DHCP server's business")
        }
        let vendor = request.vendorClass ?? ""
        let kind: String
        if vendor.hasPrefix("PXEClient") {
            kind = "PXEClient"
        } else if vendor.hasPrefix("HTTPClient") {
            kind = "HTTPClient"
        } else {
            return .ignore("not a PXE client (vendor class '\(vendor.prefix(40))')")
        }
        // RFC 4578 asks every PXE client for option 93; one without it is
        // taken for a BIOS PC, as the PXE 2.1 spec's clients are.
        let architecture = request.clientArchitectures?.first ?? Architecture.biosX86
        let bootFile: String
        let viaHTTP: Bool
        if request.userClasses.contains("iPXE") {
            // iPXE is already running: give it the script, not iPXE again
            // (the chainload loop).
            bootFile = offerings.url(server, offerings.scriptPath)
            viaHTTP = true
        } else {
            switch architecture {
            case Architecture.biosX86:
                guard let file = offerings.biosFile else { return .ignore("a BIOS PXE client, and no BIOS loader (undionly.kpxe) to give") }
                bootFile = file
                viaHTTP = false
            case Architecture.efiX64, Architecture.efiByteCode:
                guard let file = offerings.efiFile else { return .ignore("a UEFI x64 PXE client, and no UEFI loader (ipxe.efi) to give") }
                bootFile = file
                viaHTTP = false
            case Architecture.efiX64HTTP:
                guard let path = offerings.efiHTTPPath else { return .ignore("a UEFI HTTP boot client, and no UEFI loader to give") }
                bootFile = offerings.url(server, path)
                viaHTTP = true
            default:
                return .ignore("no boot file for client architecture \(architecture) (RFC 4578)")
            }
        }

        var reply = DHCPPacket(op: 2, xid: request.xid)
        reply.htype = request.htype
        reply.hlen = request.hlen
        reply.flags = request.flags
        reply.ciaddr = request.ciaddr
        reply.giaddr = request.giaddr
        reply.chaddr = request.chaddr
        // siaddr: the TFTP server ("next server"); yiaddr stays 0.0.0.0.
        reply.siaddr = server
        reply.file = bootFile
        reply.set(53, [type == .discover ? DHCPMessageType.offer.rawValue : DHCPMessageType.ack.rawValue])
        reply.set(54, server)
        reply.set(60, kind)
        // PXE spec: a client's UUID/GUID (97) comes back as it was sent.
        if let guid = request.option(97) { reply.set(97, guid) }
        if kind == "PXEClient" {
            // Option 43, PXE_DISCOVERY_CONTROL (sub-option 6) bit 3: boot
            // the file named here, without a boot server discovery or menu.
            reply.set(43, [6, 1, 8, 255])
        }
        if !viaHTTP { reply.set(66, dotted(server)) }
        reply.set(67, bootFile)
        return .answer(reply, bootFile: bootFile)
    }

    /// Where an answer goes: through the relay that forwarded the request
    /// (giaddr, port 67); else, on port 67, broadcast to the client port 68
    /// (the client has no address yet); on 4011, back to the sender.
    public static func destination(of request: DHCPPacket, port: Port, sender: (address: [UInt8], port: Int)) -> (address: [UInt8], port: Int) {
        if request.giaddr != [0, 0, 0, 0] { return (request.giaddr, 67) }
        switch port {
        case .dhcp: return ([255, 255, 255, 255], 68)
        case .pxe: return sender
        }
    }

    public static func dotted(_ address: [UInt8]) -> String { address.map(String.init).joined(separator: ".") }
}
