import SpiritCore

/// A request as a small HTTP/1.1 server reads it (the AI runtime's API;
/// a netboot server): the request line, the headers (names lower-cased)
/// and a body of Content-Length bytes. Every size and wait is capped: a
/// client that sends a huge head, a huge body or nothing at all is answered
/// with an error and let go, never waited on for ever.
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    /// The request target (`/v1/chat/completions?x=1`).
    public var target: String
    public var headers: [String: String]
    public var body: [UInt8]

    public init(method: String, target: String, headers: [String: String] = [:], body: [UInt8] = []) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }

    /// The target without its query.
    public var path: String { String(target.prefix { $0 != "?" }) }

    /// Parses the head (the bytes before the blank line).
    public static func parseHead(_ text: String) throws(HTTPServerError) -> HTTPRequest {
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let parts = lines.first?.split(separator: " ", omittingEmptySubsequences: false).map(String.init) ?? []
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1."), !parts[0].isEmpty,
              parts[0].utf8.allSatisfy({ (65...90).contains($0) }), parts[1].hasPrefix("/") else {
            throw HTTPServerError(status: 400, "the request line is not METHOD /TARGET HTTP/1.x: \(String(lines.first?.prefix(60) ?? ""))")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                throw HTTPServerError(status: 400, "a header line has no name: \(line.prefix(60))")
            }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmed
            headers[name] = headers[name].map { $0 + ", " + value } ?? value
        }
        return HTTPRequest(method: parts[0], target: parts[1], headers: headers)
    }

    /// Reads one request from `socket`: the head within `headLimit` bytes,
    /// the body within `bodyLimit`, each read within `idleMillis`.
    public static func read(from socket: Socket, headLimit: Int = 16 << 10, bodyLimit: Int, idleMillis: Int) throws(HTTPServerError) -> HTTPRequest {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        func more() throws(HTTPServerError) -> Bool {
            let n: Int
            do {
                guard try socket.waitReadable(milliseconds: idleMillis) else { throw HTTPServerError(status: 408, "no request within \(idleMillis) ms") }
                n = try chunk.withUnsafeMutableBytes { raw throws(SystemError) in try socket.readIfReady(into: raw) ?? -1 }
            } catch let error as HTTPServerError {
                throw error
            } catch {
                throw HTTPServerError(status: 400, "the connection broke: \(error)")
            }
            if n == 0 { return false }
            if n > 0 { buffer += chunk[0..<n] }
            return true
        }
        var headEnd: Int?
        while headEnd == nil {
            headEnd = HTTPConnection.headEnd(buffer)
            if headEnd != nil { break }
            guard buffer.count <= headLimit else { throw HTTPServerError(status: 431, "the request's head is over \(headLimit) bytes") }
            guard try more() else { throw HTTPServerError(status: 400, "the client closed the connection before a whole request") }
        }
        let end = headEnd!
        var request = try parseHead(String(decoding: buffer[0..<end], as: UTF8.self))
        if request.headers["transfer-encoding"] != nil {
            throw HTTPServerError(status: 411, "a chunked request body is not taken here; send Content-Length")
        }
        let length = request.headers["content-length"].map { Int($0) } ?? 0
        guard let length, length >= 0 else { throw HTTPServerError(status: 400, "Content-Length is not a whole number") }
        guard length <= bodyLimit else { throw HTTPServerError(status: 413, "the request's body is \(length) bytes; at most \(bodyLimit) are taken") }
        request.body = Array(buffer[(end + 4)...].prefix(length))
        while request.body.count < length {
            let before = buffer.count
            guard try more() else { throw HTTPServerError(status: 400, "the client closed the connection in the middle of the body") }
            request.body += buffer[before...].prefix(length - request.body.count)
        }
        return request
    }
}

/// What a server answers a request it cannot take: the status and why.
public struct HTTPServerError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public init(status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { "\(status) \(HTTPAnswer.reason(status)): \(message)" }
}

/// An answer's head, and whole answers, as a small server writes them. A
/// streamed body (server-sent events) has no Content-Length: the end of the
/// connection ends it (`Connection: close`).
public enum HTTPAnswer {
    public static func head(status: Int, contentType: String, length: Int?) -> [UInt8] {
        var text = "HTTP/1.1 \(status) \(reason(status))\r\nContent-Type: \(contentType)\r\nConnection: close\r\n"
        if let length { text += "Content-Length: \(length)\r\n" }
        text += "Cache-Control: no-store\r\n\r\n"
        return Array(text.utf8)
    }

    public static func whole(status: Int, contentType: String = "application/json", _ body: String) -> [UInt8] {
        let bytes = Array(body.utf8)
        return head(status: status, contentType: contentType, length: bytes.count) + bytes
    }

    /// `{"error":{"code":N,"message":"…"}}`, llama-server's and OpenAI's shape.
    public static func error(_ status: Int, _ message: String) -> [UInt8] {
        whole(status: status, "{\"error\":{\"code\":\(status),\"message\":\(jsonString(message))}}\n")
    }

    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 206: "Partial Content"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 416: "Range Not Satisfiable"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "Status"
        }
    }
}
