import Glibc
import SpiritCore
import SystemPackage

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
                throw HTTPError(url: current, message: "404 \(head.reason) — is the base URL (crom.http=) right?", transient: false, status: 404)
            case 500...599:
                throw HTTPError(url: current, message: "server error \(head.status) \(head.reason)", transient: true)
            default:
                throw HTTPError(url: current, message: "unexpected answer \(head.status) \(head.reason)", transient: false)
            }
        }
    }
}
