import Glibc
import Net
import SpiritCore
import Testing

struct HTTPServerTests {
    func pair() -> (Socket, Socket) {
        var fds: [CInt] = [0, 0]
        _ = socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &fds)
        return (Socket(fd: fds[0], name: "client"), Socket(fd: fds[1], name: "server"))
    }

    func read(_ bytes: String, bodyLimit: Int = 1024, closeAfter: Bool = true) -> Result<HTTPRequest, HTTPServerError> {
        let (client, server) = pair()
        defer { client.close(); server.close() }
        try? client.write(Array(bytes.utf8))
        if closeAfter { client.shutdown() }
        do {
            return .success(try HTTPRequest.read(from: server, bodyLimit: bodyLimit, idleMillis: 200))
        } catch {
            return .failure(error)
        }
    }

    /// A server that trickles its body a byte at a time never trips the
    /// idle timeout; the speed floor ends it, after one window, naming it.
    @Test func aTricklingServerIsTooSlowToWaitFor() throws {
        let (ours, theirs) = pair()
        try theirs.write(Array("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".utf8))
        try Threads.start {
            // The writer closes its end when it stops (our end closed: EPIPE):
            // the test returns before it, and a close there would leave it
            // writing to a descriptor another test may own by then.
            defer { theirs.close() }
            for _ in 0..<60 {
                guard (try? theirs.write([0x41])) != nil else { return }
                Kernel.sleep(milliseconds: 20)
            }
        }
        let connection = try HTTPConnection(socket: ours, url: try HTTPURL.parse("http://peer/rootfs.squashfs"), idleMillis: 400,
                                            minimumBytesPerSecond: 1024)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 1)
        defer { buffer.deallocate() }
        let started = Kernel.bootTimeMicros()
        var failure: HTTPError?
        do {
            while try connection.read(into: buffer) > 0 {}
        } catch {
            failure = error
        }
        let message = "\(failure.map { "\($0)" } ?? "no error")"
        #expect(message.contains("http://peer/rootfs.squashfs") && message.contains("too slow:") && message.contains("under 1024 bytes a second"), "\(message)")
        #expect(failure?.transient == false, "a slow server is not retried")
        #expect(Kernel.bootTimeMicros() - started < 1_200_000)
    }

    @Test func aRequestWithABody() throws {
        let request = try read("POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nX-A: 1\r\nx-a: 2\r\n\r\n{\"a\":1}").get()
        #expect(request.method == "POST" && request.path == "/v1/chat/completions" && request.target == "/v1/chat/completions?x=1")
        #expect(request.headers["x-a"] == "1, 2")
        #expect(String(decoding: request.body, as: UTF8.self) == "{\"a\":1}")
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 413),
        ("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        ("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        ("get / HTTP/1.1\r\n\r\n", 400),
        ("GET http://x/ HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n: no name\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\n", 400),
    ])
    func badRequestsAreAnsweredWithTheirStatus(text: String, status: Int) {
        guard case .failure(let error) = read(text) else {
            Issue.record("taken: \(text)")
            return
        }
        #expect(error.status == status, "\(text): \(error)")
    }

    @Test func aHugeHeadOrASilentClientIsLetGo() {
        guard case .failure(let huge) = read("GET / HTTP/1.1\r\n" + String(repeating: "X-Pad: aaaaaaaa\r\n", count: 2000)) else {
            Issue.record("a huge head was taken")
            return
        }
        #expect(huge.status == 431)
        guard case .failure(let silent) = read("GET / HTTP/1.1\r\n", closeAfter: false) else {
            Issue.record("a silent client was waited for")
            return
        }
        #expect(silent.status == 408)
    }

    @Test func answers() {
        let text = String(decoding: HTTPAnswer.error(404, "no \"x\" here"), as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "))
        #expect(text.hasSuffix("\r\n\r\n{\"error\":{\"code\":404,\"message\":\"no \\\"x\\\" here\"}}\n"))
    }
}
