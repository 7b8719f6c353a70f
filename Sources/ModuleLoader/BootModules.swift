import SpiritCore

/// The modules of a boot stage: the priority groups in order
/// (virtualization, storage with the boot list, network, graphics), each
/// with the drivers coldplug found for its class of device; then coldplug
/// again while loaded drivers reveal new devices (virtio_pci brings the
/// virtio bus); then, for as long as the process lives, the drivers of
/// devices that appear later, from uevents. Stage 1 runs it with the
/// initramfs's modules, stage 2 (`spirit modules coldplug`) with the
/// image's. A held group (graphics, with crom.gpu=passthrough) is never
/// loaded, so that its devices stay free for a VM.
public struct BootModules: Sendable {
    let index: ModuleIndex
    let loader: ParallelLoader
    let console: Console
    let timeline: Timeline
    let stepPrefix: String
    let held: Set<ModuleGroup>
    let together: Set<ModuleGroup>
    let hypervisorLater: Bool
    static let maximumRescans = 8

    /// `together`: groups next to each other in the priority order that
    /// load as one plan, their modules in parallel (listed in priority
    /// order, so the first strands start with the higher group). Stage 1
    /// loads storage and network together: a NIC driver's probe (e1000:
    /// 0.4 s under TCG) then overlaps the storage drivers', and the link
    /// has had time to negotiate by the cascade's start (QEMU's e1000
    /// opened within its 0.5 s autonegotiation reports the link only at the
    /// driver's next 2 s watchdog tick).
    ///
    /// `hypervisorLater` (stage 2): `run` leaves out the hypervisor's
    /// modules (kvm, kvm_intel, kvm_amd), for `loadHypervisor` once the
    /// service is ready. They claim no device, so the one hard edge of the
    /// priority order (vfio-pci before any graphics driver) holds without
    /// them, and their serial chain (irqbypass, kvm, kvm_amd: about 0.45 s
    /// under TCG) no longer stands between the HUD and its graphics driver
    /// (research/boot-performance.md §1.3).
    public init(index: ModuleIndex, loader: ParallelLoader, console: Console, timeline: Timeline,
                stepPrefix: String = "modules", holding held: Set<ModuleGroup> = [], together: Set<ModuleGroup> = [],
                hypervisorLater: Bool = false) {
        self.index = index
        self.loader = loader
        self.console = console
        self.timeline = timeline
        self.stepPrefix = stepPrefix
        self.held = held
        self.together = together
        self.hypervisorLater = hypervisorLater
    }

    /// A module that makes the CPU's hypervisor (/dev/kvm) and claims no
    /// device: it lives under the kernel's arch/*/kvm.
    func isHypervisor(_ name: String) -> Bool {
        guard let path = index.paths[moduleName(name)] else { return false }
        return ModuleGroup.isHypervisor(path: path)
    }

    /// Left for `loadHypervisor`.
    func isLater(_ name: String) -> Bool { hypervisorLater && isHypervisor(name) }

    /// The hypervisor's modules this machine wants: those spirit.conf lists
    /// under virtualization (kvm), and those made for this CPU's features
    /// (kvm_intel with VMX, kvm_amd with SVM), from its modalias.
    func hypervisorModules(priority: PriorityList, modaliases: Set<String>) -> [String] {
        let found = drivers(for: modaliases.filter { $0.hasPrefix("cpu:") })[.virtualization] ?? []
        let listed = wanted(priority.names[.virtualization] ?? [], fitting: Set(found), bound: bound)
        var seen: Set<String> = []
        return (listed + found).filter { isHypervisor($0) && seen.insert(moduleName($0)).inserted }
    }

    /// Loads the hypervisor's modules (the `hypervisor` step): stage 2's
    /// modules service once it is ready, or the VM manager when a VM wants
    /// /dev/kvm before that. Two loads of one module at once are safe: the
    /// kernel makes the second wait for the first and says it is there.
    /// One after another on the calling thread (the chain irqbypass, kvm,
    /// kvm_amd is serial anyway): one vCPU at most, beside the HUD's first
    /// frame.
    public func loadHypervisor(priority: PriorityList) -> Tally {
        let names = hypervisorModules(priority: priority, modaliases: Coldplug.modaliases())
        var tally = Tally()
        guard !names.isEmpty else { return tally }
        var done: Set<String> = []
        timeline.measure("\(stepPrefix):hypervisor", detail: { "\($0) loaded" }) { () -> Int in
            load(names, quietlyMissing: [], done: &done, tally: &tally, using: ParallelLoader(loading: loader.loading, jobs: 1))
            return tally.loaded
        }
        return tally
    }

    /// The groups in priority order, those loaded together in one step.
    var steps: [[ModuleGroup]] {
        var steps: [[ModuleGroup]] = []
        for group in ModuleGroup.allCases where !held.contains(group) {
            if let last = steps.last?.last, together.contains(last), together.contains(group) {
                steps[steps.count - 1].append(group)
            } else {
                steps.append([group])
            }
        }
        return steps
    }

    public struct Tally: Sendable, CustomStringConvertible {
        public var loaded = 0, present = 0, notForThisMachine = 0, failed = 0, missing = 0

        public var description: String {
            "\(loaded) loaded, \(present) already there, \(notForThisMachine) not for this machine, \(failed) failed, \(missing) not found"
        }
    }

    /// The modules whose aliases name CPU features (`cpu:type:…:feature:…`),
    /// and those whose aliases name devices on a bus (`pci:…`, `usb:…`):
    /// drivers, wanted only where such a device is (or comes: uevents). One
    /// pass over the aliases for both.
    var bound: (cpu: Set<String>, device: Set<String>) {
        var cpu: Set<String> = [], device: Set<String> = []
        for alias in index.globAliases {
            if alias.pattern.hasPrefix("cpu:") {
                cpu.insert(alias.module)
            } else if alias.pattern.hasPrefix("pci:") || alias.pattern.hasPrefix("usb:") {
                device.insert(alias.module)
            }
        }
        return (cpu, device)
    }

    /// Of a group's listed names, those this machine wants now. A module
    /// made for a CPU feature (kvm_intel, kvm_amd) only where the CPU's
    /// modalias matches it: on other machines the kernel refuses it with a
    /// warning on the console at every try. A driver (nvme, ahci,
    /// usb_storage) only for a device that is there; one that comes later
    /// (a stick) gets it from its uevent (research/boot-performance.md:
    /// storage drivers for absent hardware cost every boot). Anything else
    /// listed (vfio-pci, kvm) always.
    func wanted(_ names: [String], fitting: Set<String>, bound: (cpu: Set<String>, device: Set<String>)) -> [String] {
        names.filter { name in
            let module = moduleName(name)
            guard !fitting.contains(module) else { return true }
            if bound.cpu.contains(module) {
                console.debug("module \(name): not for this CPU; skipped")
                return false
            }
            if bound.device.contains(module) {
                console.debug("module \(name): no device for it yet; loaded when one appears")
                return false
            }
            return true
        }
    }

    /// Drivers for these modaliases, by group; blacklisted ones left out.
    func drivers(for aliases: Set<String>) -> [ModuleGroup: [String]] {
        var groups: [ModuleGroup: [String]] = [:]
        for alias in aliases.sorted() {
            for module in index.lookup(alias) where !index.config.blacklist.contains(module) {
                guard let path = index.paths[module] else { continue }
                let group = ModuleGroup.of(path: path)
                if !held.contains(group) { groups[group, default: []].append(module) }
            }
        }
        return groups
    }

    /// Loads everything; `required` are names that must be there (the boot
    /// list and crom.modules): a missing one is a warning. The priority
    /// list may name modules this initramfs does not carry: a debug line.
    /// `activity` hears of every uevent and of each load of a late device's
    /// driver, so that the boot sources know when devices have settled.
    public func run(priority: PriorityList, required: [String], uevents: UeventSocket?, activity: DeviceActivity? = nil) -> Tally {
        var tally = Tally()
        var done: Set<String> = []
        var seen = Coldplug.modaliases()
        let found = drivers(for: seen)
        let fitting = Set(found.values.joined())
        let bound = self.bound
        for step in steps {
            // The drivers of devices that are there first: their probes
            // (an ATA port scan, a NIC's reset) are the long loads, and the
            // scheduler starts the plan's modules in order as workers free
            // up; then the listed modules and the boot list.
            var listed: [String] = [], drivers: [String] = [], others: [String] = [], loading: [ModuleGroup] = []
            for group in step {
                let mine = wanted(priority.names[group] ?? [], fitting: fitting, bound: bound).filter { !isLater($0) }
                let theirs = (found[group] ?? []).filter { !isLater($0) }
                drivers += theirs
                others += mine + (group == .storage ? required : [])
                listed += mine
                if !mine.isEmpty || !theirs.isEmpty || (group == .storage && !required.isEmpty) { loading.append(group) }
            }
            let names = drivers + others
            guard !names.isEmpty else { continue }
            let stepName = loading.map(\.description).joined(separator: "+")
            timeline.measure("\(stepPrefix):\(stepName)", detail: { "\($0.loaded) loaded" }) { () -> Tally in
                let before = tally
                load(names, quietlyMissing: Set(listed), done: &done, tally: &tally)
                var delta = Tally()
                delta.loaded = tally.loaded - before.loaded
                return delta
            }
        }
        timeline.measure("\(stepPrefix):coldplug", detail: { "\($0) rescans" }) { () -> Int in
            var passes = 0
            while passes < Self.maximumRescans {
                let now = Coldplug.modaliases()
                let new = now.subtracting(seen)
                seen = now
                guard !new.isEmpty else { break }
                passes += 1
                let byGroup = drivers(for: new)
                let names = ModuleGroup.allCases.flatMap { byGroup[$0] ?? [] }.filter { !done.contains($0) && !isLater($0) }
                if names.isEmpty { continue }
                load(names, quietlyMissing: [], done: &done, tally: &tally)
            }
            return passes
        }
        activity?.coldplugDone(usbStorage: seen.contains(where: Coldplug.isUSBMassStorage))
        if let uevents {
            activity?.noteEvent()
            watch(uevents, alreadyLoaded: done, activity: activity)
        } else {
            activity?.stopListening()
        }
        return tally
    }

    func load(_ names: [String], quietlyMissing: Set<String>, done: inout Set<String>, tally: inout Tally, using: ParallelLoader? = nil) {
        let loader = using ?? self.loader
        let plan = index.plan(names)
        for name in plan.missing {
            if quietlyMissing.contains(name) {
                console.debug("module \(name): not in this initramfs")
            } else {
                tally.missing += 1
                console.warning("module \(name): not found for kernel \(Kernel.release()); skipped")
            }
        }
        for result in loader.load(plan, skip: done) {
            done.insert(result.module.name)
            switch result.outcome {
            case .loaded:
                tally.loaded += 1
                console.debug("loaded \(result.module.name)")
            case .alreadyLoaded:
                tally.present += 1
            case .notForThisMachine(let message):
                tally.notForThisMachine += 1
                console.debug(message + " (no such device here)")
            case .failed(let message):
                tally.failed += 1
                console.warning(message)
            }
        }
    }

    /// Loads the drivers of devices that appear from now on, in the
    /// background, for as long as this process lives.
    func watch(_ uevents: UeventSocket, alreadyLoaded: Set<String>, activity: DeviceActivity?) {
        let me = self
        Threads.detach {
            var done = alreadyLoaded
            while true {
                guard let event = uevents.next(milliseconds: 60_000) else { continue }
                activity?.noteEvent()
                guard event.action == "add", let alias = event.modalias else { continue }
                let names = me.drivers(for: [alias]).values.flatMap { $0 }.filter { !done.contains($0) }
                guard !names.isEmpty else { continue }
                var tally = Tally()
                activity?.loadStarted()
                me.load(names, quietlyMissing: [], done: &done, tally: &tally)
                activity?.loadEnded()
                if tally.loaded > 0 {
                    me.console.info("modules: \(names.joined(separator: ", ")) for a device that appeared (\(alias))")
                }
            }
        }
    }
}
