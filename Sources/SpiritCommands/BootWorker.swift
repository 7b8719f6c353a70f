import AIRuntime
import BootCascade
import Glibc
import ModuleLoader
import Overlay
import Persistence
import SpiritCore

/// The stage-1 boot, in a child of PID 1: read the flags, load the boot
/// modules, find a system image, check it and build the RAM root at
/// /sysroot, move /dev, /proc, /sys and /run into it and free the
/// initramfs; then exit 0 and leave the last syscalls of the switch to
/// PID 1 (spirit-init). Any failure ends the
/// worker with a reason that PID 1 prints as `spirit: rescue: <reason>`; a
/// crash ends only this process, and PID 1 reports it the same way.
struct BootWorker {
    let config: BootConfig
    let console: Console
    let timeline = Timeline(process: "worker")
    let journal = JournalFile(process: "worker")

    static func main() -> Never {
        let start = Kernel.bootTimeMicros()
        let commandLine: String
        do {
            commandLine = try Kernel.readText("/proc/cmdline")
        } catch {
            Console().warning("\(error); booting with the default flags")
            commandLine = ""
        }
        var flags = commandLine.trimmed
        // One attempt's extra flags, from `spirit-fetch` in the rescue shell.
        if let extra = try? Kernel.readText(RunFiles.bootFlags) {
            Kernel.remove(RunFiles.bootFlags)
            flags += " " + extra.trimmed
            Console().info("this attempt adds: \(extra.trimmed)")
        }
        let (config, warnings) = BootConfig.parse(flags)
        // The one parse of the boot's flags: stage 2 and the services read this file.
        do {
            try Kernel.makeDirectory(RunFiles.directory, parents: true)
            try Kernel.writeFileAtomically(RunFiles.bootConfig, config.json(warnings: warnings))
        } catch {
            Console().warning("\(error); stage 2 will read /proc/cmdline instead")
        }
        let worker = BootWorker(config: config, console: Console(debug: config.debug))
        // The boot media's filesystems load at their first mount, nbd at its
        // first use (modules.mount).
        OnDemandLoading.install(console: worker.console)
        for warning in warnings { worker.console.warning("\(warning)") }
        if let problem = worker.journal.append("boot.flags", [("flags", config.effectiveFlags.joined(separator: " ")),
                                                              ("warnings", warnings.map { "\($0)" }.joined(separator: "; "))]) {
            worker.console.warning("the journal cannot be written: \(problem)")
        }
        worker.console.debug("flags: " + config.effectiveFlags.joined(separator: " "))
        worker.console.debug("other kernel parameters: " + config.otherParameters.map(\.description).joined(separator: " "))
        worker.timeline.record(TimelineStep(step: "flags", process: "worker", pid: Kernel.pid, startMicros: start,
                                            endMicros: Kernel.bootTimeMicros(), ok: warnings.isEmpty,
                                            detail: warnings.isEmpty ? nil : "\(warnings.count) flag(s) not used as given"))
        do {
            try worker.run()
            try worker.prepareSwitchRoot()
            exit(0)
        } catch {
            worker.requestRescue("\(error)")
        }
    }

    func run() throws {
        try pause(before: .modules)
        let devices = DeviceActivity()
        let linking = [.auto, .http, .nodus].contains(config.mode) ? setUpLinksAsTheyAppear() : nil
        loadModules(activity: devices)
        linking?.raise()
        try pause(before: .cascade)
        let trust = imageTrust()
        var cascade = Cascade(sources: sources(trust: try? trust.get()), mode: config.mode, trust: trust, console: console,
                              devices: devices, timeline: timeline)
        cascade.journal = journal
        do {
            _ = try cascade.run { found in try build(from: found) }
        } catch let failure as Cascade.Failure {
            // The console contract: the message, one line per source tried
            // saying why it gave up; PID 1 then prints `spirit: rescue: <reason>`.
            console.info(Self.noImageMessage)
            for (source, reason) in failure.sources { console.info("\(source): \(reason)") }
            try? Kernel.writeFile(RunFiles.cascadeReport, failure.sources.map { "\($0.source): \($0.reason)\n" }.joined())
            throw failure
        }
        try pause(before: .switchRoot)
    }

    /// Checks /sysroot, says so in root-ready (which moves with /run into
    /// the new root, where PID 1 looks for it), then moves the API
    /// filesystems into it and deletes the initramfs's files. A failure
    /// before anything moved leaves stage 1 intact for the rescue shell.
    func prepareSwitchRoot() throws {
        let newRoot = RootLayout().sysroot
        try SwitchRoot.check(newRoot: newRoot, initPath: "/sbin/init")
        try Kernel.writeFile(RunFiles.rootReady, newRoot + "\n")
        let plan = RootPlan.prepareSwitchRoot(newRoot: newRoot)
        console.debug("switch_root plan:\n" + plan.shell)
        // Its step is recorded where /run will be by then: in the new root.
        let timeline = Timeline(directory: newRoot + RunFiles.directory, process: "worker")
        do {
            try PlanRunner(timeline: timeline, note: { [console] in console.debug("switch_root: \($0)") }).run(plan)
        } catch {
            Kernel.remove(RunFiles.rootReady)
            throw SpiritError("switch_root failed: \(error)")
        }
    }

    static let noImageMessage = "No Spirit found. Awaiting network or media..."

    /// The boot sources this build has, in the cascade's order of
    /// preference (CascadeEngine.preference). A new source is one file in
    /// Sources/BootCascade and one line here.
    func sources(trust: ImageTrust?) -> [any BootSource] {
        [
            ParasiteSource(),
            // A stick that is still to come (its disk not scanned yet, or
            // plugged in late with crom.mode=usb) is waited for as long as the network.
            USBSeedSource(timeoutMicros: Int64(max(config.networkTimeoutSeconds, 1)) * 1_000_000, slot: config.slot,
                          waitsForLateStick: config.mode == .usb),
            HTTPSource(baseURL: config.httpURL, networkTimeoutSeconds: config.networkTimeoutSeconds),
            // Checks each peer's manifest itself, to try the next peer when one is refused.
            NodusSource(server: config.nodusServer, discovery: config.nodus == .discover, trust: trust,
                        networkTimeoutSeconds: config.networkTimeoutSeconds, stream: config.nodusStream),
        ]
    }

    /// The key every image's manifest must be signed with and the lowest
    /// version it may have (anti-rollback), baked into the initramfs.
    func imageTrust() -> Result<ImageTrust, SpiritError> {
        do {
            let trust = try ImageTrust.read()
            console.debug("anti-rollback: \(trust.minimumDescription)")
            return .success(trust)
        } catch {
            return .failure(SpiritError("this initramfs cannot check any image: \(error)"))
        }
    }

    /// Copies the chosen image into RAM, checks it and builds /sysroot. A
    /// failure while the image is read or checked is the source's (a
    /// broken disk, a server that broke off, a tampered image): the
    /// cascade goes on to the next source. A failure after the media is let
    /// go (zram, the mounts) is the machine's: rescue. Either way the plan
    /// has undone what it did.
    func build(from found: FoundImage) throws {
        try pause(before: .root)
        // The last boot's journal, saved on this medium at its shutdown:
        // its head goes into this boot's chain.
        if let directory = found.mediaDirectory, let previous = JournalMedium.previous(mediaDirectory: directory) {
            console.info(previous.line)
            journal.append("boot.previous", previous.fields)
        }
        let layers = chooseLayers(found)
        let meminfo = (try? Kernel.readText("/proc/meminfo")) ?? ""
        if let available = Zram.memAvailableKiB(meminfo: meminfo),
           let problem = RootPlan.memoryProblem(image: found.manifest, layerBytes: layers.reduce(0) { $0 + $1.manifest.size },
                                                memAvailableKiB: available, ramLimitMiB: config.ramLimitMiB) {
            found.release()
            throw Cascade.Refusal(problem)
        }
        // crom.persist=on: the archive on a disk medium is restored (PersistBoot).
        let restore = found.mediaDirectory.flatMap { config.persist ? PersistBoot(archive: $0 + "/" + PersistArchive.fileName, console: console) : nil }
        do {
            let stacked = try RootAssembler(config: config, console: console, timeline: timeline)
                .assemble(manifest: found.manifest, layers: layers, openImage: found.openImage,
                          releaseMedia: { copyModels(found); keepBootFiles(found); found.release() },
                          persist: restore.map { restore in (restore.archive, restore.read, { restore.apply(root: RootLayout().sysroot) }) },
                          stream: found.stream.map { stream in { try startHydrator(stream, manifest: found.manifest) } })
            try? Kernel.writeFile(RunFiles.imageManifest, found.manifest.json)
            // The copy was hashed as it was read (RootPlan's verify step):
            // here it matched the signed manifest.
            journal.append("boot.root", [("image", found.manifest.image), ("version", found.manifest.version),
                                         ("sha256", found.manifest.sha256),
                                         ("verified", found.stream == nil ? "image sha256 matches the signed manifest"
                                             : "streamed: each block against the signed block list, the image's sha256 when its copy ends"),
                                         ("layers", stacked.map { "\($0.name) \($0.version) \($0.sha256)" }.joined(separator: ", "))])
            try? Kernel.writeFile(RunFiles.bootMedium, (found.medium ?? BootMedium(source: found.source.rawValue, origin: found.origin)).json)
            if !stacked.isEmpty {
                console.info("layers: " + stacked.map { "\($0.name) \($0.version)" }.joined(separator: ", ") + " stacked over the image")
                let origin = found.layers?.origin ?? found.origin
                let now = Int64(time(nil))
                try? LayerState(entries: stacked.map { .init($0, origin: origin, stacking: .boot, added: now) }).save()
            }
        } catch let failure as PlanFailure where Self.isTheSources(failure) {
            throw Cascade.Refusal("\(failure)")
        } catch let failure as PlanFailure {
            throw failure
        } catch {
            // The plan could not be made (no zram device): the media goes.
            found.release()
            throw error
        }
    }

    /// How long the hydrator may take to hand over its loop device.
    static let hydratorStartMicros: Int64 = 60_000_000

    /// crom.nodus.stream=1: starts `spirit nodus hydrate` in a session of
    /// its own (it outlives this worker and switch_root: PID 1 adopts it)
    /// and waits until it names the read-only loop device over /dev/nbdN
    /// that the root is mounted from. If it ends first, its status is the
    /// reason (its own lines on the console say why).
    func startHydrator(_ stream: StreamedImage, manifest: Manifest) throws {
        let layout = RootLayout()
        Kernel.remove(RootLayout.hydrateLoop)
        let pid = try Spawn.spawn("/proc/self/exe", [
            "spirit", "nodus", "hydrate", "--peers", stream.peers.joined(separator: ","),
            "--manifest", layout.imageDirectory + "/" + RootAssembler.manifestFile,
            "--image", layout.imageDirectory + "/" + manifest.image, "--ready", RootLayout.hydrateLoop,
            "--stall-ms", String(stream.stallMillis),
        ], options: .init(newSession: true))
        // A hydrator that did not start is ended and its files go: it must
        // not hold the image's tmpfs, write the state a copy-first boot's
        // nodus reads, or be spared by PID 1 at switch_root.
        func abandon(_ why: String, running: Bool) -> SpiritError {
            if running {
                try? Kernel.kill(pid, SIGKILL)
                _ = try? Spawn.wait(pid)
            }
            for file in [RunFiles.hydratorPID, RootLayout.hydrateLoop, RootLayout.hydrateState] { Kernel.remove(file) }
            return SpiritError(why)
        }
        // PID 1 spares it when it ends stage 1's processes at switch_root.
        do {
            try Kernel.writeFile(RunFiles.hydratorPID, "\(pid)\n")
        } catch {
            throw abandon("\(error)", running: true)
        }
        let deadline = Kernel.bootTimeMicros() + Self.hydratorStartMicros
        while !Kernel.exists(RootLayout.hydrateLoop) {
            if let (_, status) = try Spawn.wait(pid, noHang: true) {
                throw abandon("spirit nodus hydrate \(status) before its device was ready", running: false)
            }
            guard Kernel.bootTimeMicros() < deadline else {
                throw abandon("spirit nodus hydrate did not name its device within \(Self.hydratorStartMicros / 1_000_000) s",
                              running: true)
            }
            Kernel.sleep(milliseconds: 10)
        }
    }

    /// crom.netboot=on: the medium's kernel and initramfs, copied into
    /// /run/spirit/boot (carried over switch_root) while the medium is still
    /// there, for `spirit serve netboot`; a medium without them, or a
    /// network boot, is said and the boot goes on.
    func keepBootFiles(_ found: FoundImage) {
        guard config.netboot else { return }
        guard let directory = found.mediaDirectory else {
            console.info("netboot: a \(found.source) boot has no kernel or initramfs to keep; spirit serve netboot will need --media DIR")
            return
        }
        let folder = (found.medium?.slot).map { directory + "/" + $0 } ?? directory
        let kept = RootLayout().bootFiles
        do {
            try Kernel.makeDirectory(kept, parents: true)
            for name in [MediaFiles.kernel, MediaFiles.initramfs] {
                var stream = try FileImageStream(path: folder + "/" + name)
                defer { stream.close() }
                _ = try ImageCopy.copy(from: &stream, to: kept + "/" + name, expectedSize: .max)
            }
            console.info("netboot: kept \(MediaFiles.kernel) and \(MediaFiles.initramfs) of \(found.origin) in \(kept) (crom.netboot=on)")
        } catch {
            console.info("netboot: unable to keep the kernel and initramfs (\(error)); spirit serve netboot will need --media DIR")
        }
    }

    /// The model packs beside the image, copied into /run/spirit/models
    /// (carried over switch_root) while the medium is still there, unless
    /// crom.ai=off: a pack is on a medium to be used, as a layer is. Each is
    /// checked as `spirit ai pull` checks it; one that fails is said and
    /// left out, and the boot goes on.
    func copyModels(_ found: FoundImage) {
        guard config.ai != "off", let shelf = found.models else { return }
        let names: [String]
        do {
            names = try shelf.names()
        } catch {
            console.info("models: unable to list \(shelf.origin): \(error); none copied")
            return
        }
        let wanted = config.ai == "auto" ? names : names.filter { $0 == config.ai }
        guard !wanted.isEmpty else { return }
        let started = Kernel.bootTimeMicros()
        let store = ModelStore(paths: AIPaths(), console: console)
        for name in wanted {
            do {
                try store.pull(name, from: shelf)
            } catch {
                console.info("model \(name): left out: \(error)")
            }
        }
        timeline.record(TimelineStep(step: "models", process: "boot-worker", pid: Kernel.pid, startMicros: started,
                                     endMicros: Kernel.bootTimeMicros(), ok: true, detail: wanted.joined(separator: ", ")))
    }

    /// The layers `crom.layers=` asks for that the source has, each
    /// manifest signed with this initramfs's key and fitting the image; a
    /// layer that is missing or refused is said on the console and left
    /// out: the boot goes on without it.
    func chooseLayers(_ found: FoundImage) -> [RootAssembler.BootLayer] {
        guard config.layers != .none else { return [] }
        guard let shelf = found.layers else {
            if case .named(let names) = config.layers {
                console.info("layers: \(found.source) carries no layers; \(names.joined(separator: ", ")) left out")
            }
            return []
        }
        let names: [String]
        do {
            names = config.layers.chosen(offered: config.layers == .all ? try shelf.names() : [])
        } catch {
            console.info("layers: unable to list \(shelf.origin): \(error); none stacked")
            return []
        }
        guard !names.isEmpty else { return [] }
        guard case .success(let trust) = imageTrust() else { return [] }
        let key = trust.publicKey
        var chosen: [RootAssembler.BootLayer] = []
        for name in names {
            do {
                let manifest = try shelf.manifest(name)
                guard manifest.name == name else { throw SpiritError("its manifest names the layer \(manifest.name)") }
                try manifest.check(publicKey: key, baseVersion: found.manifest.version)
                chosen.append(.init(manifest: manifest, open: { try shelf.open(manifest) }))
                journal.append("boot.layer", [("layer", name), ("result", "chosen"), ("version", manifest.version), ("sha256", manifest.sha256)])
            } catch {
                console.info("layer \(name): left out: \(error)")
                journal.append("boot.layer", [("layer", name), ("result", "left out"), ("reason", "\(error)")])
            }
        }
        return chosen
    }

    /// Whose failure it is: the source's before the copy starts (the
    /// tmpfs for the image) and when the image does not match its manifest;
    /// from the copy on, once the media is let go, the machine's.
    static func isTheSources(_ failure: PlanFailure) -> Bool {
        switch failure.step {
        case .action(RootPlan.Action.verify, _): true
        case .action(RootPlan.Action.stream, _): true // the hydrator could not start streaming from the peers
        case .action(RootPlan.Action.copy, _): false
        default: failure.phase == "copy"
        }
    }

    /// `crom.break=<step>`: a shell on the console before the step; the boot
    /// goes on when it exits.
    func pause(before point: BreakPoint) throws {
        guard config.breakPoints.contains(point) else { return }
        let tty = Spawn.consoleTerminal()
        console.info("break before \(point.rawValue): shell on \(tty); exit it to go on with the boot")
        let shell = try Spawn.spawn("/bin/sh", ["-sh"], options: .init(newSession: true, tty: tty))
        let status = try Spawn.wait(shell)?.status
        console.info("break shell \(status.map(\.description) ?? "ended"); going on with \(point.rawValue)")
    }

    /// The modules of stage 1 (see BootModules): the priority groups, the
    /// boot list of the initramfs and `crom.modules=`, coldplug, uevents.
    /// A missing or failing module is a warning: the step that needs it
    /// says what is missing.
    func loadModules(activity: DeviceActivity) {
        let release = Kernel.release()
        let index: ModuleIndex
        do {
            // An initramfs built before modules.spirit, or a damaged one:
            // said once, then the text files.
            index = try ModuleIndex.load(release: release) { problem in
                if case .missing = problem { console.info(problem.description) } else { console.warning(problem.description) }
            }
        } catch {
            console.warning("\(error): the initramfs has no modules for kernel \(release); going on with the built-in drivers")
            activity.stopListening()
            return
        }
        for problem in index.config.problems { console.warning(problem) }
        let bootList = listEntries((try? Kernel.readText(InitramfsFiles.bootModules)) ?? "")
        let priority = PriorityList.read()
        let uevents: UeventSocket?
        do {
            uevents = try UeventSocket()
        } catch {
            console.warning("\(error); devices that appear later will have no driver loaded for them")
            uevents = nil
            activity.stopListening()
        }
        let modules = BootModules(index: index, loader: ParallelLoader(loading: ModuleLoading(release: release)),
                                  console: console, timeline: timeline, holding: config.stageOneHeldModuleGroups(console: console),
                                  together: [.storage, .network])
        let tally = modules.run(priority: priority, required: bootList + config.extraModules, uevents: uevents,
                                 activity: activity)
        console.info("modules: \(tally)")
    }

    /// Sets each network card's link up the moment its driver makes it,
    /// while stage 1's other modules still load, until the flag returned
    /// is raised; DHCP starts with the cascade, as before. A link needs its
    /// autonegotiation first: 1–3 s on copper, 2 s for QEMU's e1000 and
    /// e1000e (measured: the link came 2.07 and 2.12 s after being set up
    /// at the cascade's start), which so overlaps the module step and
    /// coldplug instead of following them. A second uevent listener: the
    /// module loader's gets every event too.
    func setUpLinksAsTheyAppear() -> CancelFlag? {
        let uevents: UeventSocket
        do {
            uevents = try UeventSocket()
        } catch {
            console.debug("network: links are set up with the cascade (\(error))")
            return nil
        }
        let stop = CancelFlag()
        let network = Network()
        let console = console
        Threads.detach {
            // Cards of built-in drivers are there already.
            var up = Set(network.interfaces())
            for name in up.sorted() {
                network.setUp(name)
                console.debug("network: \(name) set up")
            }
            while !stop.isSet {
                guard let event = uevents.next(milliseconds: 100), event.action == "add", event.fields["SUBSYSTEM"] == "net",
                      let name = event.fields["INTERFACE"], !up.contains(name), network.isCard(name) else { continue }
                up.insert(name)
                network.setUp(name)
                console.debug("network: \(name) set up as it appeared")
            }
        }
        return stop
    }

    func requestRescue(_ reason: String) -> Never {
        journal.append("boot.rescue", [("reason", reason)])
        do {
            try Kernel.writeFile(RunFiles.rescueReason, reason + "\n")
        } catch {
            // PID 1 then reports the exit status; say the reason here.
            console.error(reason)
        }
        exit(RunFiles.rescueExitStatus)
    }
}
