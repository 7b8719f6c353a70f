import Glibc

/// What a boot plan asks of the kernel: the real one (`SystemBootKernel`)
/// or a recording double in tests.
public protocol BootKernel {
    func makeDirectory(_ path: String) throws
    func mount(_ spec: MountSpec) throws
    func unmount(_ target: String) throws
    func writeFile(_ path: String, _ contents: String) throws
    func readFile(_ path: String) throws -> String
    func run(_ arguments: [String]) throws
    func swapOn(_ device: String) throws
    func swapOff(_ device: String) throws
    /// The device path, and a handle to close once it is mounted.
    func attachLoop(_ file: String) throws -> (device: String, handle: CInt)
    func closeLoop(_ handle: CInt)
    /// Bytes freed.
    func removeTree(_ path: String, keep: String) -> Int64
    func changeDirectory(_ path: String) throws
    func changeRoot(_ path: String) throws
    /// Returns only on failure.
    func execute(_ arguments: [String]) -> any Error
}

/// The kernel itself, through SpiritCore's door.
public struct SystemBootKernel: BootKernel {
    public init() {}
    public func makeDirectory(_ path: String) throws { try Kernel.makeDirectory(path, parents: true) }
    public func mount(_ spec: MountSpec) throws { try Kernel.mount(spec) }
    public func unmount(_ target: String) throws { try Kernel.unmount(target) }
    public func writeFile(_ path: String, _ contents: String) throws { try Kernel.writeFile(path, contents) }
    public func readFile(_ path: String) throws -> String { try Kernel.readText(path) }
    public func run(_ arguments: [String]) throws { try Spawn.run(arguments[0], [String(arguments[0].split(separator: "/").last ?? "")] + arguments.dropFirst()) }
    public func swapOn(_ device: String) throws { try Kernel.swapOn(device) }
    public func swapOff(_ device: String) throws { try Kernel.swapOff(device) }
    public func attachLoop(_ file: String) throws -> (device: String, handle: CInt) {
        let (fd, device) = try Kernel.attachLoop(file)
        return (device, fd)
    }
    public func closeLoop(_ handle: CInt) { Kernel.close(handle) }
    public func removeTree(_ path: String, keep: String) -> Int64 {
        guard let status = try? Kernel.status(path) else { return 0 }
        return Kernel.removeTree(path, device: status.device, keep: keep)
    }
    public func changeDirectory(_ path: String) throws { try Kernel.changeDirectory(path) }
    public func changeRoot(_ path: String) throws { try Kernel.changeRoot(path) }
    public func execute(_ arguments: [String]) -> any Error {
        Kernel.execute(arguments[0], arguments, environment: Spawn.baseEnvironment)
    }
}

/// A plan that stopped: the phase and step that failed, and why. The steps
/// done before it have been undone, in reverse.
public struct PlanFailure: Error, CustomStringConvertible {
    public var phase: String
    public var step: BootStep
    public var underlying: any Error
    public var description: String { "\(underlying)" }
}

/// Carries out a plan: one step after the other, each phase measured in the
/// timeline; on a failure, undoes what was done in reverse order and throws
/// `PlanFailure`.
public struct PlanRunner {
    let kernel: any BootKernel
    let timeline: Timeline?
    /// What the plan says on the way (an algorithm refused, bytes freed).
    let note: (String) -> Void

    public init(kernel: any BootKernel = SystemBootKernel(), timeline: Timeline?, note: @escaping (String) -> Void = { _ in }) {
        self.kernel = kernel
        self.timeline = timeline
        self.note = note
    }

    /// What one line of work has done: its values, its steps (for the
    /// undo), its loop handles.
    struct Track {
        var variables: [String: String] = [:]
        var done: [PlannedStep] = []
        var loops: [CInt] = []
    }

    /// One run of a phase's steps: when it began and ended, and the step
    /// that failed with its error.
    struct PhaseRun {
        var phase: String
        var startMicros: Int64
        var endMicros: Int64
        var failure: PlanFailure?
    }

    /// A phase begun early (BootPlan.beginsWith), on a thread of its own.
    final class EarlyPhase: @unchecked Sendable {
        let monitor = Monitor()
        var result: (run: PhaseRun, track: Track)?

        /// Waits for the phase to end.
        func wait() -> (run: PhaseRun, track: Track) {
            monitor.withLock {
                while result == nil { monitor.wait(untilBootMicros: Kernel.bootTimeMicros() + 1_000_000) }
                return result!
            }
        }
    }

    /// The runner, handed to an early phase's thread, which calls its
    /// kernel while the plan's own line goes on. An early phase is the
    /// runner's own steps (zram's writes, mke2fs), touching nothing the
    /// other line does: it is given no handlers (the caller's share state
    /// unlocked; an `.action` in it fails as having none) and starts with
    /// no values of the other line (its `$NAME`s are its own).
    struct Shared: @unchecked Sendable {
        let runner: PlanRunner
        let steps: ArraySlice<PlannedStep>
    }

    /// Runs `plan`; `actions` carry out its `.action` steps by name.
    public func run(_ plan: BootPlan, actions: [String: () throws -> Void] = [:]) throws(PlanFailure) {
        var track = Track()
        // In the order they began, which is their order in the plan.
        var early: [(phase: String, begun: EarlyPhase)] = []
        var ran: Set<String> = []
        // Loop handles are closed once the plan is over: the mounts hold the devices then.
        defer { track.loops.forEach(kernel.closeLoop) }
        let runs = Self.phaseRuns(plan.steps)
        for (phase, range) in runs {
            for (other, otherRange) in runs where plan.beginsWith[other] == phase && !early.contains(where: { $0.phase == other })
                && !ran.contains(other) {
                early.append((other, begin(plan.steps[otherRange])))
            }
            let run: PhaseRun
            if let index = early.firstIndex(where: { $0.phase == phase }) {
                let result = early.remove(at: index).begun.wait()
                run = result.run
                merge(result.track, into: &track)
            } else {
                run = runPhase(plan.steps[range], track: &track, actions: actions)
            }
            ran.insert(phase)
            record(run, ok: run.failure == nil, detail: run.failure.map { "\($0.underlying)" } ?? plan.details[phase])
            if let failure = run.failure {
                // What still runs beside is waited for, and undone with the
                // rest (not ok in the timeline: it does not stand).
                for (other, begun) in early {
                    let result = begun.wait()
                    merge(result.track, into: &track)
                    let undone = "undone: the \(phase) phase failed"
                    if let second = result.run.failure { note("\(other): \(second.underlying) (beside the \(phase) phase, which failed too)") }
                    record(result.run, ok: false, detail: result.run.failure.map { "\($0.underlying); \(undone)" }
                           ?? (plan.details[other].map { "\($0); \(undone)" } ?? undone))
                }
                undo(track.done, variables: track.variables)
                throw failure
            }
        }
    }

    /// The plan's steps in runs of one phase, in order.
    static func phaseRuns(_ steps: [PlannedStep]) -> [(phase: String, range: Range<Int>)] {
        var runs: [(phase: String, range: Range<Int>)] = []
        for (index, planned) in steps.enumerated() {
            if let last = runs.last, last.phase == planned.phase {
                runs[runs.count - 1].range = last.range.lowerBound..<(index + 1)
            } else {
                runs.append((planned.phase, index..<(index + 1)))
            }
        }
        return runs
    }

    func begin(_ steps: ArraySlice<PlannedStep>) -> EarlyPhase {
        let begun = EarlyPhase()
        let shared = Shared(runner: self, steps: steps)
        Threads.detach {
            var track = Track()
            let run = shared.runner.runPhase(shared.steps, track: &track, actions: [:])
            begun.monitor.withLock { begun.result = (run, track) }
            begun.monitor.broadcast()
        }
        return begun
    }

    /// One run of a phase's steps, stopping at the first that fails.
    func runPhase(_ steps: ArraySlice<PlannedStep>, track: inout Track, actions: [String: () throws -> Void]) -> PhaseRun {
        let phase = steps.first?.phase ?? ""
        let start = Kernel.bootTimeMicros()
        for planned in steps {
            do {
                try perform(planned.step, variables: &track.variables, loops: &track.loops, actions: actions)
            } catch {
                return PhaseRun(phase: phase, startMicros: start, endMicros: Kernel.bootTimeMicros(),
                                failure: PlanFailure(phase: planned.phase, step: planned.step, underlying: error))
            }
            track.done.append(planned)
        }
        return PhaseRun(phase: phase, startMicros: start, endMicros: Kernel.bootTimeMicros(), failure: nil)
    }

    func merge(_ other: Track, into track: inout Track) {
        track.variables.merge(other.variables) { _, theirs in theirs }
        track.done += other.done
        track.loops += other.loops
    }

    /// The timeline's entry for a run, written from the plan's own thread.
    func record(_ run: PhaseRun, ok: Bool, detail: String?) {
        timeline?.record(TimelineStep(step: run.phase, process: timeline?.process ?? "", pid: Kernel.pid,
                                      startMicros: run.startMicros, endMicros: run.endMicros, ok: ok, detail: detail))
    }

    func perform(_ step: BootStep, variables: inout [String: String], loops: inout [CInt],
                 actions: [String: () throws -> Void]) throws {
        func resolve(_ text: String) -> String {
            guard text.contains("$") else { return text }
            var result = text
            for (name, value) in variables.sorted(by: { $0.key.count > $1.key.count }) {
                result = result.replacing("$" + name, with: value)
            }
            return result
        }
        switch step {
        case .makeDirectory(let path):
            try kernel.makeDirectory(path)
        case .mount(var spec):
            spec.source = resolve(spec.source)
            try kernel.mount(spec)
        case .writeFile(let path, let contents):
            try kernel.writeFile(path, contents)
        case .writeFirstAccepted(let path, let values, let what, let preferred):
            var chosen: String?
            for value in values {
                do {
                    try kernel.writeFile(path, value)
                    chosen = value
                    break
                } catch {
                    note("\(what): \(value) is not available (\(error)); trying the next algorithm")
                }
            }
            guard let chosen else {
                throw SpiritError("\(path) accepts none of \(values.joined(separator: ", "))")
            }
            if chosen != preferred { note("\(what): this kernel has no \(preferred) for \(what); using \(chosen)") }
        case .readValue(let path, let name):
            variables[name] = try kernel.readFile(path).trimmed
        case .run(let arguments):
            try kernel.run(arguments.map(resolve))
        case .swapOn(let device):
            try kernel.swapOn(device)
        case .attachLoop(let file, let name):
            let (device, handle) = try kernel.attachLoop(file)
            loops.append(handle)
            variables[name] = device
        case .action(let name, _):
            guard let action = actions[name] else { throw SpiritError("the plan's step '\(name)' has no handler") }
            try action()
        case .removeTree(let path, let keep):
            note("freed \(kernel.removeTree(path, keep: keep) >> 10) KiB under \(path)")
        case .changeDirectory(let path):
            try kernel.changeDirectory(path)
        case .changeRoot(let path):
            try kernel.changeRoot(path)
        case .execute(let arguments):
            throw kernel.execute(arguments)
        }
    }

    /// Undoes `done` in reverse; an undo that fails is said and passed over.
    func undo(_ done: [PlannedStep], variables: [String: String]) {
        for planned in done.reversed() {
            guard let undo = planned.undo else { continue }
            do {
                switch undo {
                case .unmount(let target): try kernel.unmount(target)
                case .swapOff(let device): try kernel.swapOff(device)
                case .writeFile(let path, let contents): try kernel.writeFile(path, contents)
                case .detachLoop: break // autoclear: the device goes with its last handle and mount
                }
            } catch {
                note("undo '\(undo.shell)': \(error)")
            }
        }
    }
}
