import CSpirit
import Glibc
import SystemPackage

/// An IPv4 or IPv6 address and port, as the socket calls take it.
public struct SocketAddress: Sendable, Equatable, CustomStringConvertible {
    var storage: sockaddr_storage
    var length: socklen_t

    /// A numeric host (`10.0.2.2`, `::1`; no name lookup: the boot has no
    /// resolver) and a port.
    public init(host: String, port: Int) throws(SpiritError) {
        guard (0...65535).contains(port) else { throw SpiritError("\(port) is not a port (0 to 65535)") }
        var storage = sockaddr_storage()
        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if inet_pton(AF_INET, bare, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &storage) { target in withUnsafeBytes(of: v4) { target.copyMemory(from: $0) } }
            self.init(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in>.size))
        } else if inet_pton(AF_INET6, bare, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &storage) { target in withUnsafeBytes(of: v6) { target.copyMemory(from: $0) } }
            self.init(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in6>.size))
        } else {
            throw SpiritError("'\(host)' is not a numeric IPv4 or IPv6 address")
        }
    }

    /// An IPv4 address in network order.
    public init(ipv4 networkOrder: UInt32, port: Int) {
        var v4 = sockaddr_in()
        v4.sin_family = sa_family_t(AF_INET)
        v4.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
        v4.sin_addr.s_addr = networkOrder
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { target in withUnsafeBytes(of: v4) { target.copyMemory(from: $0) } }
        self.init(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in>.size))
    }

    public init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    /// `HOST:PORT` or `[HOST]:PORT`, with the port defaulting.
    public static func parse(_ text: String, defaultPort: Int) throws(SpiritError) -> SocketAddress {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw SpiritError("'\(text)': an IPv6 address needs its closing ]") }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return try SocketAddress(host: host, port: defaultPort) }
            guard rest.first == ":", let port = Int(rest.dropFirst()) else { throw SpiritError("'\(text)': expected [ADDRESS]:PORT") }
            return try SocketAddress(host: host, port: port)
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1:
            return try SocketAddress(host: text, port: defaultPort)
        case 2:
            guard let port = Int(parts[1]) else { throw SpiritError("'\(text)': '\(parts[1])' is not a port") }
            return try SocketAddress(host: String(parts[0]), port: port)
        default:
            return try SocketAddress(host: text, port: defaultPort) // a bare IPv6 address
        }
    }

    public var family: CInt { CInt(storage.ss_family) }

    public var isIPv4: Bool { family == AF_INET }

    /// The IPv4 address in network order (0 for IPv6).
    public var ipv4: UInt32 {
        guard isIPv4 else { return 0 }
        return withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self).sin_addr.s_addr }
    }

    public var host: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        withUnsafeBytes(of: storage) { raw in
            if isIPv4 {
                var address = raw.load(as: sockaddr_in.self).sin_addr
                _ = inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
            } else {
                var address = raw.load(as: sockaddr_in6.self).sin6_addr
                _ = inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
            }
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var port: Int {
        withUnsafeBytes(of: storage) { raw in
            Int(UInt16(bigEndian: isIPv4 ? raw.load(as: sockaddr_in.self).sin_port : raw.load(as: sockaddr_in6.self).sin6_port))
        }
    }

    public var description: String { isIPv4 ? "\(host):\(port)" : "[\(host)]:\(port)" }

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool {
        a.length == b.length && withUnsafeBytes(of: a.storage) { x in
            withUnsafeBytes(of: b.storage) { y in x.prefix(Int(a.length)).elementsEqual(y.prefix(Int(b.length))) }
        }
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: storage) { body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length) }
    }
}

/// A TCP or UDP socket. The calls go through one errno policy, as Kernel's
/// do: EINTR is retried, every failure names the operation and the peer.
/// Blocking I/O, with timeouts: Nodus serves each client on its own thread
/// and the boot reads one stream at a time, so there is no event loop.
public struct Socket: Sendable {
    public let fd: CInt
    /// For messages: the peer or the local address.
    public let name: String

    public init(fd: CInt, name: String) {
        self.fd = fd
        self.name = name
    }

    /// A listening TCP socket (SO_REUSEADDR; IPv6 sockets take IPv4 too).
    public static func listenTCP(_ address: SocketAddress, backlog: CInt = 128) throws(SystemError) -> Socket {
        let fd = try open(address.family, Int32(SOCK_STREAM.rawValue), "listen on \(address)")
        let socket = Socket(fd: fd, name: address.description)
        do throws(SystemError) {
            try socket.setOption(SOL_SOCKET, SO_REUSEADDR, 1, "listen on \(address)")
            if !address.isIPv4 { try socket.setOption(CInt(IPPROTO_IPV6), IPV6_V6ONLY, 0, "listen on \(address)") }
            try Kernel.call("bind to \(address)", hint: { $0 == .addressInUse ? "another server has that port" : nil }) {
                address.withSockaddr { bind(fd, $0, $1) }
            }
            try Kernel.call("listen on \(address)") { listen(fd, backlog) }
        } catch {
            socket.close()
            throw error
        }
        return socket
    }

    /// A UDP socket bound to `address` (port 0: any).
    public static func bindUDP(_ address: SocketAddress, broadcast: Bool = false, reuse: Bool = false) throws(SystemError) -> Socket {
        let fd = try open(address.family, Int32(SOCK_DGRAM.rawValue), "open a UDP socket on \(address)")
        let socket = Socket(fd: fd, name: address.description)
        do throws(SystemError) {
            if broadcast { try socket.setOption(SOL_SOCKET, SO_BROADCAST, 1, "allow broadcasts on \(address)") }
            if reuse { try socket.setOption(SOL_SOCKET, SO_REUSEADDR, 1, "share \(address)") }
            try Kernel.call("bind to UDP \(address)", hint: { $0 == .addressInUse ? "another program has that port" : nil }) {
                address.withSockaddr { bind(fd, $0, $1) }
            }
        } catch {
            socket.close()
            throw error
        }
        return socket
    }

    /// Connects over TCP within `timeoutMilliseconds`.
    public static func connectTCP(_ address: SocketAddress, timeoutMilliseconds: Int) throws(SystemError) -> Socket {
        let operation = "connect to \(address)"
        let fd = try open(address.family, Int32(SOCK_STREAM.rawValue), operation)
        let socket = Socket(fd: fd, name: address.description)
        do throws(SystemError) {
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            let rc = address.withSockaddr { connect(fd, $0, $1) }
            if rc < 0 {
                let errno = Errno(rawValue: spirit_errno())
                guard errno == .nowInProgress || errno == .interrupted else { throw SystemError(operation, errno) }
                var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let ready = try Kernel.call(operation) { poll(&poller, 1, CInt(timeoutMilliseconds)) }
                if ready == 0 { throw SystemError(operation, .timedOut, hint: "no answer within \(timeoutMilliseconds) ms") }
                var error: CInt = 0
                var length = socklen_t(MemoryLayout<CInt>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                if error != 0 { throw SystemError(operation, Errno(rawValue: error)) }
            }
            _ = fcntl(fd, F_SETFL, flags)
        } catch {
            socket.close()
            throw error
        }
        return socket
    }

    static func open(_ family: CInt, _ type: Int32, _ operation: String) throws(SystemError) -> CInt {
        try Kernel.call(operation) { socket(family, type | Int32(SOCK_CLOEXEC.rawValue), 0) }
    }

    public func setOption(_ level: CInt, _ option: CInt, _ value: CInt, _ operation: @autoclosure () -> String) throws(SystemError) {
        var value = value
        try Kernel.call(operation()) { setsockopt(fd, level, option, &value, socklen_t(MemoryLayout<CInt>.size)) }
    }

    /// TCP_NODELAY: replies go out at once, not after Nagle's wait.
    public func setNoDelay() throws(SystemError) {
        try setOption(CInt(IPPROTO_TCP), TCP_NODELAY, 1, "set TCP_NODELAY on \(name)")
    }

    /// SO_RCVTIMEO and SO_SNDTIMEO: a read or write that waits longer fails
    /// with EAGAIN, so that a stalled peer cannot hold a thread for ever.
    public func setTimeouts(milliseconds: Int) throws(SystemError) {
        var time = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            try Kernel.call("set a \(milliseconds) ms timeout on \(name)") {
                setsockopt(fd, SOL_SOCKET, option, &time, socklen_t(MemoryLayout<timeval>.size))
            }
        }
    }

    /// Accepts one connection; the new socket is named after its peer.
    public func accept() throws(SystemError) -> (Socket, SocketAddress) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let client = try Kernel.call("accept a connection on \(name)") {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(fd, $0, &length) }
            }
        }
        _ = fcntl(client, F_SETFD, FD_CLOEXEC)
        let peer = SocketAddress(storage: storage, length: length)
        return (Socket(fd: client, name: peer.description), peer)
    }

    /// The local address (after bind with port 0, the port chosen).
    public func localAddress() throws(SystemError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try Kernel.call("read the address of \(name)") {
            withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        }
        return SocketAddress(storage: storage, length: length)
    }

    /// Reads what has arrived, up to buffer.count bytes; 0 at the end.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try Kernel.call("read from \(name)", hint: Self.timeoutHint) { recv(fd, buffer.baseAddress, buffer.count, 0) }
    }

    /// What has arrived, without waiting (MSG_DONTWAIT): 0 at the end, nil
    /// when nothing is there yet.
    public func readIfReady(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if n >= 0 { return n }
            let errno = Errno(rawValue: spirit_errno())
            if errno == .interrupted { continue }
            if errno == .resourceTemporarilyUnavailable { return nil }
            throw Kernel.failure("read from \(name)", errno, nil)
        }
    }

    /// Fills `buffer` whole, or throws: a peer that closes early is an error
    /// that says how much was missing.
    public func read(exactly buffer: UnsafeMutableRawBufferPointer) throws(SystemError) {
        var done = 0
        while done < buffer.count {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            if n == 0 {
                throw SystemError("read \(buffer.count) bytes from \(name)", .connectionReset,
                                  hint: "the peer closed the connection after \(done)")
            }
            done += n
        }
    }

    public func read(exactly count: Int) throws(SystemError) -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 8)
        defer { buffer.deallocate() }
        try read(exactly: buffer)
        return Array(buffer)
    }

    /// Exactly `count` bytes by `deadline` (CLOCK_BOOTTIME µs) in all: a
    /// peer that sends a byte a second cannot stretch a read past it, as
    /// it can a per-call timeout (SO_RCVTIMEO restarts with every byte).
    /// `what` names the read in the error (`the handshake`).
    public func read(exactly count: Int, by deadline: Int64, _ what: @autoclosure () -> String) throws(SystemError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let left = deadline - Kernel.bootTimeMicros()
            guard left > 0, try waitReadable(milliseconds: Int((left + 999) / 1000)) else {
                throw SystemError("read \(what()) from \(name)", .timedOut, hint: "\(done) of \(count) bytes came before the deadline")
            }
            let n = try bytes.withMutableBytes { raw throws(SystemError) in
                try readIfReady(into: UnsafeMutableRawBufferPointer(rebasing: raw[done...])) ?? -1
            }
            if n == 0 {
                throw SystemError("read \(what()) from \(name)", .connectionReset, hint: "the peer closed the connection after \(done) of \(count) bytes")
            }
            if n > 0 { done += n }
        }
        return bytes
    }

    /// Writes every byte (MSG_NOSIGNAL: a closed peer is an error, not a
    /// SIGPIPE); `more` says that more follows at once (MSG_MORE).
    public func write(_ bytes: UnsafeRawBufferPointer, more: Bool = false) throws(SystemError) {
        var done = 0
        let flags = Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0)
        while done < bytes.count {
            done += try Kernel.call("write to \(name)", hint: Self.timeoutHint) {
                Glibc.send(fd, bytes.baseAddress! + done, bytes.count - done, flags)
            }
        }
    }

    public func write(_ bytes: [UInt8], more: Bool = false) throws(SystemError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try write(raw, more: more) } }.get()
    }

    /// Sends `count` bytes of `file` from `offset` with sendfile(2): from
    /// the page cache to the socket without a copy through user space.
    public func sendFile(_ file: CInt, offset: Int64, count: Int) throws(SystemError) {
        var position = off_t(offset)
        var left = count
        while left > 0 {
            let n = try Kernel.call("send \(count) bytes of the export to \(name)", hint: Self.timeoutHint) {
                sendfile(fd, file, &position, left)
            }
            if n == 0 { throw SystemError("send the export to \(name)", .ioError, hint: "the file ended early") }
            left -= n
        }
    }

    /// Sends one datagram.
    public func send(_ bytes: [UInt8], to address: SocketAddress) throws(SystemError) {
        try Kernel.call("send a datagram to \(address)") {
            bytes.withUnsafeBytes { raw in address.withSockaddr { sendto(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL), $0, $1) } }
        }
    }

    /// Sends one datagram from the local address `local` (network order,
    /// as `receiveDatagram` gives it): an answer leaves by the interface
    /// its question came in on, broadcasts included. The corresponding C
    /// function is `sendmsg(2)` with IP_PKTINFO.
    public func send(_ bytes: [UInt8], to address: SocketAddress, from local: UInt32) throws(SystemError) {
        _ = try Kernel.shim("send a datagram to \(address)") {
            bytes.withUnsafeBytes { raw in
                withUnsafeBytes(of: address.storage) { spirit_send_datagram_from(fd, raw.baseAddress, raw.count, $0.baseAddress, CUnsignedInt(address.length), local) }
            }
        }
    }

    /// Waits up to `milliseconds` (nil: as long as it takes) for something
    /// to read, or the end; false on timeout.
    public func waitReadable(milliseconds: Int?) throws(SystemError) -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return try Kernel.call("wait for \(name)") { poll(&poller, 1, CInt(milliseconds.map { max(0, $0) } ?? -1)) } > 0
    }

    /// Writes what the socket takes now (MSG_DONTWAIT): the count, or nil
    /// when it would block.
    public func writeIfReady(_ bytes: UnsafeRawBufferPointer) throws(SystemError) -> Int? {
        while true {
            let n = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            if n >= 0 { return n }
            let errno = Errno(rawValue: spirit_errno())
            if errno == .interrupted { continue }
            if errno == .resourceTemporarilyUnavailable { return nil }
            throw Kernel.failure("write to \(name)", errno, nil)
        }
    }

    /// Waits up to `milliseconds` until a write would not block; false on
    /// timeout.
    public func waitWritable(milliseconds: Int) throws(SystemError) -> Bool {
        var poller = [pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)]
        return try Kernel.poll(&poller, milliseconds: milliseconds) > 0
    }

    /// O_NONBLOCK on or off.
    public func setNonBlocking(_ on: Bool = true) throws(SystemError) { try Kernel.setNonBlocking(fd, on) }

    /// IP_PKTINFO on a UDP socket, so that `receiveDatagram` learns the
    /// local address each datagram came in on.
    public func enablePacketInfo() throws(SystemError) {
        try Kernel.shim("ask for IP_PKTINFO on \(name)") { spirit_enable_packet_info(fd) }
    }

    /// One datagram: its length, its sender and the local address it came
    /// to (network order, 0 if unknown). A datagram longer than `buffer`
    /// throws EMSGSIZE.
    public func receiveDatagram(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> (count: Int, from: SocketAddress, local: UInt32) {
        var from = sockaddr_storage()
        var fromLength = CUnsignedInt(MemoryLayout<sockaddr_storage>.size)
        var local: UInt32 = 0
        let n = try Kernel.shim("read a datagram on \(name)") {
            withUnsafeMutablePointer(to: &from) { spirit_recv_datagram(fd, buffer.baseAddress, buffer.count, $0, &fromLength, &local) }
        }
        return (n, SocketAddress(storage: from, length: socklen_t(fromLength)), local)
    }

    /// shutdown(2) of both directions: a thread blocked in a read returns.
    public func shutdown() { _ = Glibc.shutdown(fd, CInt(SHUT_RDWR)) }

    public func close() { Kernel.close(fd) }

    static func timeoutHint(_ errno: Errno) -> String? {
        errno == .resourceTemporarilyUnavailable ? "the peer did not answer in time" : nil
    }
}

/// Unix sockets: the control socket, spiritctl, the notify sockets.
extension Socket {
    /// A listening stream socket at `path` (an old socket file there is
    /// replaced), non-blocking and close-on-exec.
    public static func listenUnix(_ path: String) throws(SystemError) -> Socket {
        Socket(fd: try Kernel.shim("listen on \(path)") { spirit_unix_bind(path, 1) }, name: path)
    }

    /// A datagram socket bound at `path`, non-blocking.
    public static func bindUnixDatagram(_ path: String) throws(SystemError) -> Socket {
        Socket(fd: try Kernel.shim("make the socket \(path)") { spirit_unix_bind(path, 0) }, name: path)
    }

    /// A stream connection to the socket at `path`.
    public static func connectUnix(_ path: String) throws(SystemError) -> Socket {
        Socket(fd: try Kernel.shim("connect to \(path)") { spirit_unix_connect(path) }, name: path)
    }

    /// Accepts one connection on a Unix listening socket (blocking).
    public func acceptUnix() throws(SystemError) -> Socket {
        Socket(fd: try Kernel.shim("accept a connection on \(name)") { spirit_accept(fd) }, name: name)
    }

    /// Writes every byte of `bytes`, the first of them with `descriptor`
    /// passed to the peer (SCM_RIGHTS): how QMP's `getfd` receives the
    /// file a migration stream goes to. The corresponding C function is
    /// `sendmsg(2)`.
    public func write(_ bytes: [UInt8], passing descriptor: CInt) throws(SystemError) {
        precondition(!bytes.isEmpty, "a descriptor travels with at least one byte")
        let sent = try Kernel.shim("pass descriptor \(descriptor) over \(name)") {
            bytes.withUnsafeBytes { spirit_send_with_fd(fd, $0.baseAddress, $0.count, descriptor) }
        }
        if sent < bytes.count { try write(Array(bytes[sent...])) }
    }

    /// The uid of the process at the other end (SO_PEERCRED).
    public func peerUID() throws(SystemError) -> uid_t {
        uid_t(try Kernel.shim("read the peer's credentials on \(name)") { spirit_peer_uid(fd) })
    }

    /// One line of at most `limit` bytes, each byte waited for at most
    /// `milliseconds`; nil when none came.
    public func readLine(limit: Int, milliseconds: Int) -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while bytes.count < limit {
            guard (try? waitReadable(milliseconds: milliseconds)) == true,
                  let n = try? withUnsafeMutableBytes(of: &byte, { raw in Result { () throws(SystemError) in try read(into: raw) } }).get(),
                  n == 1 else { break }
            if byte == 0x0A { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }
}

extension Kernel {
    /// Each interface's first IPv4 address (getifaddrs(3), which asks the
    /// kernel over netlink: no NSS, so it works in a static binary), by name.
    public static func interfaceAddresses() -> [String: String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [:] }
        defer { freeifaddrs(list) }
        var found: [String: String] = [:]
        var entry = list
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            guard let address = current.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET),
                  let name = current.pointee.ifa_name.map({ String(cString: $0) }), found[name] == nil else { continue }
            let v4 = UnsafeRawPointer(address).load(as: sockaddr_in.self)
            found[name] = SocketAddress(ipv4: v4.sin_addr.s_addr, port: 0).host
        }
        return found
    }
}
