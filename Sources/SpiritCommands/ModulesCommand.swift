import ModuleLoader
import SpiritCore

/// `spirit modules …`: the module plan and lookups, on the host without
/// root (for `make initramfs` and the oracle test) or in a running system.
enum ModulesCommand {
    /// Its lines in `spirit help`.
    static let commands = """
      modules plan [--root DIR] [--kernel VERSION] [--config DIR] [--files] NAME...
                      the load plan: waves of modules that load in parallel, each after what it needs
      modules lookup [--root DIR] [--kernel VERSION] [--all-aliases] NAME... | -
                      what a name or modalias resolves to, as kmod resolves it (- reads them from stdin)
      modules load [--root DIR] [--kernel VERSION] [--jobs N] NAME...
                      load modules and what they need, in parallel waves (like modprobe -a); N at once (default: CPUs)
      modules missing [--root DIR] [--kernel VERSION]
                      the devices no driver claimed and no module matches (what is missing to reach them);
                      ACPI, platform and CPU nodes and PCI host and ISA bridges, which need none, are only counted
      modules deps [--root DIR] [--kernel VERSION] [NAME...]
                      each module's dependencies from modules.dep
      modules index DIR
                      write DIR/modules.spirit, the binary index the loader reads at boot instead of the text files
                      depmod wrote in DIR (a lib/modules/<release> directory); for make initramfs and make rootfs
      modules coldplug [--root DIR] [--kernel VERSION] [--watch]
                      stage 2's drivers: the priority groups and every present device's driver (graphics
                      held back with crom.gpu=passthrough); --watch: then devices that appear, until stopped
    Every command but index reads modules.spirit where it is there and whole, else the text files;
    --binary-index makes that an error instead (for tests).
    """

    /// What a usage error of `spirit modules` prints: its own commands, not
    /// the whole program's.
    static let usage = "usage: spirit modules COMMAND\n" + commands
        + "\nExit codes: 0 success, 1 a module not found or not loaded, 100 usage error, 111 system failure."

    static func fail(_ message: String) -> Int32 { Usage.fail(message, usage: usage) }

    enum Verb: String {
        case plan, lookup, load, missing, deps, coldplug, index
    }

    static func run(_ arguments: [String]) -> Int32 {
        let console = Console.tool
        guard let word = arguments.first else {
            return fail("modules needs plan, lookup, load, missing, deps, coldplug or index")
        }
        if ["help", "--help", "-h"].contains(word) {
            print(usage)
            return 0
        }
        // Before the module index is read: a mistyped verb is a usage error
        // wherever there is no kernel to read.
        guard let verb = Verb(rawValue: word) else {
            return fail("unknown modules command '\(word)'")
        }
        var root = ""
        var release = Kernel.release()
        var configDirectories: [String]?
        var filesOnly = false
        var allAliases = false
        var jobs = 0
        var watch = false
        var binaryOnly = false
        var names: [String] = []
        var rest = arguments.dropFirst()
        while let word = rest.popFirst() {
            switch word {
            case "--jobs":
                guard let value = rest.popFirst(), let number = Int(value), number > 0 else {
                    return fail("--jobs takes a whole number above 0")
                }
                jobs = number
            case "--root", "--kernel", "--config":
                guard let value = rest.popFirst() else {
                    return fail("\(word) needs a value")
                }
                if word == "--root" { root = value } else if word == "--kernel" { release = value } else {
                    configDirectories = (configDirectories ?? []) + [value]
                }
            case "--files": filesOnly = true
            case "--all-aliases": allAliases = true
            case "--watch": watch = true
            case "--binary-index": binaryOnly = true
            case "-":
                // Names or modaliases on standard input, one a line.
                while let line = readLine() { if !line.isEmpty { names.append(line) } }
            default:
                if word.hasPrefix("--") {
                    return fail("unknown option \(word)")
                }
                names.append(word)
            }
        }
        if verb == .index {
            guard names.count == 1 else { return fail("modules index takes one directory (lib/modules/<release>)") }
            do {
                let written = try ModuleIndex.writeBinary(names[0])
                console.info("\(written.path): \(written.bytes) bytes")
                return 0
            } catch {
                console.error("\(error)")
                return 111
            }
        }
        let index: ModuleIndex
        var binaryProblem: ModuleIndex.BinaryIndexProblem?
        do {
            index = try ModuleIndex.load(root: root, release: release, configDirectories: configDirectories) { binaryProblem = $0 }
        } catch {
            console.error("\(error) — is there a kernel \(release) under \(root.isEmpty ? "/" : root)?")
            return 111
        }
        switch binaryProblem {
        case .refused(let reason)?:
            // A missing one is normal on the host (a kernel tree as depmod left it); a refused one is news.
            if binaryOnly {
                console.error(reason)
                return 111
            }
            console.warning(binaryProblem!.description)
        case .missing(let path)?:
            if binaryOnly {
                console.error("no binary module index at \(path) (spirit modules index DIR writes one)")
                return 111
            }
            // Stage 2's modules service on an image built before the binary index: said once, in its log.
            if verb == .coldplug { console.info(binaryProblem!.description) }
        case nil: break
        }
        for problem in index.config.problems { console.warning(problem) }
        switch verb {
        case .plan:
            let plan = index.plan(names)
            if filesOnly {
                for module in plan.modules { print(module.path) }
            } else {
                for (number, wave) in plan.waves.enumerated() {
                    print("wave \(number + 1):")
                    for module in wave {
                        print("  \(module.name)\t\(module.path)" + (module.parameters.isEmpty ? "" : "\t\(module.parameters)"))
                    }
                }
                if !plan.builtin.isEmpty { print("built in: " + plan.builtin.joined(separator: " ")) }
                if !plan.blacklisted.isEmpty { print("blacklisted: " + plan.blacklisted.joined(separator: " ")) }
            }
            for name in plan.missing { console.warning("module \(name): not found for kernel \(release)") }
            return plan.missing.isEmpty ? 0 : 1
        case .lookup:
            let queries = allAliases ? index.globAliases.map(\.pattern) + index.exactAliases.keys.sorted() : names
            for query in queries {
                print(query + "\t" + index.lookup(query).joined(separator: " "))
            }
            return 0
        case .load:
            // Like modprobe -a: the names and what they need, in parallel
            // waves, blacklists and options applied.
            let plan = index.plan(names)
            for name in plan.missing { console.warning("module \(name): not found for kernel \(release)") }
            var failed = 0
            for result in ParallelLoader(loading: ModuleLoading(root: root, release: release), jobs: jobs).load(plan) {
                if case .failed(let message) = result.outcome {
                    failed += 1
                    console.warning(message)
                }
            }
            return plan.missing.isEmpty && failed == 0 ? 0 : 1
        case .missing:
            // The first complaint users of every initramfs make: a device
            // no driver claimed and no module of this kernel matches.
            // ACPI and platform nodes and chipset bridges are counted, not listed: they need none.
            let unclaimed = Coldplug.unclaimed(Coldplug.devices(), modulesFor: index.lookup)
            for device in unclaimed.needingDriver {
                print("\(device.path)\t\(device.modalias)")
            }
            console.info("\(unclaimed.needingDriver.count) device(s) without a driver and with no module for them in "
                         + "\(root.isEmpty ? "/" : root)lib/modules/\(release)")
            if !unclaimed.needingNone.isEmpty {
                console.info("\(unclaimed.needingNone.count) ACPI, platform and CPU node(s) and PCI host and ISA bridge(s) "
                             + "without a driver: none needed")
            }
            return 0
        case .deps:
            for name in (names.isEmpty ? index.paths.keys.sorted() : names.map { moduleName($0) }) {
                print(name + "\t" + (index.dependencies[name] ?? []).joined(separator: " "))
            }
            return 0
        case .index:
            return 0  // written above, before any index is read
        case .coldplug:
            return coldplug(index: index, root: root, release: release, watch: watch, console: console)
        }
    }

    /// Stage 2's drivers (the `modules` service): what stage 1 did with the
    /// initramfs's few modules, again with the image's whole set: the
    /// priority groups of /etc/modules-load.d/spirit.conf and the drivers
    /// of every device present, graphics held back with
    /// crom.gpu=passthrough. Ready (READY=1) after that pass; then the
    /// hypervisor's modules (kvm), which claim no device and nothing at
    /// `spirit: ready` waits for; with --watch it then loads the drivers of
    /// devices that appear, until stopped.
    static func coldplug(index: ModuleIndex, root: String, release: String, watch: Bool, console: Console) -> Int32 {
        let config = BootConfig.current()
        let held = config.heldModuleGroups(console: console)
        let uevents: UeventSocket?
        if watch {
            do {
                uevents = try UeventSocket()
            } catch {
                console.error("\(error): unable to hear of devices that appear")
                return 111
            }
        } else {
            uevents = nil
        }
        let priority = PriorityList.read(root: root)
        let modules = BootModules(index: index, loader: ParallelLoader(loading: ModuleLoading(root: root, release: release)),
                                  console: console, timeline: Timeline(process: "modules"), stepPrefix: "stage2-modules",
                                  holding: held, hypervisorLater: true)
        let tally = modules.run(priority: priority, required: [], uevents: uevents)
        console.info("modules: \(tally)")
        ServiceNotify.ready()
        // Behind what `spirit: ready` may still wait for (the HUD's first
        // frame, in a cgroup of its own): a nice value would rank threads
        // only inside this service's cgroup, so its cpu.weight goes down
        // for the while, and back.
        let weight = CgroupWeight.own()
        weight?.set("10")
        let hypervisor = modules.loadHypervisor(priority: priority)
        weight?.restore()
        if hypervisor.loaded + hypervisor.failed + hypervisor.missing > 0 { console.info("modules: the hypervisor's: \(hypervisor)") }
        guard watch else { return tally.failed + hypervisor.failed == 0 ? 0 : 1 }
        // The uevent thread loads drivers from here on.
        while true { Kernel.sleep(milliseconds: 3_600_000) }
    }
}

extension BootConfig {
    /// The module groups no stage loads: graphics with
    /// crom.gpu=passthrough, so that the GPU stays free for a VM. Said on
    /// the console.
    func heldModuleGroups(console: Console) -> Set<ModuleGroup> {
        guard gpuPassthrough else { return [] }
        console.info("modules: graphics drivers held back (crom.gpu=passthrough)")
        return [.graphics]
    }

    /// Stage 1 also holds the virtualization group (vfio-pci, kvm and what
    /// coldplug picks from the CPU's modalias): nothing that finds an image
    /// needs it, and it cost about 1 s of stage 1 under TCG, mostly one
    /// serial chain ending in kvm.ko (research/boot-performance.md). Stage
    /// 2's modules service loads vfio-pci first and the hypervisor's
    /// modules once it is ready. With crom.gpu=passthrough it
    /// stays first in stage 1: vfio-pci must claim the GPU before any
    /// graphics driver could.
    func stageOneHeldModuleGroups(console: Console) -> Set<ModuleGroup> {
        let held = heldModuleGroups(console: console)
        return gpuPassthrough ? held : held.union([.virtualization])
    }
}

/// The cpu.weight of this service's cgroup v2 (the supervisor's
/// /sys/fs/cgroup/spirit/NAME, from /proc/self/cgroup), lowered for a while
/// and put back; nil outside the supervisor's tree (a command run by hand).
struct CgroupWeight {
    let path: String
    let before: String

    static func own() -> CgroupWeight? {
        guard let text = try? Kernel.readText("/proc/self/cgroup"),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("0::/spirit/") }) else { return nil }
        let path = "/sys/fs/cgroup" + line.dropFirst(3) + "/cpu.weight"
        guard let before = try? Kernel.readText(path) else { return nil }
        return CgroupWeight(path: path, before: before)
    }

    func set(_ weight: String) { try? Kernel.writeFile(path, weight + "\n") }
    func restore() { try? Kernel.writeFile(path, before) }
}

/// The hypervisor's modules (kvm, and kvm_intel or kvm_amd for this CPU),
/// loaded by the VM manager when a VM wants /dev/kvm before stage 2's
/// modules service has loaded them (it does so after `spirit: ready`).
public enum HypervisorModules {
    /// Loads them from this system's modules; says what it did, or why not.
    public static func load() -> String {
        let release = Kernel.release()
        let index: ModuleIndex
        do {
            index = try ModuleIndex.load(root: "", release: release)
        } catch {
            return "no module index for kernel \(release): \(error)"
        }
        let modules = BootModules(index: index, loader: ParallelLoader(loading: ModuleLoading(root: "", release: release)),
                                  console: Console.tool, timeline: Timeline(process: "vm"), stepPrefix: "vm")
        let priority = PriorityList.read()
        return "the hypervisor's modules: \(modules.loadHypervisor(priority: priority))"
    }
}
