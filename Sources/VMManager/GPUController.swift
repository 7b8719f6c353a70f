import SpiritCore

/// What a GPU plan asks of the system: sysfs writes and reads (the real
/// tree under a root, or a simulated one with kernel semantics in tests).
public protocol PCISysfs {
    /// echo VALUE > PATH: the kernel's answer is the error.
    func write(_ path: String, _ value: String) throws
    /// The function's bound driver now, nil if none.
    func driver(of address: String) -> String?
    /// The processes holding /dev/dri/CARD open.
    func cardHolders(_ card: String) -> [String]
}

/// Loads a module and what it needs. The command gives ModuleLoader's
/// loader (in the same process); the VM manager, which does not import
/// feature targets, would give `spirit modules load NAME` as a subprocess.
public protocol ModuleLoad {
    func load(_ name: String) throws
}

/// The supervisor's services, through its control socket.
public protocol ServiceControl {
    func stop(_ name: String, reason: String) throws
    func start(_ name: String) throws
}

/// The real sysfs under `root`.
public struct SystemPCISysfs: PCISysfs {
    public var tree: PCITree

    public init(root: String = "") { tree = PCITree(root: root) }

    public func write(_ path: String, _ value: String) throws {
        try Kernel.writeFile(tree.root + path, value)
    }

    public func driver(of address: String) -> String? { tree.linkName(PCITree.devicePath(address) + "/driver") }
    public func cardHolders(_ card: String) -> [String] { tree.cardHolders(card) }
}

/// The supervisor's control socket (ControlChannel's client): `stop NAME
/// because REASON`, `start NAME`.
public struct SupervisorServiceControl: ServiceControl {
    public var socket: String

    public init(socket: String) { self.socket = socket }

    func send(_ line: String) throws {
        let head = ControlChannel.send(line, to: socket, server: "supervisor") { _ in true }
        if case .error(_, let message) = head { throw SpiritError(message) }
    }

    public func stop(_ name: String, reason: String) throws { try send("stop \(name) because \(reason)") }
    public func start(_ name: String) throws { try send("start \(name)") }
}

/// A plan that stopped: the step that failed and why, and what undoing the
/// done steps said (an undo that failed too).
public struct GPUFailure: Error, CustomStringConvertible {
    public var direction: GPUPlan.Direction
    public var step: GPUStep
    public var reason: String
    public var undone: Int
    public var undoProblems: [String]

    /// One line.
    public var description: String {
        "\(direction.rawValue): \(reason); " + (undone == 0 ? "nothing was done" : "\(undone) step(s) undone")
            + (undoProblems.isEmpty ? "" : ", but " + undoProblems.joined(separator: "; "))
    }
}

/// Carries out a GPU plan: one step after the other; a failing step undoes
/// the done ones in reverse. Never a fixed sleep: driver links and card
/// users are polled with a deadline.
public struct GPUController {
    public static let driverDeadlineMillis = 5_000
    /// The HUD's stop timeout (3 s in nexus.toml) and some.
    public static let releaseDeadlineMillis = 5_000

    let sysfs: any PCISysfs
    let modules: any ModuleLoad
    let services: any ServiceControl
    let clock: any VMClock

    public init(sysfs: any PCISysfs, modules: any ModuleLoad, services: any ServiceControl, clock: any VMClock = BootClock()) {
        self.sysfs = sysfs
        self.modules = modules
        self.services = services
        self.clock = clock
    }

    public func run(_ plan: GPUPlan) throws(GPUFailure) {
        var done: [GPUPlannedStep] = []
        for planned in plan.steps {
            do {
                try perform(planned.step)
            } catch {
                let problems = undo(done)
                throw GPUFailure(direction: plan.direction, step: planned.step, reason: "\(error)", undone: done.count, undoProblems: problems)
            }
            done.append(planned)
        }
    }

    /// Polls `condition` every few milliseconds until it holds or the deadline passes.
    func poll(deadlineMillis: Int, _ condition: () -> Bool) -> Bool {
        let deadline = clock.nowMilliseconds + Int64(deadlineMillis)
        while !condition() {
            if clock.nowMilliseconds >= deadline { return false }
            clock.sleep(milliseconds: 5)
        }
        return true
    }

    func perform(_ step: GPUStep) throws {
        switch step {
        case .stopService(let name, let reason):
            try services.stop(name, reason: reason)
        case .startService(let name):
            try services.start(name)
        case .waitCardReleased(let card):
            var holders: [String] = []
            guard poll(deadlineMillis: Self.releaseDeadlineMillis, { holders = sysfs.cardHolders(card); return holders.isEmpty }) else {
                throw SpiritError("/dev/dri/\(card) is still held by \(holders.joined(separator: ", ")) after "
                                  + "\(Self.releaseDeadlineMillis) ms")
            }
        case .write(let path, let value, _):
            do {
                try sysfs.write(path, value)
            } catch let error as SystemError {
                throw SpiritError("unable to write \(value == "\n" ? "a newline" : value) to \(path): \(error.errno)")
            }
        case .expectDriver(let address, let driver):
            var bound: String?
            let matches = poll(deadlineMillis: Self.driverDeadlineMillis) {
                bound = sysfs.driver(of: address)
                return driver.map { bound == $0 } ?? (bound != nil && bound != "vfio-pci")
            }
            guard matches else {
                throw SpiritError("\(driver ?? "no native driver") did not bind \(address) within \(Self.driverDeadlineMillis) ms"
                                  + " (bound: \(bound ?? "none"))")
            }
        case .loadModule(let name):
            try modules.load(name)
        }
    }

    /// Undoes `done` in reverse; an undo that fails is said and passed over.
    func undo(_ done: [GPUPlannedStep]) -> [String] {
        var problems: [String] = []
        for planned in done.reversed() {
            guard let undo = planned.undo else { continue }
            do {
                switch undo {
                case .startService(let name): try services.start(name)
                case .stopService(let name, let reason): try services.stop(name, reason: reason)
                case .write(let path, let value): try sysfs.write(path, value)
                case .rebind(let address, let driver, let override):
                    if let bound = sysfs.driver(of: address), bound != driver {
                        try sysfs.write("/sys/bus/pci/drivers/\(bound)/unbind", address)
                    }
                    try sysfs.write(PCITree.devicePath(address) + "/driver_override", override)
                    if sysfs.driver(of: address) == nil {
                        try sysfs.write("/sys/bus/pci/drivers/\(driver)/bind", address)
                    }
                }
            } catch {
                problems.append("undo '\(undo.shell)' failed: \(error)")
            }
        }
        return problems
    }
}
