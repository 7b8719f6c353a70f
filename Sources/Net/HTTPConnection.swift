import Glibc
import SpiritCore
import SystemPackage

/// One HTTP exchange on its own connection (`Connection: close`), its body
/// read as it comes; over TLS for an https:// URL.
public final class HTTPConnection {
    let socket: Socket
    /// The TLS session of an https:// URL (nil over plain HTTP).
    var tls: TLSSession?
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
    /// Fewer bytes a second than this, over any `idleMillis` window, is a
    /// server too slow to wait for (curl's --speed-limit/--speed-time): a
    /// byte a second would otherwise hold a boot for ever, each byte
    /// restarting the idle timeout. 0: no floor (a model's tokens stream
    /// slowly by nature).
    let minimumBytesPerSecond: Int
    var windowStart: Int64 = 0
    var windowBytes = 0

    public static let maximumHeadBytes = 64 << 10
    /// The floor for downloads (images, layers, manifests).
    public static let downloadFloorBytesPerSecond = 1024
    public static let userAgent = "crom-spirit/\(SpiritVersion.string)"

    /// Connects (within `connectMillis`), sends the request and reads the head.
    public convenience init(url: HTTPURL, rangeStart: Int64? = nil, connectMillis: Int = 5000, idleMillis: Int = 10_000,
                            minimumBytesPerSecond: Int = HTTPConnection.downloadFloorBytesPerSecond) throws(HTTPError) {
        try self.init(socket: try Self.connect(url, millis: connectMillis), url: url, rangeStart: rangeStart, idleMillis: idleMillis,
                      minimumBytesPerSecond: minimumBytesPerSecond)
    }

    /// The exchange on a socket that is already connected (owned from here
    /// on): a Unix socket (the AI runtime's llama-server), or a socket pair
    /// through which the fuzz target feeds the response parser. A `body`
    /// is sent with its length (a POST).
    public init(socket: Socket, url: HTTPURL, method: String = "GET", body: [UInt8]? = nil, contentType: String = "application/json",
                rangeStart: Int64? = nil, idleMillis: Int, minimumBytesPerSecond: Int = 0) throws(HTTPError) {
        self.url = url
        self.idleMillis = idleMillis
        self.minimumBytesPerSecond = minimumBytesPerSecond
        self.socket = socket
        var request = "\(method) \(url.target) HTTP/1.1\r\nHost: \(url.host)\(url.port == url.defaultPort ? "" : ":\(url.port)")\r\n"
        request += "User-Agent: \(Self.userAgent)\r\nAccept: */*\r\nConnection: close\r\n"
        if let rangeStart { request += "Range: bytes=\(rangeStart)-\r\n" }
        if let body { request += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n" }
        request += "\r\n"
        // A throw from here runs deinit (every property is set), which
        // closes the socket: closing it here too would close another
        // thread's descriptor of the same number.
        if url.secure { try startTLS() }
        try send(Array(request.utf8) + (body ?? []))
        windowStart = Kernel.bootTimeMicros()
        try readHead()
    }

    deinit {
        tls = nil  // close_notify before the socket closes
        socket.close()
    }

    /// The TLS handshake, within `idleMillis` in all: a server that sends
    /// its certificate a byte a second cannot hold the boot.
    func startTLS() throws(HTTPError) {
        let session: TLSSession
        do {
            session = try TLSSession(fd: socket.fd, host: url.host)
        } catch {
            throw fail("\(error)", transient: false)
        }
        let deadline = Kernel.bootTimeMicros() + Int64(idleMillis) * 1000
        while true {
            let step: TLSSession.Step
            do {
                step = try session.handshake()
            } catch {
                throw fail(error.reason, transient: !error.untrusted)
            }
            if case .done = step {
                tls = session
                return
            }
            let left = Int((deadline - Kernel.bootTimeMicros()) / 1000)
            guard left > 0, try wait(for: step, milliseconds: left) else { throw fail("timed out in the TLS handshake (\(idleMillis / 1000) s)") }
        }
    }

    /// Waits until the socket can be read or written, as `step` asks;
    /// false on timeout (a step that is done waits for nothing).
    func wait(for step: TLSSession.Step, milliseconds: Int) throws(HTTPError) -> Bool {
        do {
            switch step {
            case .done: return true
            case .wantRead: return try socket.waitReadable(milliseconds: milliseconds)
            case .wantWrite: return try socket.waitWritable(milliseconds: milliseconds)
            }
        } catch {
            throw fail("the connection broke: \(error.errno)")
        }
    }

    /// One non-blocking write, through TLS for https://.
    func writeStep(_ bytes: UnsafeRawBufferPointer) throws(HTTPError) -> TLSSession.Step {
        if let tls {
            do { return try tls.write(bytes) } catch { throw fail(error.reason) }
        }
        do {
            return try socket.writeIfReady(bytes).map { .done($0) } ?? .wantWrite
        } catch {
            throw fail("unable to send the request: \(error.errno)")
        }
    }

    /// One non-blocking read, through TLS for https://: `.done(0)` at the end.
    func readStep(into out: UnsafeMutableRawBufferPointer) throws(HTTPError) -> TLSSession.Step {
        if let tls {
            do { return try tls.read(into: out) } catch { throw fail(error.reason) }
        }
        do {
            return try socket.readIfReady(into: out).map { .done($0) } ?? .wantRead
        } catch {
            throw fail("the connection broke: \(error.errno)")
        }
    }

    func fail(_ message: String, transient: Bool = true) -> HTTPError {
        HTTPError(url: url, message: message, transient: transient)
    }

    static func connect(_ url: HTTPURL, millis: Int) throws(HTTPError) -> Socket {
        let addresses: [String]
        do {
            addresses = try HostResolver.addresses(of: url.host)
        } catch {
            throw HTTPError(url: url, message: "\(error)", transient: !(error is HostResolver.NoSuchHost))
        }
        var lastError = "no address to connect to"
        for address in addresses {
            do {
                let socket = try Socket.connectTCP(try SocketAddress(host: address, port: url.port), timeoutMilliseconds: millis)
                try? socket.setNoDelay()
                // Every read and write from here is non-blocking
                // (MSG_DONTWAIT) and waits in poll with the idle timeout.
                return socket
            } catch {
                lastError = "\(error)"
            }
        }
        throw HTTPError(url: url, message: lastError, transient: true)
    }

    func send(_ bytes: [UInt8]) throws(HTTPError) {
        var offset = 0
        while offset < bytes.count {
            let step = try bytes.withUnsafeBytes { raw in
                Result { () throws(HTTPError) in try writeStep(UnsafeRawBufferPointer(rebasing: raw[offset...])) }
            }.get()
            if case .done(let sent) = step {
                offset += sent
            } else if try !wait(for: step, milliseconds: idleMillis) {
                throw fail("timed out sending the request")
            }
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
    /// idle timeout; 0 at the end of the connection. Read first, then wait:
    /// TLS may hold decrypted bytes that poll cannot see.
    func receive(into out: UnsafeMutableRawBufferPointer) throws(HTTPError) -> Int {
        while true {
            let step = try readStep(into: out)
            if case .done(let received) = step {
                try checkRate(received)
                return received
            }
            guard try wait(for: step, milliseconds: idleMillis) else { break }
        }
        throw fail("timed out: no data for \(idleMillis / 1000) s")
    }

    /// The speed floor, checked once a window has passed.
    func checkRate(_ received: Int) throws(HTTPError) {
        guard minimumBytesPerSecond > 0 else { return }
        windowBytes += received
        let now = Kernel.bootTimeMicros()
        let elapsed = now - windowStart
        guard elapsed >= Int64(idleMillis) * 1000 else { return }
        if Int64(windowBytes) * 1_000_000 / elapsed < Int64(minimumBytesPerSecond) {
            throw fail("too slow: \(windowBytes) bytes in \(elapsed / 1_000_000) s, under \(minimumBytesPerSecond) bytes a second",
                       transient: false)
        }
        windowStart = now
        windowBytes = 0
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
