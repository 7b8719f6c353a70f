import Glibc
import SpiritCore
import SystemPackage

// A small HTTP/1.1 client over plain sockets. Why our own: the static PID 1
// keeps full Foundation out (URLSession lives there and would grow the
// binary from about 7 MB to about 58 MB), and swift-nio's HTTP client is
// far more than a boot needs. It does GET with Content-Length or chunked
// bodies, Range requests to resume, and up to `maximumRedirects`
// redirects. It does not do HTTPS (no TLS library in the initramfs): an
// https:// URL is refused with a reason.

/// An http:// URL, split.
public struct HTTPURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// The path and query, starting with `/`.
    public var target: String

    public init(host: String, port: Int, target: String) {
        self.host = host
        self.port = port
        self.target = target
    }

    public var description: String {
        "http://" + (host.contains(":") ? "[\(host)]" : host) + (port == 80 ? "" : ":\(port)") + target
    }

    /// Parses `http://host[:port][/path]`; names what is wrong otherwise.
    public static func parse(_ text: String) throws -> HTTPURL {
        let lower = text.lowercased()
        if lower.hasPrefix("https://") {
            throw SpiritError("\(text): HTTPS is not supported by Spirit's boot HTTP client (no TLS in the initramfs); give an http:// URL with crom.http=")
        }
        guard lower.hasPrefix("http://") else { throw SpiritError("\(text) is not an http:// URL") }
        let rest = text.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        var target = String(rest.dropFirst(authority.count).prefix { $0 != "#" })
        if target.isEmpty || target.hasPrefix("?") { target = "/" + target }
        guard !authority.isEmpty, !authority.contains("@") else { throw SpiritError("\(text): no host (or a user name, which is not supported)") }
        var host = Substring(authority)
        var port = 80
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw SpiritError("\(text): unclosed [ in the host") }
            let after = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()) else { throw SpiritError("\(text): bad port") }
                port = p
            }
        } else if let colon = host.lastIndex(of: ":") {
            guard let p = Int(host[host.index(after: colon)...]) else { throw SpiritError("\(text): bad port") }
            port = p
            host = host[..<colon]
        }
        guard (1...65535).contains(port), !host.isEmpty else { throw SpiritError("\(text): bad host or port") }
        return HTTPURL(host: String(host), port: port, target: target)
    }

    /// A Location header, absolute or relative to this URL.
    public func resolving(_ location: String) throws -> HTTPURL {
        if location.lowercased().hasPrefix("http://") || location.lowercased().hasPrefix("https://") { return try Self.parse(location) }
        var copy = self
        if location.hasPrefix("/") {
            copy.target = location
        } else {
            let directory = target.prefix { $0 != "?" }
            copy.target = String(directory[...(directory.lastIndex(of: "/") ?? directory.startIndex)]) + location
        }
        return copy
    }

    /// `base` + `name`: the media files live under the base URL.
    public func appending(_ name: String) -> HTTPURL {
        var copy = self
        let path = target.prefix { $0 != "?" }
        copy.target = (path.hasSuffix("/") ? String(path) : String(path) + "/") + name
        return copy
    }
}

/// A response's head: status, reason and headers (names lower-cased).
public struct HTTPResponseHead: Sendable, Equatable {
    public var status: Int
    public var reason: String
    public var headers: [String: String]

    /// Parses the head (the bytes before the blank line).
    public static func parse(_ text: String) throws -> HTTPResponseHead {
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        if lines.count == 1 { lines = text.split(separator: "\n").map(String.init) }
        guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1.") else {
            throw SpiritError("not an HTTP/1.x answer: \(String(lines.first?.prefix(60) ?? ""))")
        }
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        guard parts.count >= 2, let status = Int(parts[1]), (100...999).contains(status) else {
            throw SpiritError("bad HTTP status line: \(statusLine.prefix(60))")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingWhitespace
            headers[name] = headers[name].map { $0 + ", " + value } ?? value
        }
        return HTTPResponseHead(status: status, reason: parts.count > 2 ? String(parts[2]) : "", headers: headers)
    }

    /// The body's length from Content-Length, if given and valid.
    public var contentLength: Int64? { headers["content-length"].flatMap { Int64($0) }.flatMap { $0 >= 0 ? $0 : nil } }
    public var isChunked: Bool { headers["transfer-encoding"]?.lowercased().contains("chunked") ?? false }

    /// The first byte of a 206's `Content-Range: bytes FIRST-LAST/TOTAL`.
    public var rangeStart: Int64? {
        guard let value = headers["content-range"], value.hasPrefix("bytes ") else { return nil }
        return Int64(value.dropFirst(6).prefix { $0 != "-" })
    }
}

extension Substring {
    var trimmingWhitespace: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

/// Why a request failed, in words a user can act on.
public struct HTTPError: Error, CustomStringConvertible {
    public var url: HTTPURL
    public var message: String
    /// A retry may help: the connection broke, timed out, or the server had a 5xx.
    public var transient: Bool
    public var description: String { "\(url): \(message)" }
}

/// One HTTP exchange on its own connection (`Connection: close`), its body
/// read as it comes.
public final class HTTPConnection {
    let fd: CInt
    public let url: HTTPURL
    public private(set) var head = HTTPResponseHead(status: 0, reason: "", headers: [:])
    /// How long a read may wait for data before the exchange is a timeout.
    let idleMillis: Int
    var buffer: [UInt8] = []
    var bufferStart = 0
    /// Body bytes still to come for Content-Length bodies; nil if read to close.
    var remaining: Int64?
    var chunked = false
    var chunkLeft: Int64 = 0
    var finished = false
    public private(set) var bodyRead: Int64 = 0

    public static let maximumHeadBytes = 64 << 10
    public static let userAgent = "crom-spirit/\(SpiritVersion.string)"

    /// Connects (within `connectMillis`), sends the request and reads the head.
    public init(url: HTTPURL, rangeStart: Int64? = nil, connectMillis: Int = 5000, idleMillis: Int = 10_000) throws(HTTPError) {
        self.url = url
        self.idleMillis = idleMillis
        fd = try Self.connect(url, millis: connectMillis)
        var request = "GET \(url.target) HTTP/1.1\r\nHost: \(url.host)\(url.port == 80 ? "" : ":\(url.port)")\r\n"
        request += "User-Agent: \(Self.userAgent)\r\nAccept: */*\r\nConnection: close\r\n"
        if let rangeStart { request += "Range: bytes=\(rangeStart)-\r\n" }
        request += "\r\n"
        do {
            try send(Array(request.utf8))
            try readHead()
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    deinit { Glibc.close(fd) }

    func fail(_ message: String, transient: Bool = true) -> HTTPError {
        HTTPError(url: url, message: message, transient: transient)
    }

    static func connect(_ url: HTTPURL, millis: Int) throws(HTTPError) -> CInt {
        let addresses: [String]
        do {
            addresses = try HostResolver.addresses(of: url.host)
        } catch {
            throw HTTPError(url: url, message: "\(error)", transient: true)
        }
        var lastError = "no address to connect to"
        for address in addresses {
            do {
                let socket = try Socket.connectTCP(try SocketAddress(host: address, port: url.port), timeoutMilliseconds: millis)
                try? socket.setNoDelay()
                // Non-blocking from here: every read and write polls with
                // the idle timeout.
                _ = fcntl(socket.fd, F_SETFL, fcntl(socket.fd, F_GETFL) | O_NONBLOCK)
                return socket.fd
            } catch {
                lastError = "\(error)"
            }
        }
        throw HTTPError(url: url, message: lastError, transient: true)
    }

    func send(_ bytes: [UInt8]) throws(HTTPError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN {
                    var wanted = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    if poll(&wanted, 1, CInt(idleMillis)) == 0 { throw fail("timed out sending the request") }
                    continue
                }
                throw fail("unable to send the request: \(Errno(rawValue: errno))")
            }
            offset += n
        }
    }

    /// Reads more bytes from the socket into `buffer`; false at the end of the connection.
    func fill() throws(HTTPError) -> Bool {
        if bufferStart > 0 && bufferStart == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            bufferStart = 0
        }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 << 10, alignment: 1)
        defer { chunk.deallocate() }
        let n = try receive(into: chunk)
        if n == 0 { return false }
        buffer.append(contentsOf: chunk[0..<n])
        return true
    }

    /// Up to `out.count` bytes from the socket, once some arrive within the
    /// idle timeout; 0 at the end of the connection.
    func receive(into out: UnsafeMutableRawBufferPointer) throws(HTTPError) -> Int {
        while true {
            var wanted = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&wanted, 1, CInt(idleMillis))
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 { throw fail("timed out: no data for \(idleMillis / 1000) s") }
            let n = recv(fd, out.baseAddress, out.count, 0)
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw fail("the connection broke: \(Errno(rawValue: errno))")
            }
            return n
        }
    }

    func readHead() throws(HTTPError) {
        while true {
            if let end = Self.headEnd(buffer) {
                do {
                    head = try HTTPResponseHead.parse(String(decoding: buffer[0..<end], as: UTF8.self))
                } catch {
                    throw fail("\(error)", transient: false)
                }
                bufferStart = end + 4
                chunked = head.isChunked
                remaining = chunked ? nil : head.contentLength
                return
            }
            guard buffer.count < Self.maximumHeadBytes else { throw fail("the answer's head is over \(Self.maximumHeadBytes) bytes", transient: false) }
            guard try fill() else { throw fail("the server closed the connection before answering") }
        }
    }

    static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }

    /// Reads one line (chunk sizes), CRLF removed.
    func readLine() throws(HTTPError) -> String {
        while true {
            if let newline = buffer[bufferStart...].firstIndex(of: 10) {
                let line = String(decoding: buffer[bufferStart..<newline], as: UTF8.self)
                bufferStart = newline + 1
                return line.hasSuffix("\r") ? String(line.dropLast()) : line
            }
            guard buffer.count - bufferStart < 4096 else { throw fail("a chunk header is too long", transient: false) }
            guard try fill() else { throw fail("the connection closed in the middle of a chunked body") }
        }
    }

    /// Reads body bytes into `into`; 0 at the end of the body. A body
    /// that ends before its Content-Length or last chunk is an error.
    public func read(into out: UnsafeMutableRawBufferPointer) throws(HTTPError) -> Int {
        if finished || out.count == 0 { return 0 }
        if chunked {
            if chunkLeft == 0 {
                let line = try readLine()
                guard let size = Int64(line.prefix { $0 != ";" }.trimmingCharacters, radix: 16), size >= 0 else {
                    throw fail("bad chunk size \"\(line.prefix(20))\"", transient: false)
                }
                if size == 0 {
                    // Trailers, up to the blank line.
                    while try !readLine().isEmpty {}
                    finished = true
                    return 0
                }
                chunkLeft = size
            }
            let n = try take(into: out, limit: chunkLeft)
            if n == 0 { throw fail("the connection closed after \(bodyRead) bytes, in the middle of a chunk") }
            chunkLeft -= Int64(n)
            if chunkLeft == 0 { _ = try readLine() }
            return n
        }
        if let remaining {
            if remaining == 0 { finished = true; return 0 }
            let n = try take(into: out, limit: remaining)
            if n == 0 {
                throw fail("short body: the connection closed after \(bodyRead) of \(bodyRead + remaining) bytes")
            }
            self.remaining = remaining - Int64(n)
            return n
        }
        let n = try take(into: out, limit: Int64.max)
        if n == 0 { finished = true }
        return n
    }

    func take(into out: UnsafeMutableRawBufferPointer, limit: Int64) throws(HTTPError) -> Int {
        let wanted = min(out.count, Int(min(limit, Int64(Int.max))))
        if bufferStart == buffer.count {
            // Nothing left over from the head or a chunk line: the body goes
            // from the socket straight into `out`, never past `limit` (the
            // chunk's end, or the body's), without a copy.
            let n = try receive(into: UnsafeMutableRawBufferPointer(rebasing: out[0..<wanted]))
            bodyRead += Int64(n)
            return n
        }
        let n = min(wanted, buffer.count - bufferStart)
        buffer[bufferStart..<(bufferStart + n)].withUnsafeBytes { out.copyMemory(from: $0) }
        bufferStart += n
        bodyRead += Int64(n)
        return n
    }

    /// The whole body, refused past `limit` bytes.
    public func readAll(limit: Int) throws(HTTPError) -> [UInt8] {
        var result: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 8)
        defer { chunk.deallocate() }
        while true {
            let n = try read(into: chunk)
            if n == 0 { return result }
            result.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
            if result.count > limit { throw fail("the body is over \(limit) bytes, more than expected", transient: false) }
        }
    }
}

extension Substring {
    var trimmingCharacters: Substring {
        drop { $0 == " " || $0 == "\t" }.prefix { $0 != " " && $0 != "\t" }
    }
}

/// GET with redirects and clear reasons for what went wrong.
public enum HTTPClient {
    public static let maximumRedirects = 5

    /// Opens `url`, following redirects; the answer is a 200 (or a 206 when
    /// `rangeStart` is given and the server honours it).
    public static func open(_ url: HTTPURL, rangeStart: Int64? = nil, idleMillis: Int = 10_000) throws(HTTPError) -> HTTPConnection {
        var current = url
        var visited: [HTTPURL] = []
        while true {
            let connection = try HTTPConnection(url: current, rangeStart: rangeStart, idleMillis: idleMillis)
            let head = connection.head
            switch head.status {
            case 200, 206:
                return connection
            case 301, 302, 303, 307, 308:
                guard let location = head.headers["location"] else {
                    throw HTTPError(url: current, message: "\(head.status) redirect without a Location", transient: false)
                }
                let next: HTTPURL
                do {
                    next = try current.resolving(location)
                } catch {
                    throw HTTPError(url: current, message: "redirected to \(location): \(error)", transient: false)
                }
                visited.append(current)
                if visited.contains(next) {
                    throw HTTPError(url: url, message: "redirect loop: \((visited + [next]).map(\.description).joined(separator: " -> "))", transient: false)
                }
                guard visited.count <= maximumRedirects else {
                    throw HTTPError(url: url, message: "more than \(maximumRedirects) redirects (last to \(next))", transient: false)
                }
                current = next
            case 404:
                throw HTTPError(url: current, message: "404 \(head.reason) — is the base URL (crom.http=) right?", transient: false)
            case 500...599:
                throw HTTPError(url: current, message: "server error \(head.status) \(head.reason)", transient: true)
            default:
                throw HTTPError(url: current, message: "unexpected answer \(head.status) \(head.reason)", transient: false)
            }
        }
    }
}

/// Host names to addresses. An address literal is used as it is; a name is
/// asked of the DNS server DHCP gave (/etc/resolv.conf) with busybox's
/// nslookup: glibc's getaddrinfo in a static binary needs the NSS shared
/// libraries of the build machine at run time, which the initramfs lacks.
public enum HostResolver {
    public static func addresses(of host: String, nslookup: String = "/usr/bin/nslookup") throws -> [String] {
        var probe4 = in_addr()
        var probe6 = in6_addr()
        if inet_pton(AF_INET, host, &probe4) == 1 || inet_pton(AF_INET6, host, &probe6) == 1 { return [host] }
        let output = "/run/spirit/nslookup.\(getpid()).out"
        defer { unlink(output) }
        let pid = try Spawn.spawn("/bin/sh", ["sh", "-c", "exec \"$0\" \"$1\" >\"$2\" 2>&1", nslookup, host, output])
        _ = try Spawn.wait(pid)
        let found = parseNslookup((try? Kernel.readText(output)) ?? "")
        guard !found.isEmpty else {
            throw SpiritError("unable to resolve \(host) — is there a DNS server (from DHCP) in /etc/resolv.conf? (or give an IP address in crom.http=)")
        }
        return found
    }

    /// The answer's addresses: the `Address:` lines after the `Name:` line
    /// (the lines before it are the server's own address).
    public static func parseNslookup(_ text: String) -> [String] {
        var afterName = false
        var found: [String] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("Name:") { afterName = true; continue }
            guard afterName, line.hasPrefix("Address") else { continue }
            let value = line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingWhitespace } ?? ""
            let address = String(value.split(separator: " ").first ?? "")
            if !address.isEmpty { found.append(address) }
        }
        return found
    }
}
