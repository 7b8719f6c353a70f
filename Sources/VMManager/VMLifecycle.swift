import SpiritCore

/// A VM's states (libvirt's and Firecracker's, as the research names them).
public enum VMState: String, Sendable, CaseIterable {
    case defined, starting, running, paused, saving, saved, restoring, stopping, stopped, failed

    /// A QEMU process exists in these.
    public var hasProcess: Bool { [.starting, .running, .paused, .saving, .restoring, .stopping].contains(self) }
}

/// What happens to a VM: requests (start, stop, save) and what QEMU did.
public enum VMEvent: Sendable, Equatable {
    /// `start`: with a saved state, it is restored (managedsave).
    case start(hasSavedState: Bool)
    /// QEMU answers on QMP; `running` from query-status (false: paused,
    /// or waiting for the incoming migration).
    case launched(running: Bool)
    case paused
    case resumed
    /// `stop`: `agentReady` says whether the guest agent answered its
    /// last sync (the first, gentlest step needs it); `force` goes to quit.
    case stop(force: Bool, agentReady: Bool)
    /// `save`, with query-migrate's `blocked-reasons` (checked before the
    /// CPUs are stopped: a VM that cannot be saved keeps running).
    case save(blockedReasons: [String])
    case saveCompleted
    case restoreCompleted
    /// A step failed (QMP refused, the stream broke): the reason.
    case failed(String)
    /// The QEMU process ended: how, or nil when it is unknown (a QEMU
    /// adopted from a previous daemon is not this one's child).
    case exited(ExitStatus?)
    /// Asked for by `pause` and `resume` (QMP stop and cont).
    case pause
    case resume
}

/// What the I/O shell must do next.
public enum VMAction: Sendable, Equatable {
    case launch(incoming: Bool)
    case agentShutdown
    case acpiPowerdown
    case quit
    case kill
    /// stop, getfd, migrate fd: to the state file, then quit.
    case migrateOut
    /// getfd, migrate-incoming fd: from the state file.
    case migrateIn
    /// QMP stop: the CPUs halt, memory and devices stay.
    case stopCPUs
    /// cont (after a restore, then guest-set-time).
    case resume
    /// The saved state was used or is stale: delete it.
    case discardSavedState
}

/// How long each step of a stop may take before the next, harder one.
public struct StopDeadlines: Sendable, Equatable {
    public var agentMilliseconds: Int64
    public var acpiMilliseconds: Int64
    public var quitMilliseconds: Int64
    public var startMilliseconds: Int64
    public init(agentMilliseconds: Int64 = 30_000, acpiMilliseconds: Int64 = 30_000, quitMilliseconds: Int64 = 5_000,
                startMilliseconds: Int64 = 30_000) {
        self.agentMilliseconds = agentMilliseconds
        self.acpiMilliseconds = acpiMilliseconds
        self.quitMilliseconds = quitMilliseconds
        self.startMilliseconds = startMilliseconds
    }
}

/// The VM state machine: pure, driven by events and a clock the caller
/// passes (a fake one in tests). Every request has a precondition and says
/// why it is refused before anything is done (libvirt's, Firecracker's
/// discipline): a save that `blocked-reasons` forbids never stops the CPUs.
public struct VMLifecycle: Sendable, Equatable {
    public enum StopStep: Sendable, Equatable { case agent, acpi, quit, kill }

    public let name: String
    public private(set) var state: VMState
    /// Why it failed or stopped, for `vm list`.
    public private(set) var reason: String?
    public private(set) var stopStep: StopStep?
    public private(set) var deadline: Int64?
    public var deadlines: StopDeadlines

    public init(name: String, state: VMState = .defined, deadlines: StopDeadlines = StopDeadlines()) {
        self.name = name
        self.state = state
        self.deadlines = deadlines
    }

    func refuse(_ why: String) -> VMError { VMError("\(name) is \(state.rawValue): \(why)", code: 100) }

    public mutating func handle(_ event: VMEvent, now: Int64) throws(VMError) -> [VMAction] {
        switch event {
        case .start(let saved):
            guard [.defined, .stopped, .failed, .saved].contains(state) else { throw refuse("it is already started") }
            state = saved ? .restoring : .starting
            reason = nil
            deadline = now + deadlines.startMilliseconds
            return [.launch(incoming: saved)]
        case .launched(let running):
            guard state == .starting || state == .restoring else { return [] }
            if state == .restoring { return [.migrateIn] }
            state = running ? .running : .paused
            deadline = nil
            return []
        case .restoreCompleted:
            guard state == .restoring else { return [] }
            state = .running
            deadline = nil
            return [.resume, .discardSavedState]
        case .paused:
            if state == .running { state = .paused }
            return []
        case .resumed:
            if state == .paused { state = .running }
            return []
        case .stop(let force, let agentReady):
            guard state.hasProcess else { throw refuse("there is nothing to stop") }
            if state == .saving { throw refuse("wait for the save to end") }
            // A paused guest hears neither its agent nor the power button.
            let paused = state == .paused
            state = .stopping
            if force || paused {
                return advance(to: .quit, now: now)
            }
            return advance(to: agentReady ? .agent : .acpi, now: now)
        case .save(let blocked):
            guard state == .running || state == .paused else { throw refuse("only a running or paused VM can be saved") }
            guard blocked.isEmpty else {
                throw VMError("\(name) cannot be saved: \(blocked.joined(separator: "; ")) (it keeps running)", code: 100)
            }
            state = .saving
            deadline = nil
            return [.migrateOut]
        case .saveCompleted:
            guard state == .saving else { return [] }
            state = .saved
            return [.quit]
        case .failed(let why):
            let previous = state
            reason = why
            if previous == .saving {
                // The stream failed; the CPUs are stopped: run again.
                state = .running
                return [.resume]
            }
            state = .failed
            deadline = nil
            stopStep = nil
            return previous.hasProcess ? [.kill] : []
        case .exited(let status):
            stopStep = nil
            deadline = nil
            let how = "QEMU " + (status?.description ?? "ended (adopted: its exit status is unknown)")
            switch state {
            case .saved:
                return []
            case .failed:
                // Killed because it failed: the reason it failed stays.
                return []
            case .stopping:
                state = .stopped
                reason = how
            case .saving, .restoring, .starting:
                reason = "\(how) while \(state == .saving ? "saving" : state == .restoring ? "restoring" : "starting")"
                state = .failed
            default:
                // The guest powered itself off (QEMU exits 0), or QEMU died.
                state = status == .exited(0) || status == nil ? .stopped : .failed
                reason = how
            }
            return []
        case .pause:
            guard state == .running else { throw refuse("only a running VM can be paused") }
            return [.stopCPUs]
        case .resume:
            guard state == .paused else { throw refuse("only a paused VM can be resumed") }
            return [.resume]
        }
    }

    mutating func advance(to step: StopStep, now: Int64) -> [VMAction] {
        stopStep = step
        switch step {
        case .agent:
            deadline = now + deadlines.agentMilliseconds
            return [.agentShutdown]
        case .acpi:
            deadline = now + deadlines.acpiMilliseconds
            return [.acpiPowerdown]
        case .quit:
            deadline = now + deadlines.quitMilliseconds
            return [.quit]
        case .kill:
            deadline = nil
            return [.kill]
        }
    }

    /// The next action when a deadline has passed: the next step of a stop,
    /// or the end of a start that QEMU never answered.
    public mutating func tick(now: Int64) -> [VMAction] {
        guard let deadline, now >= deadline else { return [] }
        switch state {
        case .stopping:
            switch stopStep {
            case .agent: return advance(to: .acpi, now: now)
            case .acpi: return advance(to: .quit, now: now)
            case .quit, .none: return advance(to: .kill, now: now)
            case .kill: return []
            }
        case .starting, .restoring:
            state = .failed
            reason = "QEMU did not become ready within \(deadlines.startMilliseconds / 1000) s"
            self.deadline = nil
            return [.kill]
        default:
            self.deadline = nil
            return []
        }
    }
}
