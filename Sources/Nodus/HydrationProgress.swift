import SpiritCore

/// How far a streamed image is in RAM: what the Hydrator writes to
/// /run/spirit/hydrate.json as it goes and `spiritctl status` shows.
public struct HydrationProgress: Sendable, Equatable {
    public enum State: String, Sendable {
        /// Blocks are fetched; the root reads through the peers' export.
        case streaming
        /// Every block is in RAM; the whole image is being hashed.
        case verifying
        /// The root reads the RAM copy; the network may go.
        case done
        /// The copy cannot complete (why is in `problem`).
        case failed
    }

    public var state: State
    public var present: Int
    public var total: Int
    public var bytes: Int64
    public var totalBytes: Int64
    /// Each peer: its name, the blocks it delivered, why it was dropped.
    public var peers: [Peer]
    public var startedMicros: Int64
    /// When the root switched to the RAM copy (or the copy failed).
    public var endedMicros: Int64?
    public var problem: String?

    public struct Peer: Sendable, Equatable {
        public var name: String
        public var blocks: Int
        public var dropped: String?
        public init(name: String, blocks: Int, dropped: String? = nil) {
            self.name = name
            self.blocks = blocks
            self.dropped = dropped
        }
    }

    public init(state: State, present: Int, total: Int, bytes: Int64, totalBytes: Int64, peers: [Peer],
                startedMicros: Int64, endedMicros: Int64? = nil, problem: String? = nil) {
        self.state = state
        self.present = present
        self.total = total
        self.bytes = bytes
        self.totalBytes = totalBytes
        self.peers = peers
        self.startedMicros = startedMicros
        self.endedMicros = endedMicros
        self.problem = problem
    }

    public var json: String {
        var fields = [
            "\"state\":" + jsonString(state.rawValue),
            "\"blocks_present\":\(present)", "\"blocks_total\":\(total)",
            "\"bytes_present\":\(bytes)", "\"bytes_total\":\(totalBytes)",
            "\"started_us\":\(startedMicros)",
        ]
        if let endedMicros { fields.append("\"ended_us\":\(endedMicros)") }
        if let problem { fields.append("\"problem\":" + jsonString(problem)) }
        let peerItems = peers.map { peer in
            "{\"name\":" + jsonString(peer.name) + ",\"blocks\":\(peer.blocks)"
                + (peer.dropped.map { ",\"dropped\":" + jsonString($0) } ?? "") + "}"
        }
        fields.append("\"peers\":[" + peerItems.joined(separator: ",") + "]")
        return "{" + fields.joined(separator: ",") + "}\n"
    }

    /// Reads what `json` wrote; a clear error for anything else.
    public static func parse(_ bytes: [UInt8]) throws(SpiritError) -> HydrationProgress {
        let value: JSONValue
        do {
            value = try JSONReader.parse(bytes)
        } catch {
            throw SpiritError("the hydration state is not JSON: \(error)")
        }
        guard let stateName = value["state"]?.string, let state = State(rawValue: stateName) else {
            throw SpiritError("the hydration state has no known \"state\"")
        }
        guard let present = value["blocks_present"]?.integer, let total = value["blocks_total"]?.integer,
              let bytes = value["bytes_present"]?.integer, let totalBytes = value["bytes_total"]?.integer,
              let started = value["started_us"]?.integer, present >= 0, total >= 0, present <= total
        else { throw SpiritError("the hydration state lacks its block or byte counts, or they do not add up") }
        var peers: [Peer] = []
        for item in value["peers"]?.array ?? [] {
            guard let name = item["name"]?.string, let blocks = item["blocks"]?.integer else {
                throw SpiritError("the hydration state has a peer without a name or a block count")
            }
            peers.append(Peer(name: name, blocks: Int(blocks), dropped: item["dropped"]?.string))
        }
        return HydrationProgress(state: state, present: Int(present), total: Int(total), bytes: bytes, totalBytes: totalBytes,
                                 peers: peers, startedMicros: started, endedMicros: value["ended_us"]?.integer,
                                 problem: value["problem"]?.string)
    }

    /// One line for `spiritctl status`.
    public func line(now: Int64) -> String {
        let percent = total == 0 ? 100 : present * 100 / total
        var text = "image: \(state.rawValue) \(present)/\(total) blocks (\(percent)%, \(bytes >> 20) of \(totalBytes >> 20) MiB in RAM)"
        let seconds = ((endedMicros ?? now) - startedMicros) / 1_000_000
        text += state == .done ? ", in RAM after \(seconds) s" : ", for \(seconds) s"
        if !peers.isEmpty {
            text += "; peers: " + peers.map { "\($0.name) \($0.blocks)" + ($0.dropped != nil ? " (dropped)" : "") }.joined(separator: ", ")
        }
        if let problem { text += "; " + problem }
        return text
    }
}
