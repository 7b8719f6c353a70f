import Glibc
import Overlay
import SpiritCore
import Testing

/// A kernel that records what the plan asks and fails where it is told to.
/// A phase begun early calls it from a thread of its own: the record is locked.
final class RecordingKernel: BootKernel, @unchecked Sendable {
    private let lock = Monitor()
    private var recorded: [String] = []
    var calls: [String] { lock.withLock { recorded } }
    /// A call that fails, by its recorded text's prefix.
    var failing: Set<String> = []
    /// Called with each call before it is recorded (a test that makes a step slow).
    var before: (String) -> Void = { _ in }
    var closedLoops: [CInt] = []

    func append(_ call: String) {
        before(call)
        lock.withLock { recorded.append(call) }
    }

    func record(_ call: String) throws {
        append(call)
        if failing.contains(where: { call.hasPrefix($0) }) { throw SpiritError("refused: \(call)") }
    }

    func makeDirectory(_ path: String) throws { try record("mkdir \(path)") }
    func mount(_ spec: MountSpec) throws { try record(spec.description) }
    func unmount(_ target: String) throws { try record("umount \(target)") }
    func writeFile(_ path: String, _ contents: String) throws { try record("write \(contents.prefix(20)) > \(path)") }
    func readFile(_ path: String) throws -> String {
        try record("read \(path)")
        return "uuid-\(calls.count)\n"
    }
    func run(_ arguments: [String]) throws { try record("run " + arguments.joined(separator: " ")) }
    func swapOn(_ device: String) throws { try record("swapon \(device)") }
    func swapOff(_ device: String) throws { try record("swapoff \(device)") }
    func attachLoop(_ file: String) throws -> (device: String, handle: CInt) {
        try record("loop \(file)")
        return ("/dev/loop7", 42)
    }
    func closeLoop(_ handle: CInt) { closedLoops.append(handle) }
    func removeTree(_ path: String, keep: String) -> Int64 {
        append("remove \(path) but \(keep)")
        return 4096
    }
    func changeDirectory(_ path: String) throws { try record("cd \(path)") }
    func changeRoot(_ path: String) throws { try record("chroot \(path)") }
    func execute(_ arguments: [String]) -> any Error {
        append("exec " + arguments.joined(separator: " "))
        return SpiritError("exec \(arguments[0]): no such file in the double")
    }
}

@Suite struct RootPlanTests {
    let manifest = Manifest(image: "rootfs.squashfs", size: 40 << 20, sha256: String(repeating: "ab", count: 32), version: "1.2.3",
                            buildTime: 0)

    func inputs(upper: UpperLayer = .zram, limit: Int? = nil, offered: String = "lzo lzo-rle lz4 [zstd]") -> RootPlan.Inputs {
        RootPlan.Inputs(manifest: manifest, memTotalKiB: 2 << 20, algorithmsOffered: offered, upper: upper, ramLimitMiB: limit)
    }

    @Test func stageOneIsCopyVerifyZramMount() throws {
        let plan = try RootPlan().stageOne(inputs())
        #expect(plan.phases == ["copy", "verify", "zram", "mount"])
        let shell = plan.shell.split(separator: "\n").map(String.init)
        #expect(shell.contains("mount -t tmpfs -o nosuid,nodev,noexec,mode=0700,size=41m spirit-image /run/spirit/image"))
        #expect(shell.contains("for value in zstd lz4 lzo-rle lzo; do echo $value > /sys/block/zram0/comp_algorithm && break; done"))
        #expect(shell.contains("echo 1073741824 > /sys/block/zram0/disksize"))
        #expect(shell.contains("/sbin/mke2fs -q -t ext4 -O ^has_journal -m 0 -L spirit-rw -U $UUID -E hash_seed=$SEED /dev/zram0"))
        #expect(shell.contains("LOOP=$(losetup --find --show --read-only /run/spirit/image/rootfs.squashfs)"))
        #expect(shell.contains("mount -t squashfs -o ro $LOOP /run/spirit/lower"))
        #expect(shell.last == "mount -t overlay -o lowerdir=/run/spirit/lower,upperdir=/run/spirit/rw/upper,workdir=/run/spirit/rw/work overlay /sysroot")
        #expect(plan.details["zram"] == "1024 MiB, zram upper")
    }

    @Test func tmpfsUpperSwapsOnZramAndRamLimitSizesIt() throws {
        let plan = try RootPlan().stageOne(inputs(upper: .tmpfs, limit: 300))
        let shell = plan.shell
        #expect(shell.contains("/sbin/mkswap /dev/zram0\nswapon /dev/zram0\nmount -t tmpfs -o nosuid,nodev,mode=0755,size=300m spirit-rw /run/spirit/rw"))
        #expect(!shell.contains("mke2fs"))
        #expect(plan.undoShell.contains("swapoff /dev/zram0"))
    }

    @Test func undoIsTheReverseOfWhatWasDone() throws {
        let plan = try RootPlan().stageOne(inputs())
        #expect(plan.undoShell.split(separator: "\n") == [
            "umount /sysroot", "umount /run/spirit/lower", "losetup -d $LOOP", "umount /run/spirit/rw",
            "echo 1 > /sys/block/zram0/reset", "umount /run/spirit/image",
        ])
    }

    @Test func zramWithoutAKnownAlgorithmIsRefusedAtPlanning() {
        #expect(throws: SpiritError.self) { try RootPlan().stageOne(inputs(offered: "842")) }
    }

    @Test func aStreamedRootIsMountedFromTheHydratorsLoopWithoutACopy() throws {
        var streamed = inputs()
        streamed.streamed = true
        let plan = try RootPlan().stageOne(streamed)
        #expect(plan.phases == ["copy", "stream", "zram", "mount"])
        let kernel = RecordingKernel()
        var actions: [String] = []
        try PlanRunner(kernel: kernel, timeline: nil).run(plan, actions: [
            RootPlan.Action.copy: { actions.append("copy") },
            RootPlan.Action.stream: {
                // The hydrator reads the manifest beside the image: written before it starts.
                #expect(kernel.calls.last { !$0.contains("zram") && !$0.contains("random/uuid") && !$0.contains("/run/spirit/rw") }?
                    .hasSuffix("> /run/spirit/image/manifest.json") == true)
                actions.append("stream")
            },
            RootPlan.Action.release: { actions.append("release") },
            RootPlan.Action.verify: { actions.append("verify") },
        ])
        #expect(actions == ["stream", "release"]) // no copy, no whole-image check here: the hydrator does both later
        #expect(kernel.calls.contains("read /run/spirit/hydrate.loop"))
        #expect(kernel.calls.filter { $0.hasPrefix("run /sbin/mke2fs") }.count == 1)
        #expect(!kernel.calls.contains { $0.hasPrefix("loop ") })
        #expect(kernel.calls.contains("mount -t squashfs -o ro uuid-\(kernel.calls.firstIndex(of: "read /run/spirit/hydrate.loop")! + 1) /run/spirit/lower"))
        #expect(plan.details["verify"]?.hasPrefix("each block against the signed block list") == true)
    }

    @Test func theRunnerDoesTheStepsInOrderWithTheirValues() throws {
        let plan = try RootPlan().stageOne(inputs())
        let kernel = RecordingKernel()
        var actions: [String] = []
        try PlanRunner(kernel: kernel, timeline: nil).run(plan, actions: [
            RootPlan.Action.copy: { actions.append("copy") },
            RootPlan.Action.release: { actions.append("release") },
            RootPlan.Action.verify: { actions.append("verify") },
        ])
        #expect(actions == ["copy", "release", "verify"])
        #expect(kernel.calls.first { !$0.contains("zram") && !$0.contains("random/uuid") && !$0.contains("/run/spirit/rw") } == "mkdir /run/spirit/image")
        #expect(kernel.calls.contains { $0.hasPrefix("run /sbin/mke2fs") && $0.contains("-U uuid-") && $0.contains("hash_seed=uuid-") })
        #expect(kernel.calls.contains("mount -t squashfs -o ro /dev/loop7 /run/spirit/lower"))
        #expect(kernel.calls.last?.hasPrefix("mount -t overlay") == true)
        #expect(kernel.closedLoops == [42])
    }

    @Test func aFailureUndoesWhatWasDoneInReverse() throws {
        let plan = try RootPlan().stageOne(inputs())
        let kernel = RecordingKernel()
        kernel.failing = ["mount -t overlay"]
        do {
            try PlanRunner(kernel: kernel, timeline: nil).run(plan, actions: [RootPlan.Action.copy: {}, RootPlan.Action.release: {}, RootPlan.Action.verify: {}])
            Issue.record("the plan should have failed")
        } catch {
            #expect(error.phase == "mount")
            #expect("\(error)".contains("refused: mount -t overlay"))
        }
        let failedAt = kernel.calls.lastIndex { $0.hasPrefix("mount -t overlay") }!
        #expect(Array(kernel.calls[(failedAt + 1)...]) == [
            "umount /run/spirit/lower", "umount /run/spirit/rw", "write 1 > /sys/block/zram0/reset", "umount /run/spirit/image",
        ])
        #expect(kernel.closedLoops == [42])
    }

    @Test func aFailedCopyUndoesItsTmpfsAndNamesThePhase() throws {
        let plan = try RootPlan().stageOne(inputs())
        let kernel = RecordingKernel()
        do {
            try PlanRunner(kernel: kernel, timeline: nil).run(plan, actions: [
                RootPlan.Action.copy: { throw SpiritError("the server broke off") },
            ])
            Issue.record("the plan should have failed")
        } catch {
            #expect(error.phase == "copy")
            #expect(error.step == .action(name: RootPlan.Action.copy, shell: plan.steps[2].step.shell))
        }
        #expect(kernel.calls.last == "umount /run/spirit/image")
    }

    @Test func zramIsSetUpBesideTheCopyAndTheMountWaitsForBoth() throws {
        let plan = try RootPlan().stageOne(inputs())
        #expect(plan.shell.contains("# zram: 1024 MiB, zram upper (begun with copy, beside the phases before it)"))
        let kernel = RecordingKernel()
        var sawZramDuringTheCopy = false
        try PlanRunner(kernel: kernel, timeline: nil).run(plan, actions: [
            RootPlan.Action.copy: {
                // The copy goes on until zram's file system is made beside it.
                let until = Kernel.bootTimeMicros() + 10_000_000
                while Kernel.bootTimeMicros() < until && !sawZramDuringTheCopy {
                    sawZramDuringTheCopy = kernel.calls.contains { $0.hasPrefix("run /sbin/mke2fs") }
                    usleep(1000)
                }
            },
            RootPlan.Action.release: {}, RootPlan.Action.verify: {},
        ])
        #expect(sawZramDuringTheCopy)
        let calls = kernel.calls
        let squashfs = calls.firstIndex { $0.hasPrefix("mount -t squashfs") }!
        #expect(calls.firstIndex { $0.hasPrefix("mount -t ext4") }! < squashfs)
        #expect(calls.firstIndex(of: "mkdir /run/spirit/rw/work")! < squashfs)
    }

    @Test func aCopyThatFailsWaitsForZramAndUndoesItToo() throws {
        let directory = "/tmp/spirit-plan-test-\(getpid())"
        defer {
            try? Kernel.removeFile(directory + "/timeline.jsonl")
            try? Kernel.removeFile(directory + "/timeline.json")
            try? Kernel.removeDirectory(directory)
        }
        let timeline = Timeline(directory: directory, process: "test")
        let plan = try RootPlan().stageOne(inputs())
        let kernel = RecordingKernel()
        kernel.before = { call in if call.hasPrefix("run /sbin/mke2fs") { usleep(200_000) } }
        do {
            try PlanRunner(kernel: kernel, timeline: timeline).run(plan, actions: [
                RootPlan.Action.copy: { throw SpiritError("the server broke off") },
            ])
            Issue.record("the plan should have failed")
        } catch {
            #expect(error.phase == "copy")
        }
        let calls = kernel.calls
        let made = calls.firstIndex { $0.hasPrefix("run /sbin/mke2fs") }!
        #expect(Array(calls[(made + 1)...]).filter { $0.hasPrefix("umount") || $0.hasPrefix("write 1") } == [
            "umount /run/spirit/rw", "write 1 > /sys/block/zram0/reset", "umount /run/spirit/image",
        ])
        #expect(calls.last == "umount /run/spirit/image")
        let steps = try Kernel.readText(timeline.journalPath)
        #expect(steps.contains("\"step\":\"copy\""))
        #expect(steps.contains("undone: the copy phase failed\",") || steps.contains("undone: the copy phase failed\"}"))
        #expect(steps.split(separator: "\n").filter { $0.contains("\"step\":\"zram\"") }.allSatisfy { $0.contains("\"ok\":false") })
    }

    @Test func zramFailingBesideTheCopyFailsThePlanAtZram() throws {
        let plan = try RootPlan().stageOne(inputs())
        let kernel = RecordingKernel()
        kernel.failing = ["run /sbin/mke2fs"]
        var verified = false
        do {
            try PlanRunner(kernel: kernel, timeline: nil).run(plan, actions: [
                RootPlan.Action.copy: {}, RootPlan.Action.release: {}, RootPlan.Action.verify: { verified = true },
            ])
            Issue.record("the plan should have failed")
        } catch {
            #expect(error.phase == "zram")
            #expect("\(error)".contains("refused: run /sbin/mke2fs"))
        }
        #expect(verified) // the image's own phases went on; the plan stops where zram stands
        #expect(!kernel.calls.contains { $0.hasPrefix("mount -t squashfs") })
        #expect(kernel.calls.suffix(2) == ["write 1 > /sys/block/zram0/reset", "umount /run/spirit/image"])
    }

    @Test func aRefusedAlgorithmIsSaidAndTheNextOneTaken() throws {
        let plan = try RootPlan().stageOne(inputs())
        let kernel = RecordingKernel()
        kernel.failing = ["write zstd"]
        var notes: [String] = []
        try PlanRunner(kernel: kernel, timeline: nil, note: { notes.append($0) })
            .run(plan, actions: [RootPlan.Action.copy: {}, RootPlan.Action.release: {}, RootPlan.Action.verify: {}])
        #expect(kernel.calls.contains("write lz4 > /sys/block/zram0/comp_algorithm"))
        #expect(notes.first?.hasPrefix("zram: zstd is not available (") == true)
        #expect(notes.contains("zram: this kernel has no zstd for zram; using lz4"))
    }

    @Test func switchRootMovesFreesChrootsAndExecs() {
        let plan = RootPlan.switchRoot(newRoot: "/sysroot", initPath: "/sbin/init", arguments: ["--switched-root"])
        #expect(plan.shell.split(separator: "\n").suffix(7) == [
            "find / -xdev -mindepth 1 -path /sysroot -prune -o -delete", "cd /sysroot", "mount -o move . /", "chroot .", "cd /",
            "# exec", "exec /sbin/init --switched-root",
        ])
        let kernel = RecordingKernel()
        do {
            try PlanRunner(kernel: kernel, timeline: nil).run(plan)
            Issue.record("exec should have failed in the double")
        } catch {
            #expect(error.phase == "exec")
        }
        #expect(kernel.calls.prefix(2) == ["mkdir /sysroot/dev", "mount -o move /dev /sysroot/dev"])
        #expect(kernel.calls.last == "exec /sbin/init --switched-root")
    }

    @Test func theWorkersPartOfSwitchRootStopsWherePID1Begins() {
        let plan = RootPlan.prepareSwitchRoot(newRoot: "/sysroot")
        let whole = RootPlan.switchRoot(newRoot: "/sysroot", initPath: "/sbin/init", arguments: ["--switched-root"])
        // Every step before `cd /sysroot`, which spirit-init makes itself, with the exec.
        #expect(plan.steps == Array(whole.steps.prefix(plan.steps.count)))
        #expect(plan.steps.count == whole.steps.count - 5)
        #expect(plan.shell.split(separator: "\n").last == "find / -xdev -mindepth 1 -path /sysroot -prune -o -delete")
        #expect(Set(plan.phases) == ["switch_root"])
    }

    @Test func persistenceIsReadBeforeTheCopyAndAppliedAfterTheOverlay() throws {
        var withArchive = inputs()
        withArchive.persistArchive = "/run/spirit/media/usb/spirit.persist"
        let plan = try RootPlan().stageOne(withArchive)
        // Read while the medium is mounted (the copy releases it), applied once /sysroot is the overlay.
        #expect(plan.phases == ["persist:read", "copy", "verify", "zram", "mount", "persist:apply"])
        #expect(plan.steps.first?.step == .action(name: RootPlan.Action.readPersist,
                                                  shell: "cp /run/spirit/media/usb/spirit.persist /run/spirit/persist.archive  # if there; its SHA-256 trailer checked, else ignored"))
        #expect(plan.steps.last?.step.shell.hasPrefix("tar -x -C /sysroot -f /run/spirit/persist.archive") == true)
        // Neither step has an undo, and without an archive there is neither.
        #expect(plan.steps.filter { $0.phase.hasPrefix("persist") }.allSatisfy { $0.undo == nil })
        #expect(try RootPlan().stageOne(inputs()).phases == ["copy", "verify", "zram", "mount"])
        var order: [String] = []
        try PlanRunner(kernel: RecordingKernel(), timeline: nil).run(plan, actions: [
            RootPlan.Action.readPersist: { order.append("read") }, RootPlan.Action.copy: { order.append("copy") },
            RootPlan.Action.release: { order.append("release") },
            RootPlan.Action.verify: {}, RootPlan.Action.applyPersist: { order.append("apply") },
        ])
        #expect(order == ["read", "copy", "release", "apply"])
    }

    @Test func anActionWithoutAHandlerFails() throws {
        let plan = try RootPlan().stageOne(inputs())
        #expect(throws: PlanFailure.self) { try PlanRunner(kernel: RecordingKernel(), timeline: nil).run(plan) }
    }
}

@Suite struct LayerPlanTests {
    let manifest = Manifest(image: "rootfs.squashfs", size: 40 << 20, sha256: String(repeating: "ab", count: 32), version: "0.1.0",
                            buildTime: 0)
    let vm = LayerManifest(name: "vm", size: 19 << 20, sha256: String(repeating: "cd", count: 32), version: "0.1.0", buildTime: 0,
                           bases: ["0.1.0"])
    let ai = LayerManifest(name: "ai", size: 100 << 20, sha256: String(repeating: "ef", count: 32), version: "0.1.0", buildTime: 0,
                           bases: ["0.1.0"])

    @Test func layersAreCopiedBeforeTheMediaGoesAndStackedInOrder() throws {
        let plan = try RootPlan().stageOne(.init(manifest: manifest, memTotalKiB: 2 << 20, algorithmsOffered: "lz4 [zstd]", upper: .zram,
                                                 ramLimitMiB: nil, layers: [vm, ai]))
        let shell = plan.shell.split(separator: "\n").map(String.init)
        // The tmpfs holds the image and both layers, a MiB of slack each.
        #expect(shell.contains("mount -t tmpfs -o nosuid,nodev,noexec,mode=0700,size=162m spirit-image /run/spirit/image"))
        let copyVM = try #require(shell.firstIndex { $0.hasPrefix("cat MEDIA/layers/vm.squashfs > /run/spirit/image/layers/vm.squashfs") })
        let copyAI = try #require(shell.firstIndex { $0.hasPrefix("cat MEDIA/layers/ai.squashfs") })
        let release = try #require(shell.firstIndex { $0.hasPrefix("umount MEDIA") })
        #expect(copyVM < copyAI && copyAI < release)
        #expect(shell.contains("mount -t squashfs -o ro,loop /run/spirit/image/layers/vm.squashfs /run/spirit/layers/vm  # if it was not left out"))
        #expect(shell.last == "mount -t overlay -o lowerdir=/run/spirit/layers/vm:/run/spirit/layers/ai:/run/spirit/lower,upperdir=/run/spirit/rw/upper,workdir=/run/spirit/rw/work overlay /sysroot")
        #expect(plan.undoShell.contains("umount /run/spirit/layers/ai"))
        #expect(plan.details["copy"]?.contains("layers vm (19456 KiB), ai (102400 KiB)") == true)
    }

    @Test func withoutLayersThePlanIsTheImageAlone() throws {
        let plan = try RootPlan().stageOne(.init(manifest: manifest, memTotalKiB: 2 << 20, algorithmsOffered: "lz4", upper: .zram, ramLimitMiB: nil))
        #expect(!plan.shell.contains("layer"))
        #expect(plan.shell.contains("lowerdir=/run/spirit/lower,"))
    }
}

@Suite struct LayerMergeTests {
    @Test func theNewestLayerIsOnTopOfTheRootsOwnUsr() throws {
        let merge = LayerMerge()
        #expect(merge.mount(layers: []) == nil)
        let spec = try #require(merge.mount(layers: ["vm", "ai"]))
        #expect(spec.description == "mount -t overlay -o ro,lowerdir=/run/spirit/layers/ai/usr:/run/spirit/layers/vm/usr:/run/spirit/layers/.base-usr spirit-layers /usr")
        #expect(merge.baseMount.description.contains("/usr /run/spirit/layers/.base-usr"))
    }

    @Test func usersAreFoundByTheLayersDeviceOrByPath() {
        // loop3: major 7, minor 3.
        let device: UInt64 = 7 << 8 | 3
        let qemu = LayerMerge.ProcessView(pid: 812, command: "qemu-system-x86", maps: """
            55d0c000-55d0d000 r--p 00000000 07:03 112 /usr/bin/qemu-system-x86_64
            7f00-7f01 r--p 00000000 00:1f 9 /usr/lib/x86_64-linux-gnu/libc.so.6
            """, links: ["/root", "/"])
        let shell = LayerMerge.ProcessView(pid: 301, command: "sh", maps: "5500-5600 r-xp 00000000 00:1f 40 /bin/busybox\n",
                                           links: ["/usr/share/qemu", "/"])
        let other = LayerMerge.ProcessView(pid: 1, command: "init", maps: "5500-5600 r-xp 00000000 07:30 40 /bin/spirit\n",
                                           links: ["/", "/dev/console"])
        let users = LayerMerge.users(of: device, processes: [qemu, shell, other]) { $0 == "/usr/share/qemu" }
        #expect(users.map(\.pid) == [812, 301])
    }
}

@Suite struct MemoryCheckTests {
    let image = Manifest(image: "rootfs.squashfs", size: 2 << 30, sha256: String(repeating: "ab", count: 32), version: "0.1.0", buildTime: 0)

    @Test func anImageLargerThanTheRAMIsRefusedBeforeTheCopy() throws {
        let problem = try #require(RootPlan.memoryProblem(image: image, layerBytes: 0, memAvailableKiB: 900 << 10, ramLimitMiB: nil))
        #expect(problem == "rootfs.squashfs 0.1.0 needs 2048 MiB of RAM and 64 MiB to run; this machine has 900 MiB available (crom.ram.limit is not set): refused before the copy")
        #expect(RootPlan.memoryProblem(image: image, layerBytes: 0, memAvailableKiB: 3 << 20, ramLimitMiB: nil) == nil)
    }

    @Test func crom_ram_limitCapsItAndLayersCount() throws {
        let small = Manifest(image: "rootfs.squashfs", size: 40 << 20, sha256: image.sha256, version: "0.1.0", buildTime: 0)
        let capped = try #require(RootPlan.memoryProblem(image: small, layerBytes: 60 << 20, memAvailableKiB: 4 << 20, ramLimitMiB: 128))
        #expect(capped.contains("with its layers needs 100 MiB") && capped.contains("capped by crom.ram.limit=128")
                && capped.hasSuffix("crom.layers=none boots the image alone"))
        #expect(RootPlan.memoryProblem(image: small, layerBytes: 0, memAvailableKiB: 4 << 20, ramLimitMiB: 128) == nil)
    }
}
