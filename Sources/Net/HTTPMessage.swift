import Glibc
import SpiritCore
import SystemPackage

// A small HTTP/1.1 client over plain sockets. Why our own: the static PID 1
// keeps full Foundation out (URLSession lives there and would grow the
// binary from about 7 MB to about 58 MB), and swift-nio's HTTP client is
// far more than a boot needs. It does GET with Content-Length or chunked
// bodies, Range requests to resume, and up to `maximumRedirects`
// redirects, over plain TCP or TLS (https://: CTLS over mbedTLS, checked
// against the CA bundle; the signed manifest stays the trust anchor).

/// An http:// or https:// URL, split.
public struct HTTPURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// The path and query, starting with `/`.
    public var target: String
    /// https://: the exchange goes over TLS.
    public var secure: Bool

    public init(host: String, port: Int, target: String, secure: Bool = false) {
        self.host = host
        self.port = port
        self.target = target
        self.secure = secure
    }

    public var defaultPort: Int { secure ? 443 : 80 }

    public var description: String {
        (secure ? "https://" : "http://") + (host.contains(":") ? "[\(host)]" : host) + (port == defaultPort ? "" : ":\(port)") + target
    }

    /// Parses `http[s]://host[:port][/path]`; names what is wrong otherwise.
    public static func parse(_ text: String) throws -> HTTPURL {
        let lower = text.lowercased()
        let secure = lower.hasPrefix("https://")
        guard secure || lower.hasPrefix("http://") else { throw SpiritError("\(text) is not an http:// or https:// URL") }
        let rest = text.dropFirst(secure ? "https://".count : "http://".count)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        var target = String(rest.dropFirst(authority.count).prefix { $0 != "#" })
        if target.isEmpty || target.hasPrefix("?") { target = "/" + target }
        guard !authority.isEmpty, !authority.contains("@") else { throw SpiritError("\(text): no host (or a user name, which is not supported)") }
        var host = Substring(authority)
        var port = secure ? 443 : 80
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
        return HTTPURL(host: String(host), port: port, target: target, secure: secure)
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

    /// More header lines than this is an answer not to read on.
    public static let maximumHeaderLines = 100

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
        guard lines.count <= maximumHeaderLines + 1 else {
            throw SpiritError("more than \(maximumHeaderLines) header lines (\(lines.count - 1))")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmed
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


/// Why a request failed, in words a user can act on.
public struct HTTPError: Error, CustomStringConvertible {
    public var url: HTTPURL
    public var message: String
    /// A retry may help: the connection broke, timed out, or the server had a 5xx.
    public var transient: Bool
    /// The server's status when it answered with an error (404…), else 0.
    public var status: Int
    public var description: String { "\(url): \(message)" }

    public init(url: HTTPURL, message: String, transient: Bool, status: Int = 0) {
        self.url = url
        self.message = message
        self.transient = transient
        self.status = status
    }
}
