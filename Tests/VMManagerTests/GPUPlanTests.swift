import Glibc
import SpiritCore
import Testing
import VMManager

/// A sysfs (and /proc) fixture tree in a temporary directory, laid out as
/// the kernel lays it out: device directories, `driver` and `iommu_group`
/// links, group membership, registered drivers, loaded modules, fd links.
final class SysfsFixture {
    let root: String

    init() {
        var template = Array("/tmp/spirit-gpu-XXXXXX".utf8CString)
        root = String(cString: mkdtemp(&template)!)
    }

    deinit { _ = system("rm -rf '\(root)'") }

    func file(_ path: String, _ text: String) {
        try! Kernel.makeDirectory(root + String(path[..<path.lastIndex(of: "/")!]), parents: true)
        try! Kernel.writeFile(root + path, text + "\n")
    }

    func link(_ path: String, to target: String) {
        try! Kernel.makeDirectory(root + String(path[..<path.lastIndex(of: "/")!]), parents: true)
        _ = symlink(target, root + path)
    }

    func directory(_ path: String) { try! Kernel.makeDirectory(root + path, parents: true) }

    /// One PCI function; `driver` registered, the function in `group`.
    func function(_ address: String, class classCode: String, driver: String?, group: String?, modalias: String = "",
                  cards: [String] = []) {
        let path = "/sys/bus/pci/devices/\(address)"
        file(path + "/class", classCode)
        file(path + "/vendor", "0x1234")
        file(path + "/device", "0x1111")
        file(path + "/driver_override", "(null)")
        file(path + "/modalias", modalias)
        if let driver {
            directory("/sys/bus/pci/drivers/\(driver)")
            link(path + "/driver", to: "../../../bus/pci/drivers/\(driver)")
        }
        if let group {
            link(path + "/iommu_group", to: "../../../kernel/iommu_groups/\(group)")
            link("/sys/kernel/iommu_groups/\(group)/devices/\(address)", to: "../../../../devices/pci0000:00/\(address)")
        }
        for card in cards { directory(path + "/drm/\(card)") }
    }

    /// Process `pid` (running `command`) holding /dev/dri/`card` open as fd 5.
    func holder(pid: Int, command: [String], card: String) {
        file("/proc/\(pid)/cmdline", command.joined(separator: "\0"))
        link("/proc/\(pid)/fd/5", to: "/dev/dri/\(card)")
    }

    /// A discrete GPU as a real PC shows it: VGA 01:00.0 (amdgpu, card0,
    /// held by the HUD) and its HDMI audio 01:00.1 (snd_hda_intel) in group
    /// 12, behind the root port 00:01.0 (a bridge, group 12 too); vfio-pci
    /// registered; amdgpu loaded.
    static func discreteGPU() -> SysfsFixture {
        let tree = SysfsFixture()
        tree.function("0000:00:01.0", class: "0x060400", driver: "pcieport", group: "12")
        tree.function("0000:01:00.0", class: "0x030000", driver: "amdgpu", group: "12", modalias: "pci:v00001002d0000731Fsv", cards: ["card0"])
        tree.function("0000:01:00.1", class: "0x040300", driver: "snd_hda_intel", group: "12", modalias: "pci:v00001002d0000AB38sv")
        tree.function("0000:00:1f.3", class: "0x040300", driver: "snd_hda_intel", group: "5")
        tree.directory("/sys/bus/pci/drivers/vfio-pci")
        tree.directory("/sys/module/amdgpu")
        tree.directory("/sys/module/snd_hda_intel")
        tree.holder(pid: 312, command: ["/bin/spirit", "nexus"], card: "card0")
        tree.file("/proc/1/cmdline", "/init")
        return tree
    }
}

/// The message of what `body` threw, nil if it did not throw.
func failure(_ body: () throws -> Any) -> String? {
    do {
        _ = try body()
        return nil
    } catch {
        return "\(error)"
    }
}

@Suite struct GPUPlanTests {
    static let modules: @Sendable (String) -> [String] = { alias in
        alias.contains("731F") ? ["amdgpu"] : alias.contains("AB38") ? ["snd_hda_intel"] : alias.contains("1111") ? ["bochs"] : []
    }

    @Test func passthroughMovesTheAudioFunctionBeforeTheVGAAndStopsTheHUD() throws {
        let fixture = SysfsFixture.discreteGPU()
        let plan = try GPUPlanner(tree: PCITree(root: fixture.root), modulesFor: Self.modules)
            .passthrough(["0000:01:00.0", "0000:01:00.1"])
        #expect(plan.shell == """
            # iommu group 12 = 0000:00:01.0 0000:01:00.0 0000:01:00.1 (all listed)
            # 0000:01:00.0 VGA (0x30000) driver amdgpu; VGA: vfio-pci evicts firmware framebuffers, which never come back; /dev/dri/card0: spirit nexus (pid 312)
            # 0000:01:00.1 audio (0x40300) driver snd_hda_intel
            spiritctl stop nexus    # gpu 0000:01:00.0 passed through (spirit gpu passthrough)
            while fuser -s /dev/dri/card0; do sleep 0.01; done    # deadline 5000 ms
            echo vfio-pci > /sys/bus/pci/devices/0000:01:00.1/driver_override
            echo 0000:01:00.1 > /sys/bus/pci/drivers/snd_hda_intel/unbind    # from snd_hda_intel
            echo 0000:01:00.1 > /sys/bus/pci/drivers_probe
            test "$(basename "$(readlink /sys/bus/pci/devices/0000:01:00.1/driver)")" = vfio-pci
            echo vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override
            echo 0000:01:00.0 > /sys/bus/pci/drivers/amdgpu/unbind    # from amdgpu
            echo 0000:01:00.0 > /sys/bus/pci/drivers_probe
            test "$(basename "$(readlink /sys/bus/pci/devices/0000:01:00.0/driver)")" = vfio-pci
            """)
        // What a failure after the last step would undo, in that order.
        #expect(plan.steps.reversed().compactMap(\.undo?.shell) == [
            "echo 0000:01:00.0 > /sys/bus/pci/devices/0000:01:00.0/driver/unbind 2>/dev/null; echo > /sys/bus/pci/devices/0000:01:00.0/driver_override; echo 0000:01:00.0 > /sys/bus/pci/drivers/amdgpu/bind",
            "echo > /sys/bus/pci/devices/0000:01:00.0/driver_override",
            "echo 0000:01:00.1 > /sys/bus/pci/devices/0000:01:00.1/driver/unbind 2>/dev/null; echo > /sys/bus/pci/devices/0000:01:00.1/driver_override; echo 0000:01:00.1 > /sys/bus/pci/drivers/snd_hda_intel/bind",
            "echo > /sys/bus/pci/devices/0000:01:00.1/driver_override",
            "spiritctl start nexus",
        ])
    }

    @Test func anIncompleteGroupNamesTheMissingDevicesAndIsRefused() {
        let fixture = SysfsFixture.discreteGPU()
        let planner = GPUPlanner(tree: PCITree(root: fixture.root), modulesFor: Self.modules)
        #expect(failure { try planner.passthrough(["0000:01:00.0"]) }
                == "iommu group 12 also holds 0000:01:00.1 (audio): the whole group moves together; add --device for each")
    }

    @Test func aDeviceWithoutAnIOMMUGroupOrMissingIsRefused() {
        let fixture = SysfsFixture()
        fixture.function("0000:00:02.0", class: "0x030000", driver: "bochs-drm", group: nil)
        let planner = GPUPlanner(tree: PCITree(root: fixture.root), modulesFor: Self.modules)
        #expect(failure { try planner.passthrough(["0000:00:02.0"]) }?.hasPrefix("0000:00:02.0 is in no IOMMU group: is the IOMMU on") == true)
        #expect(failure { try planner.passthrough(["0000:00:09.0"]) }
                == "no PCI device 0000:00:09.0 (/sys/bus/pci/devices/0000:00:09.0 is missing): `spirit gpu status` lists them")
    }

    @Test func vfioPCINotRegisteredIsLoadedFirstAndAnUnboundDeviceSkipsTheUnbind() throws {
        let fixture = SysfsFixture()
        // crom.gpu=passthrough: no graphics driver took the VGA.
        fixture.function("0000:00:02.0", class: "0x030000", driver: nil, group: "1")
        let plan = try GPUPlanner(tree: PCITree(root: fixture.root), modulesFor: Self.modules).passthrough(["0000:00:02.0"])
        #expect(plan.steps.map(\.step) == [
            .loadModule("vfio-pci"),
            .stopService("nexus", reason: "gpu 0000:00:02.0 passed through (spirit gpu passthrough)"),
            .write(path: "/sys/bus/pci/devices/0000:00:02.0/driver_override", value: "vfio-pci"),
            .write(path: "/sys/bus/pci/drivers_probe", value: "0000:00:02.0"),
            .expectDriver(address: "0000:00:02.0", driver: "vfio-pci"),
        ])
    }

    @Test func returnClearsTheOverrideLoadsTheNativeModuleAndStartsTheHUD() throws {
        let fixture = SysfsFixture()
        fixture.function("0000:00:02.0", class: "0x030000", driver: "vfio-pci", group: "1", modalias: "pci:v00001234d00001111sv")
        fixture.file("/sys/bus/pci/devices/0000:00:02.0/driver_override", "vfio-pci")
        let plan = try GPUPlanner(tree: PCITree(root: fixture.root), modulesFor: Self.modules).giveBack(["0000:00:02.0"])
        #expect(plan.shell == """
            # iommu group 1 = 0000:00:02.0 (all listed)
            # 0000:00:02.0 VGA (0x30000) driver vfio-pci, driver_override vfio-pci
            echo 0000:00:02.0 > /sys/bus/pci/drivers/vfio-pci/unbind    # from vfio-pci
            echo > /sys/bus/pci/devices/0000:00:02.0/driver_override
            echo 0000:00:02.0 > /sys/bus/pci/drivers_probe    # binds the native driver if it is loaded
            spirit modules load bochs
            test -e /sys/bus/pci/devices/0000:00:02.0/driver -a "$(basename "$(readlink /sys/bus/pci/devices/0000:00:02.0/driver)")" != vfio-pci
            spiritctl start nexus
            """)
        // Loaded already: no module step.
        fixture.directory("/sys/module/bochs")
        let again = try GPUPlanner(tree: PCITree(root: fixture.root), modulesFor: Self.modules).giveBack(["0000:00:02.0"])
        #expect(!again.steps.contains { if case .loadModule = $0.step { true } else { false } })
    }

    @Test func aDeviceAlreadyWhereItShouldBeMakesAnEmptyPlan() throws {
        let fixture = SysfsFixture()
        fixture.function("0000:00:03.0", class: "0x020000", driver: "e1000", group: "2")
        let planner = GPUPlanner(tree: PCITree(root: fixture.root), modulesFor: Self.modules)
        #expect(try planner.giveBack(["0000:00:03.0"]).steps.isEmpty)
        #expect(try planner.giveBack(["0000:00:03.0"]).shell.hasSuffix("# nothing to do"))
    }
}
