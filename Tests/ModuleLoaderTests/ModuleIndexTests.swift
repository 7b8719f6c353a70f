import Glibc
@testable import ModuleLoader
import SpiritCore
import Testing

@Suite struct ModuleIndexTests {
    static let root = String(#filePath.split(separator: "/").dropLast().joined(separator: "/")).withLeadingSlash + "/Fixtures"

    func index() throws -> ModuleIndex {
        try ModuleIndex.load(root: Self.root, release: "6.1.0-test")
    }

    @Test func names() {
        #expect(moduleName("kernel/drivers/usb/storage/usb-storage.ko") == "usb_storage")
        #expect(moduleName("squashfs.ko.xz") == "squashfs")
        #expect(moduleName("nvme-core.ko.zst") == "nvme_core")
        #expect(moduleName("usb-storage") == "usb_storage")
    }

    @Test func dependenciesComeFirstAndOnce() throws {
        let plan = try index().plan(["uas", "usb-storage", "ext4"])
        // Depth first: each dependency (and softdep pre:, crc32c for ext4)
        // before the module that needs it.
        #expect(plan.modules.map(\.name) == ["scsi_mod", "usbcore", "usb_storage", "uas", "crc32c_generic", "crc16", "mbcache", "jbd2", "ext4"])
        let names = plan.modules.map(\.name)
        #expect(Set(names).count == names.count)
        for (module, dependency) in [("uas", "usb_storage"), ("uas", "scsi_mod"), ("usb_storage", "usbcore"), ("ext4", "jbd2")] {
            #expect(names.firstIndex(of: dependency)! < names.firstIndex(of: module)!)
        }
        #expect(plan.missing.isEmpty && plan.builtin.isEmpty)
    }

    @Test func builtinAndMissing() throws {
        let plan = try index().plan(["overlay", "loop", "no_such", "squashfs"])
        #expect(plan.builtin == ["overlay", "loop"])
        #expect(plan.missing == ["no_such"])
        #expect(plan.modules == [PlannedModule(name: "squashfs", path: "kernel/fs/squashfs/squashfs.ko.xz")])
    }

    @Test func missingIndexIsAnError() {
        #expect(throws: SystemError.self) { try ModuleIndex.load(root: Self.root, release: "0.0.0-none") }
    }
}

extension String {
    var withLeadingSlash: String { hasPrefix("/") ? self : "/" + self }
}

@Suite struct HeldGroupTests {
    static let vga = "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00"
    static let nvmeDisk = "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"
    // e1000e's device; the fixture's modprobe.d blacklists e1000e.
    static let nic = "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"

    func modules(holding held: Set<ModuleGroup>, together: Set<ModuleGroup> = [], hypervisorLater: Bool = false) throws -> BootModules {
        let index = try ModuleIndex.load(root: ModuleIndexTests.root, release: "6.1.0-test")
        return BootModules(index: index, loader: ParallelLoader(loading: ModuleLoading(root: ModuleIndexTests.root, release: "6.1.0-test")),
                           console: Console.tool, timeline: Timeline(directory: "/nonexistent", process: "test"), holding: held,
                           together: together, hypervisorLater: hypervisorLater)
    }

    @Test func stageTwoLeavesTheHypervisorForAfterReady() throws {
        let stageTwo = try modules(holding: [], hypervisorLater: true)
        // kvm and kvm_intel claim no device: later. vfio-pci (not in this
        // fixture) and drivers stay in the priority order.
        #expect(stageTwo.isLater("kvm") && stageTwo.isLater("kvm-intel") && !stageTwo.isLater("vfio-pci") && !stageTwo.isLater("bochs"))
        #expect(!(try modules(holding: [])).isLater("kvm_intel"))
        #expect(ModuleGroup.isHypervisor(path: "kernel/arch/x86/kvm/kvm-amd.ko") && !ModuleGroup.isHypervisor(path: "kernel/drivers/vfio/pci/vfio-pci.ko"))
        let priority = PriorityList("# Priority 1: Virtualization\nvfio-pci\nkvm\nkvm_intel\n# Priority 2: Storage\nnvme\n")
        let vmx = "cpu:type:x86,ven0000fam0006mod0055:feature:,00E8,"
        #expect(stageTwo.hypervisorModules(priority: priority, modaliases: [vmx, Self.vga, Self.nvmeDisk]) == ["kvm", "kvm_intel"])
        // A CPU without VMX: kvm alone, as before (kvm_intel would be refused).
        #expect(stageTwo.hypervisorModules(priority: priority, modaliases: [Self.vga]) == ["kvm"])
    }

    @Test func stageOneLoadsStorageAndNetworkAsOneStep() throws {
        #expect(try modules(holding: []).steps == [[.virtualization], [.storage], [.network], [.graphics]])
        #expect(try modules(holding: [], together: [.storage, .network]).steps == [[.virtualization], [.storage, .network], [.graphics]])
        // Held back, a group is no step at all.
        #expect(try modules(holding: [.graphics, .virtualization], together: [.storage, .network]).steps == [[.storage, .network]])
        // Only neighbours in the priority order join.
        #expect(try modules(holding: [], together: [.virtualization, .network]).steps == [[.virtualization], [.storage], [.network], [.graphics]])
    }

    @Test func driversAreGroupedAndBlacklistsHonoured() throws {
        let found = try modules(holding: []).drivers(for: [Self.vga, Self.nvmeDisk, Self.nic])
        #expect(found == [.graphics: ["bochs"], .storage: ["nvme"]])
    }

    @Test func listedDriversLoadOnlyForDevicesThatAreThere() throws {
        let modules = try modules(holding: [])
        let listed = ["vfio-pci", "kvm", "kvm_intel", "nvme", "usb_storage", "squashfs"]
        let wanted = { (aliases: Set<String>) in
            modules.wanted(listed, fitting: Set(modules.drivers(for: aliases).values.joined()),
                           bound: modules.bound)
        }
        // No NVMe disk, no USB stick, a CPU without VMX: what is not a driver stays.
        #expect(wanted([Self.vga, Self.nic]) == ["vfio-pci", "kvm", "squashfs"])
        // The NVMe disk and a CPU with VMX: their modules come with them.
        #expect(wanted([Self.nvmeDisk, "cpu:type:x86,ven0000fam0006mod0055:feature:,00E8,"]) == ["vfio-pci", "kvm", "kvm_intel", "nvme", "squashfs"])
    }

    @Test func cromGPUPassthroughHoldsTheGraphicsGroupBack() throws {
        let found = try modules(holding: [.graphics]).drivers(for: [Self.vga, Self.nvmeDisk, Self.nic])
        #expect(found == [.storage: ["nvme"]])
    }
}

@Suite struct ModuleLoadingTests {
    /// A live module is answered from /sys/module without opening its
    /// file (the file here does not exist, so an open would fail); one that
    /// is still coming, or not listed, goes to the kernel as before.
    @Test func aLiveModuleIsNotReadAgain() throws {
        var template = Array("/tmp/spirit-sysmodule-XXXXXX".utf8CString)
        let sys = String(cString: mkdtemp(&template)!)
        defer { _ = system("rm -rf '\(sys)'") }
        for (name, state) in [("ext4", "live\n"), ("jbd2", "coming\n"), ("usb_storage", "live\n")] {
            _ = system("mkdir -p '\(sys)/\(name)'")
            try Kernel.writeFile(sys + "/" + name + "/initstate", bytes: Array(state.utf8))
        }
        let loading = ModuleLoading(root: "/nonexistent", release: "6.1.0-test", sysModule: sys)
        #expect(loading.load(PlannedModule(name: "ext4", path: "kernel/fs/ext4/ext4.ko")) == .alreadyLoaded)
        // A planned module has the kernel's name (usb-storage.ko is usb_storage under /sys/module).
        let planned = try #require(try ModuleIndexTests().index().plan(["usb-storage"]).modules.last)
        #expect(planned.name == "usb_storage" && loading.load(planned) == .alreadyLoaded)
        for name in ["jbd2", "mbcache"] {
            guard case .failed(let message) = loading.load(PlannedModule(name: name, path: "kernel/fs/\(name).ko")) else {
                Issue.record("\(name) was not handed to the kernel")
                continue
            }
            #expect(message.contains("/nonexistent/lib/modules/6.1.0-test/kernel/fs/\(name).ko"))
        }
    }
}
