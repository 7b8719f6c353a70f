/// The discovery protocol on UDP 7331. The design's seed format is two
/// lines of text: a seeker broadcasts `CROM_SPIRIT_SEEK`; a peer answers
/// `CROM_SPIRIT_HERE:<IP>:<PORT>` (its NBD server). Spirit extends it
/// without breaking it:
///
/// - A seeker sends the bare seek, and a second, extended one: the same
///   first line, then `v=1` and padding up to `extendedSeekSize` bytes.
/// - A peer answers a bare seek with the bare answer, and an extended seek
///   with the same first line followed by `key=value` lines: `v` (protocol
///   version), `sha256`, `version`, `built` (the manifest's build time),
///   `size` and `layers` (the add-on layers it serves, comma-separated;
///   left out when they would not fit). A seeker ignores keys it does not
///   know, so new keys need no new version. The extended answer is never longer than the seek that asked
///   for it, so the responder cannot amplify a spoofed request; the bare
///   answer is bounded (at most 64 bytes) and rate-limited per source.
/// - A seeker reads the first line of any answer as the seed format, so a
///   peer that knows only that format is still found (without the image
///   details: its image is checked against the signed manifest anyway).
public enum Discovery {
    public static let port = 7331
    public static let protocolVersion = 1
    static let seekLine = "CROM_SPIRIT_SEEK"
    static let hereWord = "CROM_SPIRIT_HERE"
    /// The size of an extended seek, and so the bound of its answer.
    public static let extendedSeekSize = 256
    /// A datagram longer than this is not ours: dropped as malformed.
    public static let maxDatagram = 512
    static let maxBareAnswer = 64

    public enum Seek: Equatable, Sendable {
        case bare
        /// The client's protocol version, and the size of its datagram
        /// (what the answer may not exceed).
        case extended(version: Int, size: Int)
    }

    /// What a peer offers: where its NBD server is, and (from a peer that
    /// speaks the extension) which image it serves.
    public struct Offer: Equatable, Sendable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var protocolVersion: Int?
        public var sha256: String?
        public var imageVersion: String?
        public var buildTime: Int64?
        public var size: Int64?
        /// The layers it serves (nil: not said).
        public var layers: [String]?

        public init(host: String, port: Int, protocolVersion: Int? = nil, sha256: String? = nil, imageVersion: String? = nil,
                    buildTime: Int64? = nil, size: Int64? = nil, layers: [String]? = nil) {
            self.layers = layers
            self.host = host
            self.port = port
            self.protocolVersion = protocolVersion
            self.sha256 = sha256
            self.imageVersion = imageVersion
            self.buildTime = buildTime
            self.size = size
        }

        public var description: String {
            var text = "\(host):\(port)"
            if let imageVersion { text += " version \(imageVersion)" }
            if let sha256 { text += " image \(sha256.prefix(12))" }
            if let size { text += " \(size >> 20) MiB" }
            if let layers, !layers.isEmpty { text += " layers " + layers.joined(separator: ",") }
            if protocolVersion == nil { text += " (seed format: no image details)" }
            return text
        }
    }

    // MARK: seeks

    public static func seekDatagram(extended: Bool) -> [UInt8] {
        guard extended else { return Array(seekLine.utf8) }
        var text = "\(seekLine)\nv=\(protocolVersion)\npad="
        text += String(repeating: ".", count: extendedSeekSize - text.utf8.count - 1) + "\n"
        return Array(text.utf8)
    }

    /// nil for anything that is not a seek (counted as malformed).
    public static func parseSeek(_ bytes: [UInt8]) -> Seek? {
        guard bytes.count <= maxDatagram, let lines = textLines(bytes), let first = lines.first, first == seekLine else { return nil }
        guard lines.count > 1 else { return .bare }
        let fields = keyValues(lines.dropFirst())
        guard let version = fields["v"].flatMap({ Int($0) }), version >= 1 else { return .bare }
        return .extended(version: version, size: bytes.count)
    }

    // MARK: answers

    /// The answer to `seek`, or nil if none fits within the bound (a
    /// version string so long that it would amplify).
    public static func answer(to seek: Seek, offer: Offer) -> [UInt8]? {
        let first = "\(hereWord):\(offer.host):\(offer.port)"
        switch seek {
        case .bare:
            return first.utf8.count <= maxBareAnswer ? Array(first.utf8) : nil
        case .extended(_, let size):
            var lines = [first, "v=\(protocolVersion)"]
            if let sha256 = offer.sha256 { lines.append("sha256=\(sha256)") }
            if let version = offer.imageVersion { lines.append("version=\(version)") }
            if let built = offer.buildTime { lines.append("built=\(built)") }
            if let bytes = offer.size { lines.append("size=\(bytes)") }
            func encoded(_ lines: [String]) -> [UInt8] { Array((lines.joined(separator: "\n") + "\n").utf8) }
            // The layers are the detail a seeker can do without: left out
            // rather than losing the image's details.
            if let layers = offer.layers, !layers.isEmpty {
                let text = encoded(lines + ["layers=" + layers.joined(separator: ",")])
                if text.count <= size { return text }
            }
            let text = encoded(lines)
            if text.count <= size { return text }
            // Too short a seek for the details: the bare answer, as to a bare seek.
            return first.utf8.count <= maxBareAnswer ? Array(first.utf8) : nil
        }
    }

    /// An answer: its first line in the seed format, then any extension
    /// lines. nil for anything else. The host is the one the answer names
    /// (the address of the peer's interface the seek came in on).
    public static func parseAnswer(_ bytes: [UInt8]) -> Offer? {
        guard bytes.count <= maxDatagram, let lines = textLines(bytes), let first = lines.first else { return nil }
        let prefix = hereWord + ":"
        guard first.hasPrefix(prefix) else { return nil }
        let rest = first.dropFirst(prefix.count)
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) else {
            return nil
        }
        let host = String(rest[..<colon])
        guard !host.isEmpty, host.utf8.allSatisfy({ isHostByte($0) }) else { return nil }
        var offer = Offer(host: host, port: port)
        let fields = keyValues(lines.dropFirst())
        if let version = fields["v"].flatMap({ Int($0) }) {
            offer.protocolVersion = version
            if let sha = fields["sha256"], sha.utf8.count == 64, sha.utf8.allSatisfy({ isHexByte($0) }) { offer.sha256 = sha }
            offer.imageVersion = fields["version"]
            offer.buildTime = fields["built"].flatMap { Int64($0) }
            offer.size = fields["size"].flatMap { Int64($0) }
            offer.layers = fields["layers"].map { $0.split(separator: ",").map(String.init).filter { !$0.isEmpty } }
        }
        return offer
    }

    /// The offers best first: a peer that names its image before one that
    /// does not, then the newest build, then the highest version text; ties
    /// keep the order they answered in.
    public static func ranked(_ offers: [Offer]) -> [Offer] {
        func key(_ offer: Offer) -> (Int, Int64, String) { (offer.sha256 != nil ? 1 : 0, offer.buildTime ?? -1, offer.imageVersion ?? "") }
        return offers.enumerated().sorted { a, b in
            key(a.element) != key(b.element) ? key(a.element) > key(b.element) : a.offset < b.offset
        }.map(\.element)
    }

    /// The offer to boot from: the first of `ranked`.
    public static func choose(_ offers: [Offer]) -> Offer? { ranked(offers).first }

    // MARK: text

    /// The lines of a printable ASCII datagram (a trailing newline, CR and
    /// NULs tolerated), or nil if it holds anything else.
    static func textLines(_ bytes: [UInt8]) -> [Substring]? {
        var trimmed = bytes[...]
        while let last = trimmed.last, last == 0 || last == 10 || last == 13 { trimmed = trimmed.dropLast() }
        guard !trimmed.isEmpty, trimmed.allSatisfy({ $0 == 10 || (32..<127).contains($0) }) else { return nil }
        return String(decoding: trimmed, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
    }

    static func keyValues(_ lines: ArraySlice<Substring>) -> [String: String] {
        var fields: [String: String] = [:]
        for line in lines {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return fields
    }

    static func isHexByte(_ byte: UInt8) -> Bool { (48...57).contains(byte) || (97...102).contains(byte) }
    static func isHostByte(_ byte: UInt8) -> Bool { isHexByte(byte) || byte == 46 || byte == 58 || (65...70).contains(byte) }
}

/// At most `burst` answers to one source at once, refilled at `perSecond`:
/// a flood of seeks (or spoofed ones) gets a few answers, not one each.
/// The table of sources is bounded: when full, the idlest are forgotten.
public struct RateLimiter: Sendable {
    public let burst: Double
    public let perSecond: Double
    public let maxSources: Int
    var buckets: [UInt32: (tokens: Double, at: Int64)] = [:]

    public init(burst: Int = 8, perSecond: Double = 2, maxSources: Int = 4096) {
        self.burst = Double(burst)
        self.perSecond = perSecond
        self.maxSources = maxSources
    }

    /// Whether `source` may have an answer at `nowMicros`; takes a token.
    public mutating func allow(_ source: UInt32, nowMicros: Int64) -> Bool {
        var bucket = buckets[source] ?? (burst, nowMicros)
        let elapsed = Double(max(0, nowMicros - bucket.at)) / 1_000_000
        bucket.tokens = min(burst, bucket.tokens + elapsed * perSecond)
        bucket.at = nowMicros
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        if buckets[source] == nil && buckets.count >= maxSources {
            // Forget the half that was heard from longest ago.
            let cutoff = buckets.values.map(\.at).sorted()[buckets.count / 2]
            buckets = buckets.filter { $0.value.at > cutoff }
        }
        buckets[source] = bucket
        return allowed
    }

    public var sources: Int { buckets.count }
}
