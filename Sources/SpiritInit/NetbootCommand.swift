import Glibc
import Netboot
import Overlay
import SpiritCommands
import SpiritCore

/// `spirit serve netboot`: this machine becomes the boot server of its LAN
/// (the netboot service, off by default). Proxy DHCP on 67 and 4011 tells
/// PXE clients what to load, TFTP gives them iPXE, and HTTP gives iPXE the
/// script, the kernel and the initramfs, which boot from the Nodus peer.
enum NetbootCommand {
    static let usage = "serve netboot [--media DIR] [--loaders DIR] [--http-port N] [--tftp-port N] [--dhcp-port N] "
        + "[--pxe-port N] [--nodus ADDR[:PORT]] [--nodus-port N] [--append ARGS]"
    /// Debian's ipxe package puts its loaders here, and the image ships
    /// them at the same path.
    static let loaders = "/usr/lib/ipxe"

    static func run(_ arguments: [String]) -> Int32 {
        guard arguments.first == "netboot" else { return Usage.fail("serve needs netboot: \(usage)", usage: "usage: spirit " + usage) }
        return exitStatus { try serve(try Options(Array(arguments.dropFirst()))) }
    }

    /// Says why a listener stopped and ends the process (the supervisor
    /// restarts the service).
    static func stopped(_ reason: String) -> Never {
        Console.tool.error(reason)
        exit(1)
    }

    static func serve(_ options: Options) throws {
        let console = Console.tool
        guard options.words.isEmpty else { throw UsageError(message: "unexpected '\(options.words[0])': \(usage)") }
        // The running system's media, where `install parasite` looks too.
        let places = options.named["media"].map { [$0] } ?? RootLayout().runningMedia
        let manifestPath = places.map { $0 + "/" + NetbootMedia.manifest }.first { Kernel.fileSize($0) != nil }
        let imageName = try manifestPath.map { try Manifest.parse(try Kernel.readFile($0)).image }
        let loaderDirectory = options.named["loaders"] ?? loaders
        let media = NetbootMedia.find(places: places, imageName: imageName, loaders: loaderDirectory,
                                      size: { Kernel.fileSize($0) },
                                      list: { Kernel.listDirectory($0) })
        guard media.files[NetbootMedia.kernel] != nil, media.files[NetbootMedia.initramfs] != nil else {
            throw SpiritError("no \(media.missing.joined(separator: ", ")) in \(places.joined(separator: " or ")): nothing a PC could boot; "
                + "boot with crom.netboot=on to keep them in RAM, or --media DIR names a folder with the kernel and initramfs.zst (the ISO's root, make netboot's folder)")
        }
        if !media.missing.isEmpty { console.warning("netboot: not serving \(media.missing.joined(separator: ", ")): not in \(places.joined(separator: " or ")) or \(loaderDirectory)") }

        let httpPort = try NodusCommand.number(options, "http-port", default: 80, in: 1...65535)
        let tftpPort = try NodusCommand.number(options, "tftp-port", default: TFTP.port, in: 0...65535)
        let dhcpPort = try NodusCommand.number(options, "dhcp-port", default: 67, in: 0...65535)
        let pxePort = try NodusCommand.number(options, "pxe-port", default: 4011, in: 0...65535)
        let nodusPort = try NodusCommand.number(options, "nodus-port", default: BootConfig.defaultNBDPort, in: 1...65535)
        let peer = options.named["nodus"]
        if let peer { _ = try SocketAddress.parse(peer, defaultPort: nodusPort) }

        let http = NetbootHTTPServer(listener: try Socket.listenTCP(try SocketAddress(host: "0.0.0.0", port: httpPort)), media: media,
                                     peer: peer, nodusPort: nodusPort, append: options.named["append"] ?? NetbootScript.defaultAppend,
                                     console: console)
        // Without TFTP there is nothing to give a PXE ROM: no BIOS or
        // UEFI loader is offered, only iPXE's script and UEFI HTTP boot.
        let offerings = ProxyDHCP.Offerings(biosFile: tftpPort == 0 ? nil : media.files[NetbootMedia.biosLoader].map { _ in NetbootMedia.biosLoader },
                                            efiFile: tftpPort == 0 ? nil : media.files[NetbootMedia.efiLoader].map { _ in NetbootMedia.efiLoader },
                                            httpPort: httpPort,
                                            efiHTTPPath: media.files[NetbootMedia.efiLoader].map { _ in "/" + NetbootMedia.efiLoader })
        var listening = ["HTTP \(httpPort)"]
        if tftpPort != 0 {
            let tftp = try TFTPServer(port: tftpPort, root: loaderDirectory, console: console)
            // A listener that stops ends the service, which the supervisor
            // restarts: half a boot server would look healthy and boot nothing.
            try Threads.start { stopped("netboot: tftp stopped: \(tftp.serve())") }
            listening.append("TFTP \(tftpPort)")
        }
        for (port, kind) in [(dhcpPort, ProxyDHCP.Port.dhcp), (pxePort, .pxe)] where port != 0 {
            let responder = try ProxyDHCPResponder(port: port, kind: kind, offerings: offerings, console: console)
            try Threads.start { stopped("netboot: proxy DHCP on \(port) stopped: \(responder.serve())") }
            listening.append("proxy DHCP \(port)")
        }
        console.info("netboot: serving " + media.files.keys.sorted().joined(separator: ", ") + " and \(NetbootMedia.script) (booting from "
            + (peer ?? "this machine's Nodus, port \(nodusPort)") + "); " + listening.joined(separator: ", ")
            + "; proxy DHCP answers PXE clients only and gives no addresses")
        ServiceNotify.ready()
        throw SpiritError("netboot: the HTTP server stopped: \(http.serve())")
    }
}
