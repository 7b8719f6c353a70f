import Glibc
@testable import ModuleLoader
@testable import Net
@testable import Netboot
@testable import Nodus
import Persistence
import Sentinel
import SpiritCore
import Supervisor
import Upgrade
import VMManager

extension FuzzTarget {
    /// Every target, in the order `make fuzz` runs them; fuzz/corpus/NAME
    /// holds each one's seeds.
    static let all: [FuzzTarget] = [
        cmdline, manifest, config, nbdServer, nbdClient, discovery, http, uevent, qmp, grubenv, persist, sentinel, journal, modindex, netboot,
        hydrate,
    ]

    /// /proc/cmdline: the crom.* flags, and any other word a boot loader passes.
    static let cmdline = FuzzTarget(name: "cmdline") { bytes in
        let text = String(decoding: bytes, as: UTF8.self)
        _ = KernelCommandLine(text)
        _ = BootConfig.parse(text)
    }

    /// The JSON a boot medium, a layer shelf or a release server hands over:
    /// the image, layer and release manifests, the layer state, crom.layers=.
    static let manifest = FuzzTarget(name: "manifest") { bytes in
        _ = try? Manifest.parse(bytes)
        _ = try? LayerManifest.parse(bytes)
        _ = try? ReleaseManifest.parse(bytes)
        _ = try? LayerState.parse(bytes)
        _ = try? LayerSelection.parse(String(decoding: bytes, as: UTF8.self))
        if let value = try? JSONReader.parse(bytes) {
            // What Spirit writes of a value it read, it must read back.
            require((try? JSONReader.parse(value.text)) != nil, "JSON written from a parsed value does not parse: \(value.text)")
        }
    }

    /// The TOML subset of every config file: service files, VM definitions,
    /// the persistence selection; and modprobe.d files from the image.
    static let config = FuzzTarget(name: "config") { bytes in
        let text = String(decoding: bytes, as: UTF8.self)
        if let file = try? ConfigFile.parse(text, path: "fuzz.toml") {
            _ = try? ServiceDefinition(name: "fuzz", file: file)
            _ = try? PersistSelection.parse(file)
        }
        _ = try? VMDefinition.parse(text, path: "fuzz.toml")
        var modules = ModuleConfig()
        modules.read(text, origin: "fuzz.conf")
    }

    /// The NBD server's side of a client: the handshake's options, then
    /// requests, from bytes a LAN peer sends.
    static let nbdServer = FuzzTarget(name: "nbd-server", setUp: { _ = FuzzExport.exports }) { bytes in
        _ = NBDRequest.parse(bytes)
        _ = NBDServerSession(exports: FuzzExport.exports).run(ScriptedClient(bytes))
    }

    /// The NBD client's side: the server's greeting, option replies and
    /// read replies, from a socket pair whose other end holds the input.
    static let nbdClient = FuzzTarget(name: "nbd-client", setUp: { signal(SIGPIPE, SIG_IGN) }) { bytes in
        let (mine, peer) = socketPair(holding: bytes)
        defer { close(peer) }
        let socket = Socket(fd: mine, name: "fuzz")
        guard let client = try? NBDClient.negotiate(socket, server: SocketAddress(ipv4: 0x7f00_0001, port: 10809), export: "")
        else { socket.close(); return }
        var reader = NBDSequentialReader(client: client, chunk: 512, window: 4)
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<256 {
            guard let n = try? buffer.withUnsafeMutableBytes({ try reader.read(into: $0) }), n > 0 else { break }
        }
        reader.close()
    }

    /// Discovery datagrams on UDP 7331: a seek (the server reads it) and an
    /// answer (the booting client reads it).
    static let discovery = FuzzTarget(name: "discovery") { bytes in
        if let seek = Discovery.parseSeek(bytes) {
            _ = Discovery.answer(to: seek, offer: Discovery.Offer(host: "10.0.0.1", port: 10809))
        }
        if let offer = Discovery.parseAnswer(bytes) { _ = Discovery.choose([offer]) }
    }

    /// An HTTP server's answer: the status line and headers, then a body by
    /// Content-Length, chunks or to the close, read by the connection from
    /// a socket pair; and URLs (a crom.http= flag, a Location header).
    static let http = FuzzTarget(name: "http", setUp: { signal(SIGPIPE, SIG_IGN) }) { bytes in
        let text = String(decoding: bytes, as: UTF8.self)
        _ = try? HTTPResponseHead.parse(text)
        if let url = try? HTTPURL.parse(text) { _ = url.appending("manifest.json") }
        let base = HTTPURL(host: "boot.example", port: 80, target: "/spirit/")
        _ = try? base.resolving(text)

        let (mine, peer) = socketPair(holding: bytes)
        defer { close(peer) }
        guard let connection = try? HTTPConnection(socket: Socket(fd: mine, name: "fuzz"), url: base, idleMillis: 1000) else { return }
        _ = try? connection.readAll(limit: 1 << 20)
    }

    /// What the netboot service reads from the LAN: a DHCP datagram (the
    /// proxy's decision, and an answer must never carry an address), a TFTP
    /// request (a path it resolves must stay under the root), a Range header.
    static let netboot = FuzzTarget(name: "netboot") { bytes in
        if let packet = try? DHCPPacket.parse(bytes) {
            // The options and the head's numbers read back as they were
            // (sname and file are text, which invalid UTF-8 may not keep).
            let again = try? DHCPPacket.parse(packet.encode())
            require(again?.options.map(\.code) == packet.options.map(\.code) && again?.options.map(\.value) == packet.options.map(\.value)
                    && again?.xid == packet.xid && again?.chaddr == packet.chaddr, "a parsed DHCP packet does not read back the same")
            let offerings = ProxyDHCP.Offerings(biosFile: "undionly.kpxe", efiFile: "ipxe.efi", httpPort: 80)
            for port in [ProxyDHCP.Port.dhcp, .pxe] {
                if case .answer(let reply, _) = ProxyDHCP.decide(packet, port: port, server: [10, 0, 0, 1], offerings: offerings) {
                    require(reply.yiaddr == [0, 0, 0, 0], "a proxy DHCP answer gave an address")
                    _ = reply.encode()
                }
            }
        }
        if let request = try? TFTP.parseRequest(bytes), let path = try? TFTP.resolve(request.file, under: "/srv/tftp") {
            require(path.hasPrefix("/srv/tftp/") && !path.split(separator: "/").contains(".."), "TFTP path \(path) left the root")
        }
        let text = String(decoding: bytes, as: UTF8.self)
        if case .part(let first, let last) = HTTPRange.parse(text, size: 1000) {
            require(0 <= first && first <= last && last < 1000, "range \(first)-\(last) outside a 1000-byte file")
        }
    }

    /// A kernel uevent from the netlink socket (NUL-separated KEY=value).
    static let uevent = FuzzTarget(name: "uevent") { bytes in
        _ = Uevent.parse(bytes)
    }

    /// modules.spirit, the binary module index of an initramfs or image: as
    /// given (its header's checks), then resealed with a right header and
    /// checksum, so that the mutations reach the tables behind them. What
    /// decodes must encode to bytes that decode to the same index.
    static let modindex = FuzzTarget(name: "modindex") { bytes in
        _ = try? BinaryModuleIndex.decode(bytes, file: "fuzz")
        guard bytes.count >= BinaryModuleIndex.headerSize else { return }
        var sealed = BinaryModuleIndex.magic
        let payload = bytes[BinaryModuleIndex.headerSize...]
        sealed.append(littleEndian: BinaryModuleIndex.version)
        sealed += bytes[12..<16]
        sealed.append(littleEndian: UInt32(payload.count))
        sealed.append(littleEndian: UInt32(0))
        sealed.append(littleEndian: BinaryModuleIndex.checksum(payload))
        sealed += payload
        guard let (index, sizes) = try? BinaryModuleIndex.decode(sealed, file: "fuzz") else { return }
        let again = BinaryModuleIndex.encode(index, sourceSizes: sizes)
        guard let (reread, _) = try? BinaryModuleIndex.decode(again, file: "fuzz") else {
            return require(false, "an index that decoded does not decode once written again")
        }
        require(BinaryModuleIndex.encode(reread, sourceSizes: sizes) == again, "an index written twice gives different bytes")
        _ = index.lookup("pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00")
        _ = index.plan(Array(index.paths.keys.prefix(4)))
    }

    /// A line from QEMU's QMP socket or from the guest agent.
    static let qmp = FuzzTarget(name: "qmp") { bytes in
        _ = try? QMPMessage.decode(bytes)
        if let value = try? JSONReader.parse(bytes), let result = value["return"] {
            _ = try? GuestExecResult.decode(result)
        }
    }

    /// /boot/grub/grubenv from a stick: 1024 bytes; shorter inputs are
    /// padded with `#` as GRUB pads them. What is rendered reads back the same.
    static let grubenv = FuzzTarget(name: "grubenv") { bytes in
        var block = Array(bytes.prefix(GrubEnvironment.size))
        block += [UInt8](repeating: UInt8(ascii: "#"), count: GrubEnvironment.size - block.count)
        guard let environment = try? GrubEnvironment(parsing: block, origin: "fuzz") else { return }
        if let rendered = try? environment.rendered(origin: "fuzz") {
            let again = try? GrubEnvironment(parsing: rendered, origin: "fuzz")
            require(again == environment, "a rendered GRUB environment does not read back the same")
        }
    }

    /// A persistence archive from the boot medium: the tar codec, and the
    /// archive with its trailer (unencrypted: scrypt would make each run slow).
    /// What the Sentinel reads from the kernel and the supervisor: /dev/kmsg
    /// records and their events (joined, as the daemon does), pressure,
    /// memory.events, mm_stat, `status json`, and the rules file.
    static let sentinel = FuzzTarget(name: "sentinel") { bytes in
        let text = String(decoding: bytes, as: UTF8.self)
        var joiner = KernelEventJoiner()
        for line in text.split(separator: "\n") {
            if let record = try? KernelLogLine.parse(String(line)) { _ = joiner.add(record.message) }
            _ = joiner.add(String(line))
            _ = LogErrors.error(in: String(line))
        }
        _ = try? Pressure.parse(text, source: "fuzz")
        _ = try? MemoryEvents.parse(text, source: "fuzz")
        _ = try? ZramStats.parse(text)
        if let services = try? ServiceSummary.parse(text) {
            var watch = SupervisorWatch()
            _ = watch.update(services)
            _ = watch.update(services)
        }
        if let rules = try? RuleFile.parse(text, path: "fuzz.toml") {
            var engine = RuleEngine(rules: rules)
            engine.observe(Observation(signal: .kmsgOOMKill, subject: "fuzz"), at: 0)
            _ = engine.evaluate(at: 0)
        }
    }

    /// The journal as `spirit journal verify` and the next writer read it
    /// (it may have been edited by anyone with root): the chain's check, the
    /// last record found in a tail, and each line's round trip.
    static let journal = FuzzTarget(name: "journal") { bytes in
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).count
        let check = Journal.verify(bytes)
        require(check.records <= lines, "verify counted \(check.records) records in \(lines) lines")
        if check.problem == nil, bytes.last == UInt8(ascii: "\n") {
            require(Journal.lastRecord(bytes)?.hash == check.head, "a whole chain's last record is not its head")
        }
        _ = Journal.lastRecord(bytes.suffix(100))
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            guard let record = try? JournalRecord.parse(line) else { continue }
            require((try? JournalRecord.parse(Array(record.line.utf8))) == record, "a record does not read back as written")
        }
    }

    /// /run/spirit/hydrate.json as `spiritctl status` and the nodus service
    /// read it (any root process may have written it): parsed, and what
    /// parses reads back as written.
    static let hydrate = FuzzTarget(name: "hydrate") { bytes in
        guard let progress = try? HydrationProgress.parse(bytes) else { return }
        _ = progress.line(now: 0)
        require((try? HydrationProgress.parse(Array(progress.json.utf8))) == progress, "a hydration state does not read back as written")
    }

    static let persist = FuzzTarget(name: "persist") { bytes in
        _ = try? TarCodec.decode(bytes)
        _ = try? PersistArchive.open(bytes)
    }
}

/// Plays an NBD client from the input; the end of the input is the client
/// hanging up. What the server writes is dropped.
final class ScriptedClient: NBDTransport {
    let input: [UInt8]
    var position = 0

    init(_ input: [UInt8]) { self.input = input }

    struct Closed: Error {}

    func read(exactly count: Int) throws -> [UInt8] {
        guard count >= 0, input.count - position >= count else { throw Closed() }
        defer { position += count }
        return Array(input[position..<position + count])
    }

    func write(_ bytes: [UInt8], more: Bool) throws {}

    func writeExport(header: [UInt8], export: NBDExport, offset: Int64, length: Int) throws {
        _ = try export.read(offset: offset, length: length)
    }

    func readRequest() throws -> [UInt8] { try read(exactly: NBDRequest.size) }
}

/// The export the NBD server target serves: a 64 KiB file, made once.
enum FuzzExport {
    static let exports: NBDExports = {
        let path = "/tmp/spirit-fuzz-export-\(getpid())"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = ftruncate(fd, 64 << 10)
        close(fd)
        defer { unlink(path) }
        guard let export = try? NBDExport(path: path, names: ["", "spirit"], description: "fuzz") else {
            complain("spirit-fuzz: unable to make the export file \(path)")
            exit(111)
        }
        return NBDExports([export])
    }()
}

/// A connected Unix stream pair: the input is written into the peer's end,
/// which is then shut for writing (the reader sees the end of the input as
/// the other side closing). The parser's own writes land in the peer's
/// buffer, never read. Inputs are capped below the socket buffer's size.
func socketPair(holding bytes: [UInt8]) -> (mine: CInt, peer: CInt) {
    var fds: [CInt] = [-1, -1]
    guard socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
        complain("spirit-fuzz: unable to make a socket pair: errno \(errno)")
        exit(111)
    }
    let input = bytes.prefix(64 << 10)
    var done = 0
    input.withUnsafeBytes { raw in
        while done < raw.count {
            let n = write(fds[1], raw.baseAddress! + done, raw.count - done)
            if n <= 0 { break }
            done += n
        }
    }
    shutdown(fds[1], CInt(SHUT_WR))
    return (fds[0], fds[1])
}
