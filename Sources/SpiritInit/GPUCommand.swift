import Glibc
import ModuleLoader
import SpiritCommands
import SpiritCore
import Supervisor
import VMManager

/// `spirit gpu …`: PCI functions to vfio-pci and back as a plan of sysfs
/// steps (VMManager's GPUPlanner and GPUController). Modules load through
/// ModuleLoader in this process: the command may import feature targets,
/// the VM manager's core may not, so it sees them as a `ModuleLoad`.
enum GPUCommand {
    /// Its lines of the usage (in the program's too, which both binaries print).
    static let commands = Usage.gpuCommands
    static let usage = "usage: spirit gpu COMMAND\n" + commands + "\nExit codes: 0 success, 100 usage error or refused plan, 111 system failure."

    static func fail(_ message: String) -> Int32 { Usage.fail(message, usage: usage) }

    /// ModuleLoader behind the core's protocol.
    struct Modules: ModuleLoad {
        let index: ModuleIndex?
        let release: String

        func load(_ name: String) throws {
            guard let index else { throw SpiritError("no module index for kernel \(release): unable to load \(name)") }
            let plan = index.plan([name])
            if let missing = plan.missing.first { throw SpiritError("module \(missing): not found for kernel \(release)") }
            for result in ParallelLoader(loading: ModuleLoading(release: release)).load(plan) {
                if case .failed(let message) = result.outcome { throw SpiritError(message) }
            }
        }
    }

    static func run(_ arguments: [String]) -> Int32 {
        var words = arguments[...]
        guard let verb = words.popFirst() else { return fail("gpu needs status, plan, passthrough or return") }
        if ["help", "--help", "-h"].contains(verb) {
            print(usage)
            return 0
        }
        var direction: GPUPlan.Direction?
        if verb == "plan" {
            guard let word = words.popFirst(), let given = GPUPlan.Direction(rawValue: word) else {
                return fail("gpu plan takes passthrough or return")
            }
            direction = given
        }
        var root = ""
        var devices: [String] = []
        var vm: String?
        var recordedOnly = false
        var dryRun = verb == "plan"
        while let word = words.popFirst() {
            switch word {
            case "--root":
                guard let value = words.popFirst() else { return fail("--root takes a DIR") }
                root = value
            case "--device":
                guard let value = words.popFirst() else { return fail("--device takes a PCI address (0000:01:00.0)") }
                // 01:00.0 is in PCI domain 0000, as lspci shows it.
                devices.append(value.split(separator: ":").count == 2 ? "0000:" + value : value)
            case "--dry-run": dryRun = true
            // What the VM manager runs when a VM's QEMU ends: only what a passthrough recorded.
            case "--recorded-only": recordedOnly = true
            case let name where vm == nil && !name.hasPrefix("-") && ["plan", "passthrough", "return"].contains(verb):
                guard VMDefinition.isValidName(name) else { return fail("'\(name)' is not a VM name") }
                vm = name
            default: return fail("unknown argument '\(word)'")
            }
        }
        if vm != nil, !devices.isEmpty { return fail("a VM or --device, not both") }
        if verb == "passthrough", vm == nil, devices.isEmpty { return fail("gpu passthrough takes a VM or --device BDF…") }
        if recordedOnly, verb != "return" || vm == nil { return fail("--recorded-only is for gpu return VM") }
        let tree = PCITree(root: root)
        let release = Kernel.release()
        let index = try? ModuleIndex.load(root: root, release: release)
        let planner = GPUPlanner(tree: tree, modulesFor: { alias in index?.lookup(alias) ?? [] })
        let controller = GPUController(sysfs: SystemPCISysfs(root: root), modules: Modules(index: index, release: release),
                                       services: SupervisorServiceControl(socket: SupervisorPaths(root: root).control))
        let vmPaths = VMPaths(root: getenv("SPIRIT_VM_ROOT").map { String(cString: $0) } ?? "")
        if ["passthrough", "return"].contains(verb), !dryRun, vm != nil || (verb == "return" && devices.isEmpty) {
            return handover(verb == "passthrough" ? .passthrough : .return, vm: vm, recordedOnly: recordedOnly,
                            tree: tree, planner: planner, controller: controller, paths: vmPaths)
        }
        if let vm {
            do {
                devices = try GPUHandover.devices(of: try definition(vm, vmPaths), in: tree)
            } catch {
                Console.tool.error("gpu: \(error.description)")
                return error.code
            }
        }
        switch verb {
        case "status":
            guard devices.isEmpty else { return fail("gpu status takes no --device") }
            print(status(tree))
            return 0
        case "plan", "passthrough", "return":
            let direction = direction ?? (verb == "return" ? .return : .passthrough)
            let plan: GPUPlan
            do {
                plan = try direction == .passthrough ? planner.passthrough(devices, for: vm) : planner.giveBack(devices)
            } catch {
                Console.tool.error("gpu: \(direction.rawValue): \(error)")
                return 100
            }
            if dryRun {
                print(plan.shell)
                return 0
            }
            let start = Kernel.bootTimeMicros()
            do {
                try controller.run(plan)
            } catch {
                Console.tool.error("gpu: \(error)")
                return 111
            }
            let took = (Kernel.bootTimeMicros() - start) / 1000
            let now = devices.map { "\($0) \(tree.boundDriver($0) ?? "none")" }.joined(separator: ", ")
            print("\(direction.rawValue): " + (plan.steps.isEmpty ? "nothing to do: " : "") + "\(now) (\(took) ms, \(plan.steps.count) steps)")
            return 0
        default:
            return fail("unknown gpu command '\(verb)'")
        }
    }

    /// VM NAME's definition, read as the VM manager reads it.
    static func definition(_ name: String, _ paths: VMPaths) throws(VMError) -> VMDefinition {
        let path = paths.definition(name)
        do {
            return try VMDefinition.parse(try Kernel.readText(path), path: path)
        } catch let error as ConfigError {
            throw VMError(error.description, code: 100)
        } catch {
            throw VMError("no VM named '\(name)': \(error) (define it: spirit vm define FILE)", code: 100)
        }
    }

    /// `gpu passthrough VM`, `gpu return [VM]`: GPUHandover over the VM
    /// manager's socket, the records in /run/spirit/vms and this sysfs.
    static func handover(_ direction: GPUPlan.Direction, vm: String?, recordedOnly: Bool, tree: PCITree, planner: GPUPlanner,
                         controller: GPUController, paths: VMPaths) -> Int32 {
        final class Took { var micros: Int64 = 0 }
        let took = Took()
        let records = GPURecordFiles(paths: paths)
        let handover = GPUHandover(
            plan: { direction, devices, vm throws(SpiritError) in
                direction == .passthrough ? try planner.passthrough(devices, for: vm) : try planner.giveBack(devices)
            },
            run: { plan throws(GPUFailure) in
                let start = Kernel.bootTimeMicros()
                defer { took.micros = Kernel.bootTimeMicros() - start }
                try controller.run(plan)
            },
            vms: VMClient(paths: paths), records: records)
        func moved(_ plan: GPUPlan, _ devices: [String]) -> String {
            let now = devices.map { "\($0) \(tree.boundDriver($0) ?? "none")" }.joined(separator: ", ")
            return (plan.steps.isEmpty ? "nothing to do: " : "") + "\(now) (\(took.micros / 1000) ms, \(plan.steps.count) steps)"
        }
        do throws(VMError) {
            switch (direction, vm) {
            case (.passthrough, let name?):
                let devices = try GPUHandover.devices(of: try definition(name, paths), in: tree)
                let start = Kernel.bootTimeMicros()
                let done = try handover.passthrough(name, devices: devices)
                print("passthrough to \(name): \(moved(done.plan, devices)); \(done.started) "
                      + "(\((Kernel.bootTimeMicros() - start) / 1000) ms with the start)")
            case (.return, let name?):
                let fallback = try? GPUHandover.devices(of: try definition(name, paths), in: tree)
                guard let plan = try handover.giveBack(name, fallback: fallback, recordedOnly: recordedOnly) else {
                    print("return from \(name): nothing was handed over")
                    return 0
                }
                print("return from \(name): \(moved(plan, plan.devices))")
            case (.return, nil):
                let names = records.names()
                if names.isEmpty { print("return: nothing is handed over to a VM (gpu return --device BDF for a device moved by hand)") }
                for name in names {
                    guard let plan = try handover.giveBack(name, fallback: nil, recordedOnly: true) else { continue }
                    print("return from \(name): \(moved(plan, plan.devices))")
                }
            case (.passthrough, nil):
                return fail("gpu passthrough takes a VM or --device BDF…")
            }
            return 0
        } catch {
            Console.tool.error("gpu: \(error.description)")
            return error.code
        }
    }

    /// Display controllers and whatever is on (or meant for) vfio-pci.
    static func status(_ tree: PCITree) -> String {
        let shown = tree.functions().filter { $0.isDisplay || $0.driver == "vfio-pci" || $0.driverOverride != nil }
        guard !shown.isEmpty else { return "no display controller and nothing on vfio-pci" }
        return shown.map { function in
            var fields = ["\(function.address)  \(function.kind) \(function.vendor.dropFirst(2)):\(function.device.dropFirst(2))"]
            if let group = function.iommuGroup {
                fields.append("iommu group \(group) (\(tree.groupMembers(group).joined(separator: " ")))")
            } else {
                fields.append("no iommu group")
            }
            fields.append("driver \(function.driver ?? "none")" + (function.driverOverride.map { " (override \($0))" } ?? ""))
            for card in function.cards {
                let holders = tree.cardHolders(card)
                fields.append("\(card): " + (holders.isEmpty ? "unused" : holders.joined(separator: ", ")))
            }
            return fields.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

extension PCITree {
    /// The driver now bound to `address`.
    func boundDriver(_ address: String) -> String? {
        (try? function(address))?.driver
    }
}
