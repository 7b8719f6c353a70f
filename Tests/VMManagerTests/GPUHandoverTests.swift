import SpiritCore
import SystemPackage
import Testing
import VMManager

/// The VM manager as the hand-over sees it: a state per VM, a start that
/// succeeds or fails; every call kept.
final class FakeVMs: VMControl {
    var states: [String: VMState]
    var startFailure: VMError?
    var calls: [String] = []
    /// What the machine looks like when the start is asked for.
    var atStart: (() -> Void)?

    init(_ states: [String: VMState]) { self.states = states }

    func state(of name: String) throws(VMError) -> VMState {
        guard let state = states[name] else { throw VMError("no VM named '\(name)'", code: 100) }
        return state
    }

    func start(_ name: String) throws(VMError) -> String {
        calls.append("start \(name)")
        atStart?()
        if let startFailure { throw startFailure }
        states[name] = .running
        return "\(name) started"
    }
}

final class MemoryRecords: GPURecords {
    var records: [String: [String]] = [:]
    var failWrites = false

    func record(_ name: String, devices: [String]) throws(VMError) {
        if failWrites { throw VMError("unable to record") }
        records[name] = devices
    }

    func claim(_ name: String) -> [String]? { records.removeValue(forKey: name) }
    func names() -> [String] { records.keys.sorted() }
}

/// The hand-over over the simulated machine of GPUControllerTests: plans
/// made from its state when they run, carried out by the real controller.
@Suite struct GPUHandoverTests {
    static let devices = [GPUControllerTests.vga, GPUControllerTests.audio]

    static func handover(_ sysfs: SimulatedSysfs, _ vms: FakeVMs, _ records: MemoryRecords) -> GPUHandover {
        let controller = GPUController(sysfs: sysfs, modules: sysfs, services: sysfs, clock: StepClock())
        return GPUHandover(
            plan: { direction, devices, vm throws(SpiritError) in
                #expect(devices == Self.devices)
                do {
                    return try GPUControllerTests.plan(sysfs, direction, for: vm)
                } catch {
                    throw SpiritError("\(error)")
                }
            },
            run: { plan throws(GPUFailure) in try controller.run(plan) },
            vms: vms, records: records)
    }

    @Test func theDefinitionsDevicesBringTheirWholeGroupButNotItsBridge() throws {
        let tree = SysfsFixture.discreteGPU()
        let vm = try VMDefinition.parse("[gpu]\ndevices = [\"0000:01:00.0\"]\n", path: "/etc/spirit/vms/windows.toml")
        #expect(try GPUHandover.devices(of: vm, in: PCITree(root: tree.root)) == ["0000:01:00.0", "0000:01:00.1"])
        let plain = try VMDefinition.parse("memory-mib = 512\n", path: "/etc/spirit/vms/plain.toml")
        #expect(failure { try GPUHandover.devices(of: plain, in: PCITree(root: tree.root)) }
                == "plain has no devices to pass through: its definition has no [gpu] devices = [\"0000:01:00.0\", …]")
    }

    @Test func passthroughMovesTheGroupStopsTheHUDForTheVMThenStartsIt() throws {
        let sysfs = GPUControllerTests.machine()
        let vms = FakeVMs(["windows": .stopped])
        let records = MemoryRecords()
        // The devices are on vfio-pci before QEMU is asked to start.
        vms.atStart = { #expect(sysfs.devices.values.allSatisfy { $0.driver == "vfio-pci" }) }
        let done = try Self.handover(sysfs, vms, records).passthrough("windows", devices: Self.devices)
        #expect(done.started == "windows started")
        #expect(vms.calls == ["start windows"])
        #expect(sysfs.hud == "stopped")
        #expect(sysfs.hudReason == "gpu 0000:01:00.0 passed through to VM windows (spirit gpu passthrough windows)")
        #expect(records.records == ["windows": Self.devices])
    }

    @Test func aRunningVMGetsNothingAndNothingIsWritten() {
        let sysfs = GPUControllerTests.machine()
        let vms = FakeVMs(["windows": .running])
        let records = MemoryRecords()
        #expect(failure { try Self.handover(sysfs, vms, records).passthrough("windows", devices: Self.devices) }
                == "windows is running: its devices are handed over before it starts (spirit vm stop windows first)")
        #expect(sysfs.writes.isEmpty && vms.calls.isEmpty && records.records.isEmpty)
        #expect(failure { try Self.handover(sysfs, vms, records).passthrough("absent", devices: Self.devices) } == "no VM named 'absent'")
    }

    @Test func aVMThatDoesNotStartGivesTheGPUBackAtOnce() {
        let sysfs = GPUControllerTests.machine()
        let start = sysfs.state
        let vms = FakeVMs(["windows": .stopped])
        vms.startFailure = VMError("unable to start windows: QEMU said: vfio 0000:01:00.0: group 12 is not viable")
        let records = MemoryRecords()
        #expect(failure { try Self.handover(sysfs, vms, records).passthrough("windows", devices: Self.devices) }
                == "windows did not start: unable to start windows: QEMU said: vfio 0000:01:00.0: group 12 is not viable; "
                + "the GPU is back on its drivers")
        #expect(sysfs.state == start)
        #expect(sysfs.hud == "running")
        #expect(records.records.isEmpty)
    }

    @Test func aFailedStartWhoseRecordTheVMManagerClaimedLeavesTheReturnToIt() {
        let sysfs = GPUControllerTests.machine()
        let vms = FakeVMs(["windows": .stopped])
        let records = MemoryRecords()
        vms.startFailure = VMError("QEMU ended at once")
        // QEMU ran and ended: the VM manager took the record first.
        vms.atStart = { _ = records.claim("windows") }
        #expect(failure { try Self.handover(sysfs, vms, records).passthrough("windows", devices: Self.devices) }
                == "windows did not start: QEMU ended at once; the VM manager gives the GPU back")
        #expect(sysfs.devices.values.allSatisfy { $0.driver == "vfio-pci" })
    }

    @Test func aPlanThatFailsLeavesNoRecordAndStartsNothing() {
        let sysfs = GPUControllerTests.machine()
        let start = sysfs.state
        sysfs.failures["/sys/bus/pci/drivers/amdgpu/unbind"] = .resourceBusy
        let vms = FakeVMs(["windows": .stopped])
        let records = MemoryRecords()
        let message = failure { try Self.handover(sysfs, vms, records).passthrough("windows", devices: Self.devices) } ?? ""
        #expect(message.hasPrefix("unable to pass the GPU through to windows: passthrough: unable to write 0000:01:00.0 to "
                                  + "/sys/bus/pci/drivers/amdgpu/unbind: Device or resource busy"))
        #expect(sysfs.state == start && vms.calls.isEmpty && records.records.isEmpty)
    }

    @Test func theReturnWaitsForTheVMToEndThenGivesBackWhatWasRecorded() throws {
        let sysfs = GPUControllerTests.machine()
        let start = sysfs.state
        let vms = FakeVMs(["windows": .stopped])
        let records = MemoryRecords()
        let handover = Self.handover(sysfs, vms, records)
        _ = try handover.passthrough("windows", devices: Self.devices)
        #expect(failure { try handover.giveBack("windows", fallback: nil, recordedOnly: true) as Any }
                == "windows is running: its QEMU holds the devices; they come back when it ends (spirit vm stop windows)")
        #expect(records.records["windows"] == Self.devices)
        vms.states["windows"] = .stopped
        let back = try handover.giveBack("windows", fallback: nil, recordedOnly: true)
        #expect(back?.devices == [GPUControllerTests.vga, GPUControllerTests.audio])
        #expect(sysfs.state == start)
        #expect(sysfs.hud == "running")
        #expect(sysfs.serviceCalls == ["stop nexus", "start nexus"])
        #expect(records.records.isEmpty)
        // The VM manager's call once the record is gone does nothing.
        let writes = sysfs.writes.count
        #expect(try handover.giveBack("windows", fallback: nil, recordedOnly: true) == nil)
        #expect(sysfs.writes.count == writes)
    }

    @Test func aReturnThatFailsKeepsTheRecordForTheNextTry() throws {
        let sysfs = GPUControllerTests.machine()
        let vms = FakeVMs(["windows": .stopped])
        let records = MemoryRecords()
        let handover = Self.handover(sysfs, vms, records)
        _ = try handover.passthrough("windows", devices: Self.devices)
        vms.states["windows"] = .failed
        sysfs.refusing = ["amdgpu"]
        let message = failure { try handover.giveBack("windows", fallback: nil, recordedOnly: true) as Any } ?? ""
        #expect(message.hasPrefix("unable to return the GPU from windows: return: no native driver did not bind"), "\(message)")
        #expect(records.records["windows"] == Self.devices)
        sysfs.refusing = []
        #expect(try handover.giveBack("windows", fallback: nil, recordedOnly: true) != nil)
        #expect(sysfs.hud == "running" && records.records.isEmpty)
    }

    @Test func withoutARecordTheReturnByHandUsesTheDefinitionsDevices() throws {
        let sysfs = GPUControllerTests.machine()
        let start = sysfs.state
        let controller = GPUController(sysfs: sysfs, modules: sysfs, services: sysfs, clock: StepClock())
        try controller.run(try GPUControllerTests.plan(sysfs, .passthrough))
        let vms = FakeVMs(["windows": .defined])
        let handover = Self.handover(sysfs, vms, MemoryRecords())
        #expect(try handover.giveBack("windows", fallback: Self.devices, recordedOnly: true) == nil)
        #expect(try handover.giveBack("windows", fallback: Self.devices, recordedOnly: false) != nil)
        #expect(sysfs.state == start)
    }
}
