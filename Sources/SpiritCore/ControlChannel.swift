import SystemPackage
/// The control channel every Spirit daemon speaks on its Unix socket, and
/// `spiritctl` with it: the client sends one request line; the server
/// answers `ok` or `error <exit code> <message>` on the first line, then the
/// body, and closes the connection (a follower, `logs … follow`, keeps
/// getting lines). One framing, one server side and one client side, so that
/// a new daemon's control socket is the supervisor's.
public enum ControlChannel {
    /// An answer's first line.
    public enum Head: Sendable, Equatable {
        case ok
        /// The exit code the client exits with, and what went wrong.
        case error(code: Int32, message: String)

        /// Reads a first line; one that is neither is an error that quotes it.
        public init(line: String, server: String = "server") {
            if line == "ok" {
                self = .ok
                return
            }
            let parts = line.split(separator: " ", maxSplits: 2).map(String.init)
            if parts.count == 3, parts[0] == "error", let code = Int32(parts[1]) {
                self = .error(code: code, message: parts[2])
            } else {
                self = .error(code: 111, message: "the \(server) answered '\(line)'")
            }
        }
    }

    /// `ok` and the body, as the server sends it.
    public static func ok(_ body: String) -> String {
        "ok\n" + (body.isEmpty ? "" : body + "\n")
    }

    /// `error CODE MESSAGE`.
    public static func error(code: Int, _ message: String) -> String {
        "error \(code) \(message)\n"
    }

    /// One connection on a listening socket, with its request line (waited
    /// for up to a second; read before anything else, so that even a refused
    /// client gets its answer before a reset) and the peer's uid (-1 if
    /// unknown). nil when no connection could be taken.
    public static func accept(on listener: Socket) -> (connection: Socket, request: String?, uid: Int)? {
        guard let connection = try? listener.acceptUnix() else { return nil }
        let request = connection.readLine(limit: 1024, milliseconds: 1000)
        let uid = (try? connection.peerUID()).map { Int($0) } ?? -1
        return (connection, request, uid)
    }

    /// The code of a server that is there but did not answer in time
    /// (ETIMEDOUT's number): busy, not gone.
    public static let silentCode: Int32 = 110

    /// The client: sends `request` to the socket at `path`, gives the body
    /// to `body` as it comes (false from `body` stops), and returns the
    /// answer's head (`server` names it in messages: "the supervisor"). A
    /// server that cannot be reached or closes without an
    /// answer is an `.error` with code 111 that says so. With
    /// `idleMilliseconds`, a server silent for that long is an `.error`
    /// with code `silentCode`: the HUD's widgets must not hang on a stuck
    /// daemon (a follower, `spiritctl logs -f`, waits as long as it takes).
    public static func send(_ request: String, to path: String, server: String = "server", idleMilliseconds: Int? = nil,
                            body: ([UInt8]) -> Bool) -> Head {
        let connection: Socket
        do {
            connection = try Socket.connectUnix(path)
        } catch {
            return .error(code: 111, message: "\(SystemError(error.operation, error.errno, hint: "is the \(server) running?"))")
        }
        defer { connection.close() }
        if let idleMilliseconds {
            do {
                try connection.setTimeouts(milliseconds: idleMilliseconds)
            } catch {
                return .error(code: 111, message: "\(error)")
            }
        }
        do {
            try connection.write(Array((request + "\n").utf8))
        } catch {
            return .error(code: 111, message: "\(SystemError("send a request to \(path)", error.errno))")
        }
        var head: Head?
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n: Int
            do {
                n = try buffer.withMutableBytes { raw throws(SystemError) in try connection.read(into: raw) }
            } catch where error.errno == .resourceTemporarilyUnavailable && idleMilliseconds != nil {
                return .error(code: silentCode, message: "the \(server) at \(path) did not answer within \(idleMilliseconds ?? 0) ms")
            } catch {
                break
            }
            if n <= 0 { break }
            var chunk = Array(buffer[0..<n])
            if head == nil {
                pending += chunk
                guard let newline = pending.firstIndex(of: 0x0A) else { continue }
                head = Head(line: String(decoding: pending[..<newline], as: UTF8.self), server: server)
                if head != .ok { return head! }
                chunk = Array(pending[(newline + 1)...])
            }
            if !chunk.isEmpty, !body(chunk) { break }
        }
        return head ?? .error(code: 111, message: "the \(server) at \(path) closed the connection without an answer")
    }
}
