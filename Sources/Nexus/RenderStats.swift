import SpiritCore

/// What `spirit nexus stats --json` reports and `make bench` reads: frames
/// drawn, render times (p50/p99, full frames and partial updates apart,
/// since their budgets differ: 16 ms for a partial update under TCG), the
/// first frame and the last mode transition. Times in microseconds.
public struct RenderStats: Sendable, Equatable {
    public private(set) var fullFrames = 0
    public private(set) var partialFrames = 0
    /// The last `window` render times of each kind.
    var full: [Int64] = []
    var partial: [Int64] = []
    public let window: Int
    /// From nexus starting to its first frame on screen.
    public var firstFrameMicros: Int64?
    public private(set) var lastTransition: (from: Mode, to: Mode, micros: Int64)?

    public init(window: Int = 1000) { self.window = max(1, window) }

    public mutating func recordFrame(micros: Int64, partial isPartial: Bool) {
        if isPartial {
            partialFrames += 1
            partial.append(micros)
            if partial.count > window { partial.removeFirst() }
        } else {
            fullFrames += 1
            full.append(micros)
            if full.count > window { full.removeFirst() }
        }
    }

    public mutating func recordTransition(from: Mode, to: Mode, micros: Int64) {
        lastTransition = (from, to, micros)
    }

    /// The nearest-rank percentile (`p` in 0–100) of `values`; nil for none.
    public static func percentile(_ values: [Int64], _ p: Double) -> Int64? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(sorted.count, max(1, rank)) - 1]
    }

    public var fullP50: Int64? { Self.percentile(full, 50) }
    public var fullP99: Int64? { Self.percentile(full, 99) }
    public var partialP50: Int64? { Self.percentile(partial, 50) }
    public var partialP99: Int64? { Self.percentile(partial, 99) }

    public var json: String {
        func ms(_ micros: Int64?) -> String { micros.map(formatMilliseconds) ?? "null" }
        var fields = [
            "\"frames\":{\"full\":\(fullFrames),\"partial\":\(partialFrames)}",
            "\"render_ms\":{\"full\":{\"p50\":\(ms(fullP50)),\"p99\":\(ms(fullP99))},\"partial\":{\"p50\":\(ms(partialP50)),\"p99\":\(ms(partialP99))}}",
            "\"first_frame_ms\":\(ms(firstFrameMicros))",
        ]
        if let transition = lastTransition {
            fields.append("\"last_transition\":{\"from\":\(jsonString(transition.from.rawValue)),\"to\":\(jsonString(transition.to.rawValue)),\"ms\":\(ms(transition.micros))}")
        } else {
            fields.append("\"last_transition\":null")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    public static func == (lhs: RenderStats, rhs: RenderStats) -> Bool {
        lhs.json == rhs.json && lhs.full == rhs.full && lhs.partial == rhs.partial
    }
}
