import Net
import SpiritCore

/// HTTP to llama-server on its Unix socket (it binds one when `--host` ends
/// in `.sock`): nothing else on the machine can reach it but through the
/// daemon, which loads the model first.
public struct LlamaClient: Sendable {
    public var socketPath: String

    public init(socketPath: String) {
        self.socketPath = socketPath
    }

    /// One exchange; the answer's head is read, its body is for the caller.
    public func open(_ method: String, _ target: String, body: [UInt8]? = nil, idleMillis: Int) throws -> HTTPConnection {
        let url = HTTPURL(host: "llama-server", port: 80, target: target)
        let socket: Socket
        do {
            socket = try Socket.connectUnix(socketPath)
        } catch {
            throw HTTPError(url: url, message: "unable to reach llama-server on \(socketPath): \(error.errno)", transient: true)
        }
        return try HTTPConnection(socket: socket, url: url, method: method, body: body, idleMillis: idleMillis)
    }

    /// `GET /health`'s status (200 once the model is loaded, 503 while it
    /// loads), or nil when llama-server does not answer yet.
    public func health(idleMillis: Int = 1000) -> Int? {
        guard let connection = try? open("GET", "/health", idleMillis: idleMillis) else { return nil }
        let status = connection.head.status
        _ = try? connection.readAll(limit: 4096)
        return status
    }
}
