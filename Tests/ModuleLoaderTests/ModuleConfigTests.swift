import ModuleLoader
import SpiritCore
import Testing

@Suite struct GlobTests {
    @Test(arguments: [
        ("pci:v*d*", "pci:v00008086d000010D3", true),
        ("usb:v13FDp3940d0[0-2]*", "usb:v13FDp3940d0150", true),
        ("usb:v13FDp3940d0[0-2]*", "usb:v13FDp3940d0350", false),
        ("a[!0-2]c", "a3c", true), ("a[!0-2]c", "a1c", false), ("a[^x]c", "abc", true),
        ("a?c", "abc", true), ("a?c", "ac", false), ("*", "", true), ("a*b*c", "aXbYc", true), ("a*b*c", "aXbY", false),
        ("a\\*b", "a*b", true), ("a\\*b", "axb", false), ("[]]", "]", true), ("a[b", "a[b", true), ("abc", "abc", true),
    ])
    func matchesLikeFnmatch(_ pattern: String, _ text: String, _ expected: Bool) {
        #expect(globMatch(pattern, text) == expected)
    }

    @Test func normalizesOutsideSets() {
        #expect(normalizeAlias("fs-ext4") == "fs_ext4")
        #expect(normalizeAlias("usb:v1-[a-c]-x") == "usb:v1_[a-c]_x")
    }
}

@Suite struct ModuleConfigTests {
    static let root = String(#filePath.split(separator: "/").dropLast().joined(separator: "/")).withLeadingSlash + "/Fixtures"

    func index() throws -> ModuleIndex {
        try ModuleIndex.load(root: Self.root, release: "6.1.0-test")
    }

    @Test func readsEveryKeyword() throws {
        let config = try index().config
        #expect(config.blacklist == ["e1000e"])
        #expect(config.options["usb_storage"] == "delay_use=0 quirks=13fd:3940:u foo=1")
        #expect(config.aliases.map(\.pattern) == ["my_disk"] && config.aliases.map(\.module) == ["nvme"])
        #expect(config.softdeps["uas"] == SoftDependencies(pre: ["usb_storage"], post: ["ext4"]))
        #expect(config.commands == ["kvm_intel"])
        #expect(config.problems.count == 1 && config.problems[0].hasSuffix("spirit-test.conf:9: unknown keyword 'nonsense'"))
    }

    @Test func lookupOrderIsKmods() throws {
        let index = try index()
        #expect(index.lookup("my-disk") == ["nvme"])                 // modprobe.d alias first
        #expect(index.lookup("usb-storage") == ["usb_storage"])      // a module's own name
        #expect(index.lookup("symbol:jbd2_journal_start") == ["jbd2"])
        #expect(index.lookup("fs-ext4") == ["ext4"])                 // an exact alias, normalized
        #expect(index.lookup("usb:v13FDp3940d0150dc00dsc00dp00ic08isc06ip50in00") == ["uas", "usb_storage", "usb_storage"])
        #expect(index.lookup("pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00") == ["e1000e"])
        #expect(index.lookup("overlay") == ["overlay"])              // built in
        #expect(index.lookup("pci:v0000FFFFd0000FFFFsv0sd0bc03sc00i00").isEmpty)
    }

    @Test func planHonoursSoftdepsOptionsAndBlacklist() throws {
        let plan = try index().plan(["uas", "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00", "e1000e", "loop", "nothing"])
        let names = plan.modules.map(\.name)
        // uas's pre: usb_storage before it, its post: ext4 (and ext4's own
        // softdep crc32c) after it.
        #expect(names.firstIndex(of: "usb_storage")! < names.firstIndex(of: "uas")!)
        #expect(names.firstIndex(of: "uas")! < names.firstIndex(of: "ext4")!)
        #expect(names.firstIndex(of: "crc32c_generic")! < names.firstIndex(of: "ext4")!)
        #expect(plan.modules.first { $0.name == "usb_storage" }?.parameters == "delay_use=0 quirks=13fd:3940:u foo=1")
        // Blacklisted through its alias, loaded when named.
        #expect(plan.blacklisted == ["e1000e"])
        #expect(names.contains("e1000e"))
        #expect(plan.builtin == ["loop"])
        #expect(plan.missing == ["nothing"])
    }

    @Test func wavesLoadAfterWhatTheyNeed() throws {
        let plan = try index().plan(["uas", "ext4"])
        var loaded: Set<String> = []
        for wave in plan.waves {
            for module in wave { #expect(module.dependencies.allSatisfy(loaded.contains), "\(module.name)") }
            loaded.formUnion(wave.map(\.name))
        }
        #expect(loaded == Set(plan.modules.map(\.name)))
        #expect(plan.waves.count >= 3)
    }

    /// The parallel loader's order: each module once its dependencies
    /// have finished, the plan's order among those ready, no waves.
    @Test func theScheduleStartsEachModuleOnceItsDependenciesFinished() {
        let plan = [PlannedModule(name: "scsi_common", path: "a"), PlannedModule(name: "scsi_mod", path: "b", dependencies: ["scsi_common"]),
                    PlannedModule(name: "libata", path: "c", dependencies: ["scsi_mod"]), PlannedModule(name: "squashfs", path: "d"),
                    PlannedModule(name: "e1000", path: "e"),
                    // A softdep on a later module does not count: no stall on a cycle.
                    PlannedModule(name: "ata_piix", path: "f", dependencies: ["libata", "scsi_mod", "later"]),
                    PlannedModule(name: "later", path: "g", dependencies: ["ata_piix"])]
        var schedule = LoadSchedule(plan)
        #expect(take(&schedule) == 0)
        #expect(take(&schedule) == 3)
        #expect(take(&schedule) == 4)
        #expect(take(&schedule) == nil)
        // squashfs finishes first; scsi_mod waits for scsi_common only.
        schedule.finish(3)
        #expect(take(&schedule) == nil)
        schedule.finish(0)
        #expect(take(&schedule) == 1)
        schedule.finish(1)
        // e1000 is still probing: libata need not wait for it (a wave would).
        #expect(take(&schedule) == 2)
        schedule.finish(2)
        #expect(take(&schedule) == 5)
        schedule.finish(5)
        #expect(take(&schedule) == 6)
        schedule.finish(6)
        schedule.finish(4)
        #expect(take(&schedule) == nil && schedule.running == 0 && schedule.finished == plan.count)
    }
}

@Suite struct PriorityListTests {
    @Test func readsTheDesignsFile() {
        let list = PriorityList("""
            # /etc/modules-load.d/spirit.conf
            # Priority 1: Virtualization (load first, claim devices early)
            vfio-pci
            kvm   # the core
            # Priority 2: Storage (enable disk access)
            nvme
            # Priority 3: Network (enable connectivity)
            # Loaded dynamically based on hardware detection
            # Priority 4: Graphics (last, can be rebound for passthrough)
            """)
        #expect(list.names == [.virtualization: ["vfio-pci", "kvm"], .storage: ["nvme"]])
    }

    @Test func listEntriesDropCommentsAndSpace() {
        #expect(listEntries("# comment\n squashfs \n\noverlay # the union\n\t\n") == ["squashfs", "overlay"])
    }

    @Test func groupsByWhereTheDriverLives() {
        #expect(ModuleGroup.of(path: "kernel/drivers/net/ethernet/intel/e1000/e1000.ko") == .network)
        #expect(ModuleGroup.of(path: "kernel/drivers/gpu/drm/bochs/bochs.ko") == .graphics)
        #expect(ModuleGroup.of(path: "kernel/arch/x86/kvm/kvm-intel.ko") == .virtualization)
        #expect(ModuleGroup.of(path: "kernel/drivers/ata/ata_piix.ko") == .storage)
    }
}

@Suite struct UeventTests {
    @Test func parsesTheKernelsFormat() {
        let bytes = Array("add@/devices/pci0000:00/0000:00:04.0/usb1/1-1\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:04.0/usb1/1-1\0SUBSYSTEM=usb\0MODALIAS=usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00\0".utf8)
        let event = Uevent.parse(bytes)
        #expect(event?.action == "add")
        #expect(event?.devpath == "/devices/pci0000:00/0000:00:04.0/usb1/1-1")
        #expect(event?.modalias == "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00")
        #expect(Uevent.parse(Array("libudev\0junk".utf8)) == nil)
    }
}

private func take(_ schedule: inout LoadSchedule) -> Int? { schedule.next() }
