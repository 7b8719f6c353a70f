import AIRuntime
import Glibc
import Net
import SpiritCore

/// The AI runtime's API on this machine (127.0.0.1:11434), as `spirit ai
/// run` and `spirit ask` call it: one POST, its JSON answer, or an error
/// that says what the runtime said. SPIRIT_AI_LISTEN names another
/// address (a daemon started with --listen, in host tests).
enum AIAPI {
    static var address: String { getenv("SPIRIT_AI_LISTEN").map { String(cString: $0) } ?? AIDaemon.defaultListen }

    /// One POST that must be over within `deadlineMillis` (the Sentinel's
    /// explanations): its status and body, or nil when it was not.
    static func post(_ path: String, body: String, deadlineMillis: Int) -> (status: Int, body: [UInt8])? {
        let started = Kernel.bootTimeMicros()
        guard let url = try? HTTPURL.parse("http://\(address)\(path)"),
              let socket = try? Socket.connectTCP(try SocketAddress.parse(address, defaultPort: 11434), timeoutMilliseconds: deadlineMillis),
              let connection = try? HTTPConnection(socket: socket, url: url, method: "POST", body: Array(body.utf8), idleMillis: deadlineMillis),
              let answer = try? connection.readAll(limit: 1 << 20),
              Kernel.bootTimeMicros() - started <= Int64(deadlineMillis) * 1000 else { return nil }
        return (connection.head.status, answer)
    }

    static func post(_ path: String, body: String, idleMillis: Int = 300_000) throws -> JSONValue {
        let url = try HTTPURL.parse("http://\(address)\(path)")
        let answer: [UInt8]
        let status: Int
        do {
            let socket = try Socket.connectTCP(try SocketAddress.parse(address, defaultPort: 11434), timeoutMilliseconds: 2000)
            let connection = try HTTPConnection(socket: socket, url: url, method: "POST", body: Array(body.utf8), idleMillis: idleMillis)
            answer = try connection.readAll(limit: 4 << 20)
            status = connection.head.status
        } catch {
            throw SpiritError("the AI runtime (the ai service) did not answer: \(error)")
        }
        let document = try? JSONReader.parse(answer)
        guard status == 200, let document else {
            throw SpiritError("the AI runtime answered \(status): \(document?["error"]?["message"]?.string ?? String(decoding: answer.prefix(200), as: UTF8.self))")
        }
        return document
    }
}
