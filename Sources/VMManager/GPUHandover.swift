import SpiritCore

/// The VM manager as the GPU hand-over sees it (its control socket in
/// `spirit gpu`, a fake in tests).
public protocol VMControl {
    /// The VM's state now, as `spirit vm list` says it.
    func state(of name: String) throws(VMError) -> VMState
    /// Starts the VM; the VM manager's one-line answer.
    func start(_ name: String) throws(VMError) -> String
}

/// Which devices were handed over for which VM, so that the return, by
/// hand or by the VM manager when QEMU ends, gives back exactly those.
public protocol GPURecords {
    func record(_ name: String, devices: [String]) throws(VMError)
    /// The devices recorded for `name`, and the record gone: one caller
    /// gets them (unlink(2) succeeds once), so that the VM manager and a
    /// `spirit gpu passthrough` whose start failed never return the same
    /// devices at the same time. nil when there is no record.
    func claim(_ name: String) -> [String]?
    /// The VMs with a record.
    func names() -> [String]
}

/// The records as files, /run/spirit/vms/NAME.gpu: one address a line.
public struct GPURecordFiles: GPURecords {
    public var paths: VMPaths

    public init(paths: VMPaths) { self.paths = paths }

    public func record(_ name: String, devices: [String]) throws(VMError) {
        do {
            try Kernel.makeDirectory(paths.run, parents: true)
            try Kernel.writeFileAtomically(paths.gpuRecord(name), devices.joined(separator: "\n") + "\n")
        } catch {
            throw VMError("unable to record the devices handed over to \(name) in \(paths.gpuRecord(name)): \(error)")
        }
    }

    public func claim(_ name: String) -> [String]? {
        let path = paths.gpuRecord(name)
        guard let text = try? Kernel.readText(path), (try? Kernel.removeFile(path)) != nil else { return nil }
        return text.split(separator: "\n").map { String($0).trimmed }.filter { !$0.isEmpty }
    }

    public func names() -> [String] {
        Kernel.listDirectory(paths.run).filter { $0.hasSuffix(".gpu") }.map { String($0.dropLast(4)) }.sorted()
    }
}

/// `spirit gpu passthrough VM` and `spirit gpu return [VM]`: the devices of
/// a VM definition's `[gpu]` section, with their whole IOMMU groups, moved
/// to vfio-pci by a GPU plan and the VM started; given back once the VM has
/// ended. Plans are made when they run (from sysfs as it is then), so the
/// planner and the runner are given, as the VM manager is.
public struct GPUHandover {
    public typealias Planner = (_ direction: GPUPlan.Direction, _ devices: [String], _ vm: String) throws(SpiritError) -> GPUPlan
    public typealias Runner = (GPUPlan) throws(GPUFailure) -> Void

    let plan: Planner
    let run: Runner
    let vms: any VMControl
    let records: any GPURecords

    public init(plan: @escaping Planner, run: @escaping Runner, vms: any VMControl, records: any GPURecords) {
        self.plan = plan
        self.run = run
        self.vms = vms
        self.records = records
    }

    /// The definition's devices and every other member of their IOMMU
    /// groups (bridges stay with the host): vfio-pci needs the whole group
    /// away from host drivers, QEMU gets only the devices the definition names.
    public static func devices(of vm: VMDefinition, in tree: PCITree) throws(VMError) -> [String] {
        guard !vm.gpuDevices.isEmpty else {
            throw VMError("\(vm.name) has no devices to pass through: its definition has no [gpu] devices = [\"0000:01:00.0\", …]",
                          code: 100)
        }
        var devices = vm.gpuDevices
        for address in vm.gpuDevices {
            guard let group = (try? tree.function(address))?.iommuGroup else { continue }
            for member in tree.groupMembers(group) where !devices.contains(member) && !((try? tree.function(member))?.isBridge ?? false) {
                devices.append(member)
            }
        }
        return devices
    }

    /// What a passthrough did.
    public struct Passthrough: Sendable {
        public var plan: GPUPlan
        /// The VM manager's answer to the start.
        public var started: String
    }

    /// Moves `devices` to vfio-pci (the HUD stopped with the VM's name as
    /// the reason when a display moves), records them, starts the VM. A VM
    /// that does not start gets nothing: the devices go back at once.
    public func passthrough(_ name: String, devices: [String]) throws(VMError) -> Passthrough {
        let state = try vms.state(of: name)
        guard !state.hasProcess else {
            throw VMError("\(name) is \(state.rawValue): its devices are handed over before it starts (spirit vm stop \(name) first)",
                          code: 100)
        }
        let passthrough: GPUPlan
        do {
            passthrough = try plan(.passthrough, devices, name)
        } catch {
            throw VMError("unable to pass the GPU through to \(name): \(error)", code: 100)
        }
        // Recorded first: whatever happens next, the devices are known.
        try records.record(name, devices: devices)
        do {
            try run(passthrough)
        } catch {
            _ = records.claim(name)
            throw VMError("unable to pass the GPU through to \(name): \(error)")
        }
        let started: String
        do {
            started = try vms.start(name)
        } catch let failure {
            // Whoever claims the record returns the devices: here, or the
            // VM manager if a QEMU of this start ran and ended.
            guard let recorded = records.claim(name) else {
                throw VMError("\(name) did not start: \(failure.description); the VM manager gives the GPU back", code: failure.code)
            }
            do {
                _ = try giveBack(name, devices: recorded)
            } catch {
                throw VMError("\(name) did not start: \(failure.description); and the GPU did not come back: \(error.description)",
                              code: failure.code)
            }
            throw VMError("\(name) did not start: \(failure.description); the GPU is back on its drivers", code: failure.code)
        }
        return Passthrough(plan: passthrough, started: started)
    }

    /// The devices back to their native drivers and the HUD started, once
    /// the VM has ended (its QEMU holds the groups open until then). The
    /// devices are those recorded by the passthrough, else `fallback` (the
    /// definition's); `recordedOnly` (what the VM manager runs when QEMU
    /// ends) does nothing without a record. nil: nothing to give back.
    public func giveBack(_ name: String, fallback: [String]?, recordedOnly: Bool) throws(VMError) -> GPUPlan? {
        let state = try vms.state(of: name)
        guard !state.hasProcess else {
            throw VMError("\(name) is \(state.rawValue): its QEMU holds the devices; they come back when it ends "
                          + "(spirit vm stop \(name))", code: 100)
        }
        guard let devices = records.claim(name) ?? (recordedOnly ? nil : fallback) else { return nil }
        do {
            return try giveBack(name, devices: devices)
        } catch {
            // Kept for the next try (`spirit gpu return NAME`).
            try? records.record(name, devices: devices)
            throw error
        }
    }

    func giveBack(_ name: String, devices: [String]) throws(VMError) -> GPUPlan {
        let back: GPUPlan
        do {
            back = try plan(.return, devices, name)
        } catch {
            throw VMError("unable to return the GPU from \(name): \(error)", code: 100)
        }
        do {
            try run(back)
        } catch {
            throw VMError("unable to return the GPU from \(name): \(error)")
        }
        return back
    }
}
