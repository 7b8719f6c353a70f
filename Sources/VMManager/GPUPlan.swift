import SpiritCore

/// One step of moving PCI functions between their drivers and vfio-pci
/// (STYLE.md, lesson 1: like the boot, a printable plan with undo). Paths
/// are the real ones (/sys/…); the controller's sysfs puts its root before them.
public enum GPUStep: Sendable, Equatable {
    /// A supervisor service stopped through its control socket, with the
    /// reason `spiritctl status` shows.
    case stopService(String, reason: String)
    /// Waits (with a deadline) until no process holds /dev/dri/CARD open.
    case waitCardReleased(String)
    /// A sysfs write; `comment` says what it does to whom.
    case write(path: String, value: String, comment: String? = nil)
    /// Polls the function's driver link until it names `driver` (nil: any
    /// driver but vfio-pci), with a deadline.
    case expectDriver(address: String, driver: String?)
    /// A module and what it needs, through Spirit's module loader.
    case loadModule(String)
    case startService(String)

    public var shell: String {
        switch self {
        case .stopService(let name, let reason): "spiritctl stop \(name)    # \(reason)"
        case .waitCardReleased(let card): "while fuser -s /dev/dri/\(card); do sleep 0.01; done    # deadline \(GPUController.releaseDeadlineMillis) ms"
        case .write(let path, let value, let comment):
            (value == "\n" ? "echo > \(path)" : "echo \(value) > \(path)") + (comment.map { "    # \($0)" } ?? "")
        case .expectDriver(let address, let driver):
            if let driver {
                "test \"$(basename \"$(readlink /sys/bus/pci/devices/\(address)/driver)\")\" = \(driver)"
            } else {
                "test -e /sys/bus/pci/devices/\(address)/driver -a \"$(basename \"$(readlink /sys/bus/pci/devices/\(address)/driver)\")\" != vfio-pci"
            }
        case .loadModule(let name): "spirit modules load \(name)"
        case .startService(let name): "spiritctl start \(name)"
        }
    }
}

/// How a done step is taken back when a later one fails.
public enum GPUUndo: Sendable, Equatable {
    case startService(String)
    case stopService(String, reason: String)
    case write(path: String, value: String)
    /// Gives the function back to `driver`: whatever holds it now lets go,
    /// `driver_override` gets `override` back ("\n" clears it), then `bind`.
    case rebind(address: String, driver: String, override: String)

    public var shell: String {
        switch self {
        case .startService(let name): "spiritctl start \(name)"
        case .stopService(let name, _): "spiritctl stop \(name)"
        case .write(let path, let value): value == "\n" ? "echo > \(path)" : "echo \(value) > \(path)"
        case .rebind(let address, let driver, let override):
            "echo \(address) > /sys/bus/pci/devices/\(address)/driver/unbind 2>/dev/null; "
                + (override == "\n" ? "echo > " : "echo \(override) > ") + "/sys/bus/pci/devices/\(address)/driver_override; "
                + "echo \(address) > /sys/bus/pci/drivers/\(driver)/bind"
        }
    }
}

public struct GPUPlannedStep: Sendable, Equatable {
    public var step: GPUStep
    public var undo: GPUUndo?

    public init(_ step: GPUStep, undo: GPUUndo? = nil) {
        self.step = step
        self.undo = undo
    }
}

/// A passthrough or a return: what was checked (the preflight, printed as
/// comments) and the steps.
public struct GPUPlan: Sendable, Equatable {
    public enum Direction: String, Sendable { case passthrough, `return` }

    public var direction: Direction
    public var preflight: [String]
    public var steps: [GPUPlannedStep]

    /// The functions the plan moves, in its order.
    public var devices: [String] {
        steps.compactMap { if case .expectDriver(let address, _) = $0.step { address } else { nil } }
    }

    public var shell: String {
        (preflight.map { "# " + $0 } + (steps.isEmpty ? ["# nothing to do"] : steps.map(\.step.shell))).joined(separator: "\n")
    }
}

/// Plans from a sysfs tree: pure apart from reading it, so that tests give
/// fixture trees.
public struct GPUPlanner: Sendable {
    /// The supervisor service that draws on the display: Nexus, the HUD.
    public static let hud = "nexus"

    public var tree: PCITree
    /// The modules a modalias resolves to (ModuleLoader's index, given by
    /// the command: daemons and this core do not import feature targets).
    public var modulesFor: @Sendable (String) -> [String]

    public init(tree: PCITree, modulesFor: @escaping @Sendable (String) -> [String]) {
        self.tree = tree
        self.modulesFor = modulesFor
    }

    /// The functions asked for, checked: each exists, has an IOMMU group,
    /// and every other member of its group (bridges aside) is asked for too.
    /// Non-display functions first (the audio function before its VGA).
    func checked(_ addresses: [String], direction: GPUPlan.Direction) throws(SpiritError) -> (functions: [PCIFunction], preflight: [String]) {
        guard !addresses.isEmpty else { throw SpiritError("no device given (--device BDF)") }
        var functions: [PCIFunction] = []
        for address in addresses where !functions.contains(where: { $0.address == address }) {
            functions.append(try tree.function(address))
        }
        var preflight: [String] = []
        var groups: [String] = []
        for function in functions {
            guard let group = function.iommuGroup else {
                throw SpiritError("\(function.address) is in no IOMMU group: is the IOMMU on (intel_iommu=on or amd_iommu=on on the "
                                  + "kernel command line, VT-d or AMD-Vi in the firmware)?")
            }
            if groups.contains(group) { continue }
            groups.append(group)
            let members = tree.groupMembers(group)
            let missing = members.filter { member in
                !addresses.contains(member) && !((try? tree.function(member))?.isBridge ?? false)
            }
            if !missing.isEmpty {
                let named = missing.map { member in "\(member) (\((try? tree.function(member))?.kind ?? "?"))" }
                throw SpiritError("iommu group \(group) also holds \(named.joined(separator: ", ")): the whole group moves "
                                  + "together; add --device for each")
            }
            preflight.append("iommu group \(group) = \(members.joined(separator: " ")) (all listed)")
        }
        for function in functions {
            var line = "\(function.address) \(function.kind) (0x\(String(function.classCode, radix: 16, uppercase: false))) "
                + "driver \(function.driver ?? "none")"
            if function.driverOverride != nil { line += ", driver_override \(function.driverOverride!)" }
            if direction == .passthrough, function.classCode >> 8 == 0x0300 {
                line += "; VGA: vfio-pci evicts firmware framebuffers, which never come back"
            }
            for card in function.cards {
                let holders = tree.cardHolders(card)
                line += "; /dev/dri/\(card): " + (holders.isEmpty ? "unused" : holders.joined(separator: ", "))
            }
            preflight.append(line)
        }
        let ordered = functions.filter { !$0.isDisplay } + functions.filter(\.isDisplay)
        return (direction == .passthrough ? ordered : ordered.reversed(), preflight)
    }

    /// vfio-pci for every function of the groups: the HUD stopped first when
    /// a display moves (its reason names `vm` when the move is for one),
    /// vfio-pci loaded if it is not registered.
    public func passthrough(_ addresses: [String], for vm: String? = nil) throws(SpiritError) -> GPUPlan {
        let (functions, preflight) = try checked(addresses, direction: .passthrough)
        let moving = functions.filter { $0.driver != "vfio-pci" }
        var steps: [GPUPlannedStep] = []
        guard !moving.isEmpty else { return GPUPlan(direction: .passthrough, preflight: preflight, steps: []) }
        if !tree.driverRegistered("vfio-pci") { steps.append(GPUPlannedStep(.loadModule("vfio-pci"))) }
        if let display = moving.first(where: \.isDisplay) {
            let reason = vm.map { "gpu \(display.address) passed through to VM \($0) (spirit gpu passthrough \($0))" }
                ?? "gpu \(display.address) passed through (spirit gpu passthrough)"
            steps.append(GPUPlannedStep(.stopService(Self.hud, reason: reason), undo: .startService(Self.hud)))
            for function in moving {
                for card in function.cards { steps.append(GPUPlannedStep(.waitCardReleased(card))) }
            }
        }
        for function in moving {
            let path = PCITree.devicePath(function.address)
            let override = function.driverOverride ?? "\n"
            steps.append(GPUPlannedStep(.write(path: path + "/driver_override", value: "vfio-pci"),
                                        undo: .write(path: path + "/driver_override", value: override)))
            if let driver = function.driver {
                steps.append(GPUPlannedStep(.write(path: "/sys/bus/pci/drivers/\(driver)/unbind", value: function.address,
                                                   comment: "from \(driver)"),
                                            undo: .rebind(address: function.address, driver: driver, override: override)))
            }
            steps.append(GPUPlannedStep(.write(path: "/sys/bus/pci/drivers_probe", value: function.address)))
            steps.append(GPUPlannedStep(.expectDriver(address: function.address, driver: "vfio-pci")))
        }
        return GPUPlan(direction: .passthrough, preflight: preflight, steps: steps)
    }

    /// The native drivers back: out of vfio-pci, `driver_override` cleared,
    /// probed, the native module loaded if it is not (never unloaded), the
    /// HUD started when a display came back.
    public func giveBack(_ addresses: [String]) throws(SpiritError) -> GPUPlan {
        let (functions, preflight) = try checked(addresses, direction: .return)
        let moving = functions.filter { $0.driver == "vfio-pci" || $0.driverOverride == "vfio-pci" }
        var steps: [GPUPlannedStep] = []
        for function in moving {
            let path = PCITree.devicePath(function.address)
            if function.driver == "vfio-pci" {
                steps.append(GPUPlannedStep(.write(path: "/sys/bus/pci/drivers/vfio-pci/unbind", value: function.address, comment: "from vfio-pci"),
                                            undo: .rebind(address: function.address, driver: "vfio-pci", override: function.driverOverride ?? "\n")))
            }
            if let override = function.driverOverride {
                steps.append(GPUPlannedStep(.write(path: path + "/driver_override", value: "\n"),
                                            undo: .write(path: path + "/driver_override", value: override)))
            }
            steps.append(GPUPlannedStep(.write(path: "/sys/bus/pci/drivers_probe", value: function.address,
                                               comment: "binds the native driver if it is loaded")))
            for module in modulesFor(function.modalias) where module != "vfio_pci" && !tree.moduleLoaded(module) {
                steps.append(GPUPlannedStep(.loadModule(module)))
            }
            steps.append(GPUPlannedStep(.expectDriver(address: function.address, driver: nil)))
        }
        if moving.contains(where: \.isDisplay) {
            steps.append(GPUPlannedStep(.startService(Self.hud),
                                        undo: .stopService(Self.hud, reason: "gpu return failed")))
        }
        return GPUPlan(direction: .return, preflight: preflight, steps: steps)
    }
}
