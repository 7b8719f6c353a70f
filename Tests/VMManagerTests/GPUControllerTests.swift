import SpiritCore
import SystemPackage
import Testing
import VMManager

/// Plays the kernel's PCI core: `driver_override`, `unbind`, `bind` and
/// `drivers_probe` with their semantics (an override keeps every other
/// driver off; probe binds the override or the first matching registered
/// driver; a module load registers its driver and binds what it matches).
/// Failures are injected per path; every write is kept.
final class SimulatedSysfs: PCISysfs, ModuleLoad, ServiceControl {
    struct Device: Equatable {
        var driver: String?
        var override: String?
        /// The native drivers that match it.
        var matches: [String]
    }

    var devices: [String: Device]
    /// Registered drivers (vfio-pci matches any device through an override only).
    var registered: Set<String>
    /// What loading a module registers.
    var moduleDrivers: [String: String]
    var failures: [String: Errno] = [:]
    /// A driver that refuses to probe (the device stays unbound).
    var refusing: Set<String> = []
    var writes: [String] = []
    var hud = "running"
    var hudReason: String?
    var holders: [String: [String]] = [:]

    init(devices: [String: Device], registered: Set<String>, moduleDrivers: [String: String] = [:]) {
        self.devices = devices
        self.registered = registered
        self.moduleDrivers = moduleDrivers
    }

    var state: [String: Device] { devices }

    func probe(_ address: String) {
        guard var device = devices[address], device.driver == nil else { return }
        let candidates = device.override.map { [$0] } ?? device.matches
        if let driver = candidates.first(where: { registered.contains($0) && !refusing.contains($0) }) {
            device.driver = driver
            devices[address] = device
        }
    }

    func write(_ path: String, _ value: String) throws {
        writes.append("\(value == "\n" ? "" : value) > \(path)")
        if let errno = failures[path] { throw SystemError("write \(path)", errno) }
        let parts = path.split(separator: "/").map(String.init)
        let address = value.trimmed
        switch (parts.count, parts.last) {
        case (6, "driver_override"):
            devices[parts[4]]!.override = value == "\n" ? nil : value
        case (4, "drivers_probe"):
            probe(address)
        case (6, "unbind"):
            guard devices[address]?.driver == parts[4] else { throw SystemError("write \(path)", .operationNotSupportedByDevice) }
            devices[address]!.driver = nil
        case (6, "bind"):
            guard var device = devices[address], device.driver == nil else { throw SystemError("write \(path)", .resourceBusy) }
            guard registered.contains(parts[4]), (device.override ?? parts[4]) == parts[4],
                  device.override != nil || device.matches.contains(parts[4]) else { throw SystemError("write \(path)", .operationNotSupportedByDevice) }
            device.driver = parts[4]
            devices[address] = device
        default:
            Issue.record("unexpected write to \(path)")
        }
    }

    func driver(of address: String) -> String? { devices[address]?.driver }
    func cardHolders(_ card: String) -> [String] { hud == "running" ? holders[card] ?? [] : [] }

    var loaded: [String] = []
    func load(_ name: String) throws {
        loaded.append(name)
        guard let driver = moduleDrivers[name] else { throw SpiritError("module \(name): not found") }
        registered.insert(driver)
        for address in devices.keys.sorted() { probe(address) }
    }

    var serviceCalls: [String] = []
    func stop(_ name: String, reason: String) throws {
        serviceCalls.append("stop \(name)")
        hud = "stopped"
        hudReason = reason
    }

    func start(_ name: String) throws {
        serviceCalls.append("start \(name)")
        hud = "running"
        hudReason = nil
    }
}

final class StepClock: VMClock {
    var nowMilliseconds: Int64 = 0
    func sleep(milliseconds: Int) { nowMilliseconds += Int64(milliseconds) }
}

/// The planner over a simulated machine: the plan is made from a fixture
/// tree that matches the simulated sysfs's start state.
@Suite struct GPUControllerTests {
    static let vga = "0000:01:00.0"
    static let audio = "0000:01:00.1"

    static func machine() -> SimulatedSysfs {
        let sysfs = SimulatedSysfs(
            devices: [vga: .init(driver: "amdgpu", override: nil, matches: ["amdgpu"]),
                      audio: .init(driver: "snd_hda_intel", override: nil, matches: ["snd_hda_intel"])],
            registered: ["amdgpu", "snd_hda_intel", "vfio-pci"],
            moduleDrivers: ["amdgpu": "amdgpu", "snd_hda_intel": "snd_hda_intel", "vfio-pci": "vfio-pci"])
        sysfs.holders["card0"] = ["spirit (pid 312)"]
        return sysfs
    }

    static func plan(_ sysfs: SimulatedSysfs, _ direction: GPUPlan.Direction, for vm: String? = nil) throws -> GPUPlan {
        let fixture = SysfsFixture()
        for (address, device) in sysfs.devices {
            fixture.function(address, class: address == vga ? "0x030000" : "0x040300", driver: device.driver, group: "12",
                             modalias: address == vga ? "pci:v00001002d0000731Fsv" : "pci:v00001002d0000AB38sv",
                             cards: address == vga ? ["card0"] : [])
            if let override = device.override { fixture.file("/sys/bus/pci/devices/\(address)/driver_override", override) }
        }
        for driver in sysfs.registered { fixture.directory("/sys/bus/pci/drivers/\(driver)") }
        for driver in sysfs.registered { fixture.directory("/sys/module/\(driver.replacing("-", with: "_"))") }
        let planner = GPUPlanner(tree: PCITree(root: fixture.root), modulesFor: GPUPlanTests.modules)
        return direction == .passthrough ? try planner.passthrough([vga, audio], for: vm) : try planner.giveBack([vga, audio])
    }

    @Test func theRoundTripEndsWithTheOriginalDrivers() throws {
        let sysfs = Self.machine()
        let start = sysfs.state
        let controller = GPUController(sysfs: sysfs, modules: sysfs, services: sysfs, clock: StepClock())
        try controller.run(try Self.plan(sysfs, .passthrough))
        #expect(sysfs.devices[Self.vga]?.driver == "vfio-pci")
        #expect(sysfs.devices[Self.audio]?.driver == "vfio-pci")
        #expect(sysfs.hud == "stopped")
        #expect(sysfs.hudReason == "gpu 0000:01:00.0 passed through (spirit gpu passthrough)")
        // Twice: nothing to do, nothing written.
        let writes = sysfs.writes.count
        let again = try Self.plan(sysfs, .passthrough)
        #expect(again.steps.isEmpty)
        try controller.run(again)
        #expect(sysfs.writes.count == writes)
        try controller.run(try Self.plan(sysfs, .return))
        #expect(sysfs.state == start)
        #expect(sysfs.hud == "running")
        #expect(sysfs.loaded.isEmpty)
        #expect(sysfs.serviceCalls == ["stop nexus", "start nexus"])
    }

    @Test func ebusyOnUnbindRollsBackExactly() throws {
        let sysfs = Self.machine()
        let start = sysfs.state
        sysfs.failures["/sys/bus/pci/drivers/amdgpu/unbind"] = .resourceBusy
        let controller = GPUController(sysfs: sysfs, modules: sysfs, services: sysfs, clock: StepClock())
        let message = failure { try controller.run(try Self.plan(sysfs, .passthrough)) }
        #expect(message == "passthrough: unable to write 0000:01:00.0 to /sys/bus/pci/drivers/amdgpu/unbind: Device or resource busy; "
                + "7 step(s) undone")
        #expect(sysfs.state == start)
        #expect(sysfs.hud == "running")
        // The audio function went to vfio-pci and came back; the VGA's override was undone.
        #expect(sysfs.writes == [
            "vfio-pci > /sys/bus/pci/devices/0000:01:00.1/driver_override",
            "0000:01:00.1 > /sys/bus/pci/drivers/snd_hda_intel/unbind",
            "0000:01:00.1 > /sys/bus/pci/drivers_probe",
            "vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override",
            "0000:01:00.0 > /sys/bus/pci/drivers/amdgpu/unbind",
            " > /sys/bus/pci/devices/0000:01:00.0/driver_override",
            "0000:01:00.1 > /sys/bus/pci/drivers/vfio-pci/unbind",
            " > /sys/bus/pci/devices/0000:01:00.1/driver_override",
            "0000:01:00.1 > /sys/bus/pci/drivers/snd_hda_intel/bind",
            " > /sys/bus/pci/devices/0000:01:00.1/driver_override",
        ])
        #expect(sysfs.serviceCalls == ["stop nexus", "start nexus"])
    }

    @Test func aDriverThatDoesNotBindFailsAtItsDeadlineAndRollsBack() throws {
        let sysfs = Self.machine()
        let start = sysfs.state
        sysfs.refusing = ["vfio-pci"]
        let clock = StepClock()
        let controller = GPUController(sysfs: sysfs, modules: sysfs, services: sysfs, clock: clock)
        let message = failure { try controller.run(try Self.plan(sysfs, .passthrough)) }
        #expect(message == "passthrough: vfio-pci did not bind 0000:01:00.1 within 5000 ms (bound: none); 5 step(s) undone")
        #expect(clock.nowMilliseconds == 5000)
        #expect(sysfs.state == start)
        #expect(sysfs.hud == "running")
    }

    @Test func aCardStillHeldStopsThePassthroughBeforeAnyWrite() throws {
        let sysfs = Self.machine()
        let controller = GPUController(sysfs: sysfs, modules: sysfs, services: sysfs, clock: StepClock())
        let plan = try Self.plan(sysfs, .passthrough)
        // Someone else holds the card: stopping the HUD does not free it.
        final class Stubborn: ServiceControl {
            var calls: [String] = []
            func stop(_ name: String, reason: String) throws { calls.append("stop") }
            func start(_ name: String) throws { calls.append("start") }
        }
        let services = Stubborn()
        let stubborn = GPUController(sysfs: sysfs, modules: sysfs, services: services, clock: StepClock())
        #expect(failure { try stubborn.run(plan) }
                == "passthrough: /dev/dri/card0 is still held by spirit (pid 312) after 5000 ms; 1 step(s) undone")
        #expect(services.calls == ["stop", "start"])
        #expect(sysfs.writes.isEmpty)
        _ = controller
    }

    @Test func returnLoadsTheNativeModuleWhenItIsNotLoaded() throws {
        let sysfs = Self.machine()
        let controller = GPUController(sysfs: sysfs, modules: sysfs, services: sysfs, clock: StepClock())
        try controller.run(try Self.plan(sysfs, .passthrough))
        // amdgpu is not there any more (as after a boot with crom.gpu=passthrough).
        sysfs.registered.remove("amdgpu")
        let plan = try Self.plan(sysfs, .return)
        #expect(plan.steps.map(\.step).contains(.loadModule("amdgpu")))
        try controller.run(plan)
        #expect(sysfs.loaded == ["amdgpu"])
        #expect(sysfs.devices[Self.vga] == .init(driver: "amdgpu", override: nil, matches: ["amdgpu"]))
        #expect(sysfs.hud == "running")
    }

    @Test func aFailedReturnPutsTheDevicesBackOnVFIO() throws {
        let sysfs = Self.machine()
        let controller = GPUController(sysfs: sysfs, modules: sysfs, services: sysfs, clock: StepClock())
        try controller.run(try Self.plan(sysfs, .passthrough))
        let passed = sysfs.state
        sysfs.registered.remove("amdgpu")
        sysfs.moduleDrivers["amdgpu"] = nil
        let message = failure { try controller.run(try Self.plan(sysfs, .return)) }
        #expect(message?.hasPrefix("return: module amdgpu: not found; 3 step(s) undone") == true)
        #expect(sysfs.state == passed)
        #expect(sysfs.hud == "stopped")
    }
}
