import Glibc
import SpiritCore

/// Starts processes and sends them signals: the engine's only way to the
/// kernel, so that tests give it a fake that plays the kernel.
public protocol ServiceSpawner: AnyObject {
    /// Starts the service's command; returns its pid.
    func start(_ service: ServiceDefinition) throws -> Int32
    /// Sends `signal` to the service's processes (its process group).
    func signal(_ pid: Int32, _ signal: CInt, service: ServiceDefinition)
    /// Starts the service's readiness probe (`ready-command`); returns its pid.
    func probe(_ service: ServiceDefinition) throws -> Int32
    /// Its main process ended: what it left behind goes too.
    func ended(_ service: ServiceDefinition)
}

/// Microseconds of a monotonic clock (CLOCK_BOOTTIME in Spirit).
public protocol SupervisorClock: AnyObject {
    var nowMicros: Int64 { get }
}

public final class BootClock: SupervisorClock {
    public init() {}
    public var nowMicros: Int64 { Kernel.bootTimeMicros() }
}

/// Where a service is in its life.
public enum ServiceState: String, Sendable, Equatable {
    /// Not wanted and not running.
    case stopped
    /// Wanted; waiting for what it comes after.
    case waiting
    /// Running, not ready yet (a notify service before READY=1).
    case starting
    /// Running and ready.
    case running
    /// Ended; waits out its restart delay.
    case backoff
    /// Sent its stop signal; waits for it to end (then SIGKILL).
    case stopping
    /// Ended and its restart policy says not to restart it.
    case exited
    /// Gave up: a crash loop, or something it requires failed. Stays so
    /// until `spiritctl start`.
    case failed
}

/// What happened, for the console, the logs and the timeline.
public enum SupervisorNotice: Sendable, Equatable {
    case started(String, pid: Int32, at: Int64)
    case ready(String, startedAt: Int64, at: Int64)
    case readyTimeout(String)
    case exited(String, ExitStatus, restartInMicros: Int64?)
    case startFailed(String, reason: String, restartInMicros: Int64?)
    case failed(String, reason: String)
    case stopping(String, signal: CInt)
    case killed(String, afterMicros: Int64)
    case stopped(String, tookMicros: Int64, killed: Bool)
    /// It exited with its `exit.not-applicable` status: nothing to do here.
    case notApplicable(String, status: Int32)
    /// Every enabled service has settled (ready, exited, or failed).
    case allReady
    /// Every service is stopped (after `stopAll`).
    case allStopped
}

/// One service's state, as `spiritctl status` shows it.
public struct ServiceStatus: Sendable {
    public var definition: ServiceDefinition
    public var state: ServiceState = .stopped
    public var pid: Int32? = nil
    /// How often it was started again after it ended by itself.
    public var restarts = 0
    public var lastExit: ExitStatus? = nil
    /// Why it is failed, or what went wrong last.
    public var detail: String? = nil
    /// When it entered its state (the start, for starting and running).
    public var since: Int64 = 0
    public var startedAt: Int64 = 0
    public var ready = false
    /// Wanted running (enabled at boot, or `spiritctl start`).
    public var wanted = false
    var restartTimes: [Int64] = []
    var nextDelay: Int64
    var deadline: Int64? = nil
    var stopAskedAt: Int64 = 0
    var killed = false
    var restartWhenStopped = false
    var settled = false
    /// `ready = "exec"`: the probe running, or when the next one runs.
    var probePID: Int32? = nil
    var nextProbe: Int64? = nil

    init(definition: ServiceDefinition) {
        self.definition = definition
        nextDelay = definition.backoffInitialMicros
    }
}

/// The supervisor's logic, with no system call of its own: events come in
/// (`childExited`, `notified`, `tick`, the control commands), processes are
/// started and signalled through the spawner, and what happened comes out
/// as notices. The same code runs under the real loop and under tests with
/// a fake spawner and a fake clock.
public final class ServiceEngine {
    public private(set) var services: [ServiceStatus]
    let spawner: any ServiceSpawner
    let clock: any SupervisorClock
    var pendingNotices: [SupervisorNotice] = []
    var announcedReady = false
    var stoppingAll = false
    /// A service that ran at least this long has its restart delay reset.
    public static let stableMicros: Int64 = 10_000_000
    /// After SIGKILL, how long to wait before saying the process is stuck.
    public static let killWaitMicros: Int64 = 5_000_000

    /// `services` in any order; they are kept in dependency order.
    public init(services: [ServiceDefinition], spawner: any ServiceSpawner, clock: any SupervisorClock) {
        self.services = Self.dependencyOrder(services).map(ServiceStatus.init)
        self.spawner = spawner
        self.clock = clock
    }

    /// Dependencies first, otherwise by name (a stable order for the console).
    static func dependencyOrder(_ definitions: [ServiceDefinition]) -> [ServiceDefinition] {
        var remaining = definitions.sorted { $0.name < $1.name }
        var ordered: [ServiceDefinition] = []
        var placed: Set<String> = []
        let names = Set(definitions.map(\.name))
        while !remaining.isEmpty {
            let index = remaining.firstIndex { $0.dependencies.allSatisfy { placed.contains($0) || !names.contains($0) } } ?? 0
            let next = remaining.remove(at: index)
            ordered.append(next)
            placed.insert(next.name)
        }
        return ordered
    }

    /// A service that was not there at the start (a file added since, for
    /// `spiritctl start`); it is not started by this.
    public func add(_ definition: ServiceDefinition) {
        guard index(of: definition.name) == nil else { return }
        let all = services + [ServiceStatus(definition: definition)]
        services = Self.dependencyOrder(all.map(\.definition)).map { definition in all.first { $0.definition.name == definition.name }! }
    }

    public func index(of name: String) -> Int? { services.firstIndex { $0.definition.name == name } }

    /// The notices since the last call.
    public func takeNotices() -> [SupervisorNotice] {
        defer { pendingNotices = [] }
        return pendingNotices
    }

    /// The earliest time at which `tick` has something to do.
    public var nextDeadline: Int64? { (services.compactMap(\.deadline) + services.compactMap(\.nextProbe)).min() }

    // MARK: - Events

    /// The boot: every enabled service is wanted.
    public func startEnabled() {
        for i in services.indices where services[i].definition.enabled {
            services[i].wanted = true
            enter(.waiting, i)
        }
        reconcile()
    }

    public func childExited(pid: Int32, status: ExitStatus) {
        if let i = services.firstIndex(where: { $0.probePID == pid }) {
            probeEnded(i, status: status)
            return
        }
        guard let i = services.firstIndex(where: { $0.pid == pid }) else { return }
        let now = clock.nowMicros
        spawner.ended(services[i].definition)
        services[i].pid = nil
        services[i].lastExit = status
        services[i].ready = false
        if services[i].state == .stopping || !services[i].wanted {
            // One that ended by itself before its turn to be stopped took no time.
            let took = services[i].state == .stopping ? now - services[i].stopAskedAt : 0
            pendingNotices.append(.stopped(services[i].definition.name, tookMicros: took, killed: services[i].killed))
            enter(.stopped, i)
            if services[i].restartWhenStopped {
                services[i].restartWhenStopped = false
                services[i].wanted = true
                enter(.waiting, i)
            }
        } else {
            ended(i, now: now, status: status, reason: nil)
        }
        reconcile()
    }

    /// A readiness probe ended: exit 0 makes a starting service ready;
    /// anything else tries again after the interval (the ready timeout
    /// still bounds the wait).
    func probeEnded(_ i: Int, status: ExitStatus) {
        services[i].probePID = nil
        guard services[i].state == .starting else { return }
        if status == .exited(0) {
            services[i].nextProbe = nil
            becomeReady(i)
            reconcile()
        } else {
            services[i].nextProbe = clock.nowMicros + services[i].definition.readyIntervalMicros
        }
    }

    /// A message on the service's notify socket (sd_notify's `KEY=value` lines).
    public func notified(_ name: String, message: String) {
        guard let i = index(of: name), services[i].state == .starting else { return }
        if message.split(separator: "\n").contains("READY=1") {
            becomeReady(i)
            reconcile()
        }
    }

    /// Time passed: restart delays, readiness probes, ready and stop timeouts.
    public func tick() {
        let now = clock.nowMicros
        for i in services.indices where services[i].state == .starting && services[i].probePID == nil {
            guard let at = services[i].nextProbe, now >= at else { continue }
            services[i].nextProbe = nil
            do {
                services[i].probePID = try spawner.probe(services[i].definition)
            } catch {
                services[i].detail = "its readiness probe could not start: \(error)"
                services[i].nextProbe = now + services[i].definition.readyIntervalMicros
            }
        }
        for i in services.indices {
            guard let deadline = services[i].deadline, now >= deadline else { continue }
            switch services[i].state {
            case .backoff:
                services[i].deadline = nil
                launch(i, isRestart: true)
            case .starting:
                // Not ready in time: settled for `spirit: ready`, but it runs on.
                services[i].deadline = nil
                services[i].detail = "\(ServiceSummary.notReadyInTime) \(services[i].definition.readyTimeoutMicros / 1000) ms"
                pendingNotices.append(.readyTimeout(services[i].definition.name))
                services[i].settled = true
            case .stopping where !services[i].killed:
                if let pid = services[i].pid { spawner.signal(pid, SIGKILL, service: services[i].definition) }
                services[i].killed = true
                services[i].deadline = now + Self.killWaitMicros
                pendingNotices.append(.killed(services[i].definition.name, afterMicros: now - services[i].stopAskedAt))
            case .stopping:
                // SIGKILL did not end it (a process in D state): stop waiting.
                services[i].deadline = nil
                services[i].detail = "did not end after SIGKILL"
            default:
                services[i].deadline = nil
            }
        }
        reconcile()
    }

    // MARK: - Commands (spiritctl)

    public enum CommandError: Error, Equatable, CustomStringConvertible {
        case unknownService(String)
        public var description: String {
            switch self {
            case .unknownService(let name): "unknown service '\(name)'"
            }
        }
    }

    /// Wants the service (and what it requires) running; clears a failure.
    public func start(_ name: String) throws(CommandError) {
        guard let i = index(of: name) else { throw .unknownService(name) }
        for required in services[i].definition.requires where index(of: required) != nil { try start(required) }
        services[i].wanted = true
        services[i].restartTimes = []
        services[i].nextDelay = services[i].definition.backoffInitialMicros
        switch services[i].state {
        case .stopped, .exited, .failed:
            services[i].detail = nil
            enter(.waiting, i)
        case .backoff:
            services[i].deadline = nil
            launch(i, isRestart: true)
        default:
            break
        }
        reconcile()
    }

    /// Stops the service and those that require it; `reason` is what
    /// `status` says of it until it is started again.
    public func stop(_ name: String, reason: String? = nil) throws(CommandError) {
        guard let i = index(of: name) else { throw .unknownService(name) }
        unwant(i)
        if let reason { services[i].detail = reason }
        reconcile()
    }

    public func restart(_ name: String) throws(CommandError) {
        guard let i = index(of: name) else { throw .unknownService(name) }
        if services[i].pid != nil {
            unwant(i)
            services[i].restartWhenStopped = true
            reconcile()
        } else {
            try start(name)
        }
    }

    /// The shutdown: every service stopped, dependents before what they depend on.
    public func stopAll() {
        stoppingAll = true
        for i in services.indices { services[i].wanted = false; services[i].restartWhenStopped = false }
        reconcile()
    }

    public var everythingStopped: Bool { services.allSatisfy { $0.pid == nil } }

    func unwant(_ i: Int) {
        services[i].wanted = false
        let name = services[i].definition.name
        for j in services.indices where services[j].wanted && services[j].definition.requires.contains(name) { unwant(j) }
    }

    // MARK: - The logic

    func enter(_ state: ServiceState, _ i: Int) {
        services[i].state = state
        services[i].since = clock.nowMicros
        if state != .stopping { services[i].deadline = nil }
        if state != .starting { services[i].nextProbe = nil }
    }

    func becomeReady(_ i: Int) {
        let now = clock.nowMicros
        services[i].ready = true
        services[i].settled = true
        services[i].deadline = nil
        services[i].detail = nil
        enter(.running, i)
        services[i].since = services[i].startedAt
        pendingNotices.append(.ready(services[i].definition.name, startedAt: services[i].startedAt, at: now))
    }

    func launch(_ i: Int, isRestart: Bool) {
        let now = clock.nowMicros
        let definition = services[i].definition
        if isRestart {
            services[i].restarts += 1
            services[i].restartTimes.append(now)
        }
        services[i].killed = false
        do {
            let pid = try spawner.start(definition)
            services[i].pid = pid
            services[i].startedAt = now
            enter(.starting, i)
            pendingNotices.append(.started(definition.name, pid: pid, at: now))
            if definition.readiness == .started {
                becomeReady(i)
            } else {
                services[i].deadline = now + definition.readyTimeoutMicros
                if definition.readiness == .exec { services[i].nextProbe = now + definition.readyIntervalMicros }
            }
        } catch {
            services[i].startedAt = now
            ended(i, now: now, status: nil, reason: "\(error)")
        }
    }

    /// The service ended by itself (or could not start): restart, exit or fail.
    func ended(_ i: Int, now: Int64, status: ExitStatus?, reason: String?) {
        let definition = services[i].definition
        let name = definition.name
        if let code = definition.notApplicableExit, status == .exited(code) {
            // Nothing to do on this machine: settled, not restarted.
            services[i].settled = true
            services[i].detail = "not applicable here"
            enter(.exited, i)
            pendingNotices.append(.notApplicable(name, status: code))
            return
        }
        let restart = switch definition.restart {
        case .always: true
        case .onFailure: status != .exited(0)
        case .never: false
        }
        guard restart else {
            services[i].settled = true
            enter(reason == nil ? .exited : .failed, i)
            services[i].detail = reason
            if let reason { pendingNotices.append(.startFailed(name, reason: reason, restartInMicros: nil)) }
            if let status { pendingNotices.append(.exited(name, status, restartInMicros: nil)) }
            return
        }
        services[i].restartTimes.removeAll { $0 < now - definition.crashLoopWindowMicros }
        if services[i].restartTimes.count >= definition.crashLoopRestarts {
            let why = "crash loop: \(services[i].restartTimes.count) restarts within \(definition.crashLoopWindowMicros / 1_000_000) s"
                + (reason.map { ", last: \($0)" } ?? status.map { ", last \($0)" } ?? "")
            if let status { pendingNotices.append(.exited(name, status, restartInMicros: nil)) }
            fail(i, why)
            return
        }
        if now - services[i].startedAt >= max(Self.stableMicros, definition.backoffCapMicros) {
            services[i].nextDelay = definition.backoffInitialMicros
        }
        let delay = services[i].nextDelay
        services[i].nextDelay = min(delay * definition.backoffFactor, definition.backoffCapMicros)
        if let reason {
            services[i].detail = reason
            pendingNotices.append(.startFailed(name, reason: reason, restartInMicros: delay))
        }
        if let status { pendingNotices.append(.exited(name, status, restartInMicros: delay)) }
        enter(.backoff, i)
        services[i].deadline = now + delay
    }

    /// Says why a service is in its state (the supervisor adds what the
    /// service said, which the engine does not see).
    public func explain(_ name: String, _ detail: String) {
        guard let i = index(of: name) else { return }
        services[i].detail = detail
    }

    func fail(_ i: Int, _ reason: String) {
        services[i].settled = true
        services[i].detail = reason
        enter(.failed, i)
        pendingNotices.append(.failed(services[i].definition.name, reason: reason))
    }

    /// Brings every service toward what is wanted: starts those whose
    /// dependencies are ready (all of them at once: independent services
    /// start in parallel), stops those no longer wanted once nothing that
    /// depends on them still runs.
    func reconcile() {
        var changed = true
        while changed {
            changed = false
            for i in services.indices {
                let service = services[i]
                if service.wanted, service.state == .waiting {
                    switch dependencyCheck(service.definition) {
                    case .ready:
                        launch(i, isRestart: false)
                        changed = true
                    case .failed(let reason):
                        fail(i, reason)
                        changed = true
                    case .wait:
                        break
                    }
                } else if !service.wanted {
                    switch service.state {
                    case .waiting, .backoff:
                        enter(.stopped, i)
                        changed = true
                    case .starting, .running:
                        if !hasRunningDependents(service.definition.name), let pid = service.pid {
                            let now = clock.nowMicros
                            services[i].stopAskedAt = now
                            enter(.stopping, i)
                            services[i].deadline = now + service.definition.stopTimeoutMicros
                            pendingNotices.append(.stopping(service.definition.name, signal: service.definition.stopSignal))
                            spawner.signal(pid, service.definition.stopSignal, service: service.definition)
                            changed = true
                        }
                    default:
                        break
                    }
                }
            }
        }
        if !announcedReady, services.allSatisfy({ !$0.definition.enabled || $0.settled || !$0.wanted }) {
            announcedReady = true
            pendingNotices.append(.allReady)
        }
        if stoppingAll, everythingStopped {
            stoppingAll = false
            pendingNotices.append(.allStopped)
        }
    }

    enum DependencyCheck { case ready, wait, failed(String) }

    func dependencyCheck(_ definition: ServiceDefinition) -> DependencyCheck {
        for name in definition.dependencies {
            let required = definition.requires.contains(name)
            guard let j = index(of: name) else {
                if required { return .failed("requires \(name), which has no service file") }
                continue
            }
            let other = services[j]
            switch other.state {
            case .running:
                continue
            case .waiting, .backoff, .starting:
                if other.state == .starting, other.settled { continue } // ready timeout passed
                if other.wanted { return .wait }
                if required { return .failed("requires \(name), which is \(other.state.rawValue)") }
            case .failed, .exited, .stopped, .stopping:
                if required { return .failed("requires \(name), which is \(other.state.rawValue)") }
            }
        }
        return .ready
    }

    func hasRunningDependents(_ name: String) -> Bool {
        services.contains { $0.pid != nil && $0.definition.dependencies.contains(name) }
    }
}
