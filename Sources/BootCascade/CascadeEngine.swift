import SpiritCore
/// The boot cascade's decisions, with no I/O: which sources run for a
/// `crom.mode=`, which ready source to commit to, how long to wait for a
/// more preferred one, and why each gave up. The sources probe at once (the
/// local disks while DHCP runs); the engine keeps the order of preference:
/// it commits to the most preferred source that is ready, and waits for a
/// more preferred one only while that one can still succeed (it has not
/// failed and its deadline has not passed). A forced mode runs one source
/// and never falls through to another.
///
/// `Candidate` is what a ready source hands over (a `FoundImage` at boot,
/// anything in a test); the clock is CLOCK_BOOTTIME in microseconds, given
/// by the caller.
public struct CascadeEngine<Candidate> {
    /// The cascade's order of preference (ARCHITECTURE.md, "Boot flow"). A
    /// build that lacks a source still lists it, so that `crom.mode=` can say
    /// this build does not have it.
    public static var preference: [SourceName] { [.parasite, .usb, .http, .nodus] }

    public enum State {
        /// Still looking; it gives up at `deadline`.
        case pending(deadline: Int64)
        case ready(Candidate)
        case failed(String)
    }

    public struct Entry {
        public var name: SourceName
        public var state: State
        /// How long it was given, for the reason of a source that ran out of time.
        public var timeoutMicros: Int64
    }

    public enum Decision {
        /// Use the candidate of this source.
        case commit(name: SourceName, Candidate)
        /// Nothing to commit to yet: wait for a report, or until `until`.
        case wait(until: Int64)
        /// Every source gave up (or the mode asks for the rescue shell).
        case rescue(String)
    }

    /// The sources that run, in order of preference.
    public private(set) var entries: [Entry] = []
    /// `crom.mode=` named one source: when it fails, the boot goes to
    /// the rescue shell.
    public let forced: SourceName?
    let refusal: String?

    /// `available` are the sources this build has, each with how long it
    /// may look (microseconds from `now`). In auto mode every source of the
    /// order runs; one this build lacks is listed as failed, saying so.
    public init(mode: BootMode, available: [(name: SourceName, timeoutMicros: Int64)], now: Int64) {
        let budget = Dictionary(available.map { ($0.name, $0.timeoutMicros) }, uniquingKeysWith: { first, _ in first })
        func entry(_ name: SourceName) -> Entry {
            guard let timeout = budget[name] else {
                return Entry(name: name, state: .failed("this build has no \(name) source"), timeoutMicros: 0)
            }
            return Entry(name: name, state: .pending(deadline: now + timeout), timeoutMicros: timeout)
        }
        switch mode {
        case .auto:
            forced = nil
            refusal = nil
            let known = Self.preference + available.map(\.name).filter { !Self.preference.contains($0) }
            entries = known.map(entry)
        case .rescue:
            forced = nil
            refusal = "crom.mode=rescue asks for the rescue shell"
        case .parasite, .usb, .http, .nodus:
            let name = SourceName(mode: mode)!
            forced = name
            refusal = budget[name] == nil ? "crom.mode=\(name): this build has no \(name) source" : nil
            entries = [entry(name)]
        }
    }

    /// The names of the sources to start.
    public var namesToStart: [SourceName] {
        guard refusal == nil else { return [] }
        return entries.compactMap { if case .pending = $0.state { $0.name } else { nil } }
    }

    /// A source found something (already checked against the signed
    /// manifest) or gave up. A report for a source not running, or a
    /// second report, is ignored: the first word stands.
    public mutating func report(_ name: SourceName, _ outcome: Result<Candidate, any Error>) {
        guard let index = entries.firstIndex(where: { $0.name == name }), case .pending = entries[index].state else { return }
        switch outcome {
        case .success(let candidate): entries[index].state = .ready(candidate)
        case .failure(let error): entries[index].state = .failed("\(error)")
        }
    }

    /// The committed candidate of `name` could not be used (its image did
    /// not match its manifest, its server broke off): the cascade goes on.
    public mutating func refuse(_ name: SourceName, reason: String) {
        guard let index = entries.firstIndex(where: { $0.name == name }) else { return }
        entries[index].state = .failed(reason)
    }

    /// What to do now. Sources whose deadline has passed are failed here.
    public mutating func decide(now: Int64) -> Decision {
        if let refusal { return .rescue(refusal) }
        for index in entries.indices {
            switch entries[index].state {
            case .ready(let candidate):
                return .commit(name: entries[index].name, candidate)
            case .pending(let deadline) where now < deadline:
                return .wait(until: deadline)
            case .pending:
                entries[index].state = .failed("found nothing within \(Self.seconds(entries[index].timeoutMicros)) s")
            case .failed:
                continue
            }
        }
        if let forced {
            let why = reasons.first?.reason ?? "it gave up"
            return .rescue("crom.mode=\(forced) allows only the \(forced) source, and it found no usable image: \(why)")
        }
        return .rescue("no system image found (tried \(entries.map(\.name.rawValue).joined(separator: ", ")))")
    }

    /// Why each source gave up, in order: one console line each.
    public var reasons: [(source: SourceName, reason: String)] {
        entries.compactMap { entry in
            if case .failed(let reason) = entry.state { (entry.name, reason) } else { nil }
        }
    }

    /// The candidates that were found but not used, to be let go.
    public func readyCandidates(except name: SourceName?) -> [Candidate] {
        entries.compactMap { entry in
            if entry.name != name, case .ready(let candidate) = entry.state { candidate } else { nil }
        }
    }

    static func seconds(_ micros: Int64) -> String {
        let tenths = (micros + 50_000) / 100_000
        return tenths % 10 == 0 ? String(tenths / 10) : "\(tenths / 10).\(tenths % 10)"
    }
}
