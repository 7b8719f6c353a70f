import SpiritCore

// MARK: The boot timeline (/run/spirit/timeline.json)

/// One bar of the boot widget: a step's place on the boot's time axis,
/// as fractions of the whole (as the bench's SVG draws them).
public struct TimelineBar: Sendable, Equatable {
    public var step: String
    public var start: Double
    public var length: Double
    public var milliseconds: Int64
    public var ok: Bool
}

public enum BootTimeline {
    /// The steps of a timeline.json document (written by SpiritCore's
    /// `Timeline`).
    public static func parse(_ document: [UInt8]) throws(SampleError) -> [TimelineStep] {
        do {
            return try TimelineStep.steps(document: document)
        } catch {
            throw SampleError("/run/spirit/timeline.json", "\(error)")
        }
    }

    /// Bars from 0 (boot) to the end of the last step; steps that took no
    /// time are left out, and the `limit` longest are kept, in time order.
    public static func bars(_ steps: [TimelineStep], limit: Int = .max) -> [TimelineBar] {
        let timed = steps.filter { $0.endMicros > $0.startMicros }
        let end = timed.map(\.endMicros).max() ?? 0
        guard end > 0 else { return [] }
        let kept = Set(timed.indices.sorted {
            let a = timed[$0].endMicros - timed[$0].startMicros, b = timed[$1].endMicros - timed[$1].startMicros
            return a != b ? a > b : $0 < $1
        }.prefix(limit))
        return timed.indices.filter(kept.contains).map { index in
            let step = timed[index]
            return TimelineBar(step: step.step, start: Double(max(0, step.startMicros)) / Double(end),
                               length: Double(step.endMicros - step.startMicros) / Double(end),
                               milliseconds: (step.endMicros - step.startMicros + 500) / 1000, ok: step.ok)
        }
    }

    /// When the boot reached `spirit: ready` (the end of the last step), in ms.
    public static func readyMillis(_ steps: [TimelineStep]) -> Int64 {
        ((steps.map(\.endMicros).max() ?? 0) + 500) / 1000
    }
}

// MARK: The kernel log (/dev/kmsg)

/// The last lines of the kernel log, as many as the widget shows.
public struct KernelLogTail: Sendable, Equatable {
    public let capacity: Int
    public private(set) var lines: [KernelLogLine] = []

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Adds a record; one already seen (same sequence number, as after
    /// reopening /dev/kmsg) is ignored.
    public mutating func append(_ line: KernelLogLine) {
        if let last = lines.last, line.sequence <= last.sequence { return }
        lines.append(line)
        if lines.count > capacity { lines.removeFirst(lines.count - capacity) }
    }
}
