import Net
import SpiritCore

/// One `Range: bytes=…` header (RFC 9110 §14) against a file of `size`
/// bytes. A single range is served; a header this server does not take
/// (several ranges, another unit, a malformed one) is ignored and the whole
/// file sent, as the RFC allows a server to do.
public enum HTTPRange: Sendable, Equatable {
    /// No usable Range header: 200 with every byte.
    case whole
    /// 206 with bytes first...last (inclusive).
    case part(first: Int64, last: Int64)
    /// 416: the range starts at or past the end.
    case unsatisfiable

    public static func parse(_ header: String?, size: Int64) -> HTTPRange {
        guard let header else { return .whole }
        let text = header.trimmed
        guard text.lowercased().hasPrefix("bytes=") else { return .whole }
        let spec = text.dropFirst("bytes=".count).trimmed
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return .whole }
        let from = spec[..<dash].trimmed
        let to = spec[spec.index(after: dash)...].trimmed
        guard from.utf8.allSatisfy({ (48...57).contains($0) }), to.utf8.allSatisfy({ (48...57).contains($0) }) else { return .whole }
        if from.isEmpty {
            // bytes=-N: the last N bytes.
            guard let suffix = Int64(to) else { return .whole }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .part(first: max(0, size - suffix), last: size - 1)
        }
        guard let first = Int64(from) else { return .whole }
        guard first < size else { return .unsatisfiable }
        if to.isEmpty { return .part(first: first, last: size - 1) }
        guard let last = Int64(to), last >= first else { return .whole }
        return .part(first: first, last: min(last, size - 1))
    }
}

/// The answer to a GET or HEAD of a file of `size` bytes: the status, the
/// head, and which bytes follow it (none for HEAD and 416).
public struct HTTPFileAnswer: Sendable, Equatable {
    public var status: Int
    public var head: String
    public var offset: Int64
    public var count: Int64

    public init(head: Bool, rangeHeader: String?, size: Int64, contentType: String = "application/octet-stream") {
        var headers: [(String, String)] = [("Content-Type", contentType), ("Accept-Ranges", "bytes")]
        switch HTTPRange.parse(rangeHeader, size: size) {
        case .whole:
            status = 200
            offset = 0
            count = size
        case .part(let first, let last):
            status = 206
            offset = first
            count = last - first + 1
            headers.append(("Content-Range", "bytes \(first)-\(last)/\(size)"))
        case .unsatisfiable:
            status = 416
            offset = 0
            count = 0
            headers.append(("Content-Range", "bytes */\(size)"))
        }
        headers.append(("Content-Length", String(count)))
        headers.append(("Connection", "close"))
        self.head = "HTTP/1.1 \(status) \(HTTPAnswer.reason(status))\r\n" + headers.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n"
        if head { count = 0 }
    }
}
