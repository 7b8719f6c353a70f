import Overlay
import SpiritCore

/// The cascade at boot: every source of the mode starts at once on its own
/// thread; each found image's manifest is checked against the signing key
/// and the minimum version (ImageTrust) before the engine hears of it; the engine (CascadeEngine) says which to
/// use; `use` builds the root from it. An image that `use` refuses (it does
/// not match its manifest, its server broke off) makes the cascade go on to
/// the next source.
public struct Cascade {
    public let sources: [any BootSource]
    public let mode: BootMode
    /// The key every manifest must be signed with and the lowest version
    /// it may have; a failure when the initramfs's are missing or broken,
    /// with the reason, and then every image is refused.
    public let trust: Result<ImageTrust, SpiritError>
    public let console: Console
    public let devices: DeviceActivity
    public let timeline: Timeline
    /// Where each source's result and the choice are recorded (the boot
    /// worker's journal); none in tests.
    public var journal: JournalFile?

    public init(sources: [any BootSource], mode: BootMode, trust: Result<ImageTrust, SpiritError>, console: Console,
                devices: DeviceActivity, timeline: Timeline) {
        self.sources = sources
        self.mode = mode
        self.trust = trust
        self.console = console
        self.devices = devices
        self.timeline = timeline
    }

    /// The cascade gave up: the rescue reason, and why each source gave up.
    public struct Failure: Error, CustomStringConvertible {
        public var reason: String
        public var sources: [(source: SourceName, reason: String)]
        public var description: String { reason }
    }

    /// The chosen image was not usable, through no fault of the machine:
    /// `use` throws this to make the cascade go on.
    public struct Refusal: Error, CustomStringConvertible {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
        public var description: String { reason }
    }

    static let graceMicros: Int64 = 1_000_000

    /// The engine and what the source threads share with the cascade.
    final class Shared: @unchecked Sendable {
        let monitor = Monitor()
        var engine: CascadeEngine<FoundImage>
        var finished = false

        init(_ engine: CascadeEngine<FoundImage>) { self.engine = engine }
    }

    /// Runs the cascade until `use` accepts an image (returned) or every
    /// source gave up (`Failure`). Errors of `use` other than `Refusal`
    /// end the cascade at once: the machine, not the source, failed.
    public func run(use: (FoundImage) throws -> Void) throws -> FoundImage {
        let start = Kernel.bootTimeMicros()
        // The engine's deadline is a backstop a little after the source's
        // own, so that a source that gives up on time gives its own reason.
        let engine = CascadeEngine<FoundImage>(mode: mode, available: sources.map { ($0.name, $0.timeoutMicros + Self.graceMicros) },
                                               now: start)
        let shared = Shared(engine)
        let cancel = CancelFlag()
        let names = engine.namesToStart
        console.debug("cascade: " + (names.isEmpty ? "no source to start" : "starting " + names.map(\.rawValue).joined(separator: ", ")))
        journal?.append("boot.cascade", [("mode", "\(mode)"), ("sources", names.map(\.rawValue).joined(separator: " "))])
        let journal = journal
        for source in sources where names.contains(source.name) {
            let context = SourceContext(deadline: start + source.timeoutMicros, console: console, devices: devices, cancel: cancel)
            let trust = trust
            Threads.detach {
                let outcome = Self.locate(source, context, trust)
                switch outcome {
                case .success(let found):
                    journal?.append("boot.source", [("source", source.name.rawValue), ("result", "found"), ("origin", found.origin)]
                                    + Self.imageFields(found.manifest))
                case .failure(let error):
                    journal?.append("boot.source", [("source", source.name.rawValue), ("result", "gave up"), ("reason", "\(error)")])
                }
                let unwanted: FoundImage? = shared.monitor.withLock {
                    if shared.finished { return try? outcome.get() }
                    shared.engine.report(source.name, outcome)
                    return nil
                }
                unwanted?.release()
                shared.monitor.broadcast()
            }
        }
        var segmentStart = start
        while true {
            let decision: CascadeEngine<FoundImage>.Decision = shared.monitor.withLock {
                while true {
                    let decision = shared.engine.decide(now: Kernel.bootTimeMicros())
                    guard case .wait(let until) = decision else { return decision }
                    shared.monitor.wait(untilBootMicros: until)
                }
            }
            switch decision {
            case .wait:
                continue
            case .rescue(let reason):
                let reasons = finish(shared, cancel: cancel, keep: nil)
                timeline.record(TimelineStep(step: "cascade", process: timeline.process, pid: Kernel.pid, startMicros: segmentStart,
                                             endMicros: Kernel.bootTimeMicros(), ok: false, detail: reason))
                journal?.append("boot.rescue", [("reason", reason)])
                throw Failure(reason: reason, sources: reasons)
            case .commit(let name, let found):
                timeline.record(TimelineStep(step: "cascade", process: timeline.process, pid: Kernel.pid, startMicros: segmentStart,
                                             endMicros: Kernel.bootTimeMicros(), ok: true, detail: "\(name): \(found.origin)"))
                console.info("boot source=\(name) image=\(found.manifest.sha256.prefix(12))")
                journal?.append("boot.image", [("source", name.rawValue), ("origin", found.origin)] + Self.imageFields(found.manifest)
                                + [("signature", "checked")])
                do {
                    try use(found)
                } catch let refusal as Refusal {
                    console.warning("\(name): \(found.origin): refused: \(refusal.reason); going on with the cascade")
                    journal?.append("boot.refused", [("source", name.rawValue), ("origin", found.origin), ("reason", refusal.reason)])
                    shared.monitor.withLock { shared.engine.refuse(name, reason: "\(found.origin): \(refusal.reason)") }
                    segmentStart = Kernel.bootTimeMicros()
                    continue
                } catch {
                    _ = finish(shared, cancel: cancel, keep: name)
                    throw error
                }
                _ = finish(shared, cancel: cancel, keep: name)
                return found
            }
        }
    }

    /// How the journal names an image.
    static func imageFields(_ manifest: Manifest) -> [(String, String)] {
        [("image", manifest.image), ("version", manifest.version), ("sha256", manifest.sha256)]
    }

    /// Stops the sources still looking and lets go of every image found
    /// but not used; returns why each source gave up.
    func finish(_ shared: Shared, cancel: CancelFlag, keep: SourceName?) -> [(source: SourceName, reason: String)] {
        cancel.raise()
        devices.wakeAll()
        let (unused, reasons) = shared.monitor.withLock {
            shared.finished = true
            return (shared.engine.readyCandidates(except: keep), shared.engine.reasons)
        }
        for found in unused { found.release() }
        return reasons
    }

    /// One source's search, and the check of its manifest (signature and
    /// minimum version). A refusal is said at once: the cascade may go on
    /// to boot another source, and a replayed old or badly signed image on
    /// a medium is worth knowing about all the same.
    static func locate(_ source: any BootSource, _ context: SourceContext,
                       _ trust: Result<ImageTrust, SpiritError>) -> Result<FoundImage, any Error> {
        let found: FoundImage
        do {
            found = try source.locate(context)
        } catch {
            context.console.debug("\(source.name): \(error)")
            return .failure(error)
        }
        do {
            try trust.get().check(found.manifest)
        } catch {
            found.release()
            context.console.warning("\(source.name): \(found.origin): refused: \(error)")
            return .failure(SpiritError("\(found.origin): refused: \(error)"))
        }
        context.console.debug("\(source.name): found \(found.manifest.image) \(found.manifest.version) on \(found.origin)")
        return .success(found)
    }
}
