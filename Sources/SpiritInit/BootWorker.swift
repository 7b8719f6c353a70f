import BootCascade
import Glibc
import ModuleLoader
import Overlay
import SpiritCore

/// The stage-1 boot, in a child of PID 1: read the flags, load the boot
/// modules, find a system image, check it and build the RAM root at
/// /sysroot; then exit 0 and leave the switch to PID 1. Any failure ends the
/// worker with a reason that PID 1 prints as `spirit: rescue: <reason>`; a
/// crash ends only this process, and PID 1 reports it the same way.
struct BootWorker {
    let config: BootConfig
    let console: Console
    let timeline = Timeline(process: "worker")

    static func main() -> Never {
        let start = Kernel.bootTimeMicros()
        let commandLine: String
        do {
            commandLine = try Kernel.readText("/proc/cmdline")
        } catch {
            Console().warning("\(error); booting with the default flags")
            commandLine = ""
        }
        let (config, warnings) = BootConfig.parse(commandLine)
        let worker = BootWorker(config: config, console: Console(debug: config.debug))
        for warning in warnings { worker.console.warning("\(warning)") }
        worker.console.debug("flags: " + config.effectiveFlags.joined(separator: " "))
        worker.console.debug("other kernel parameters: " + config.otherParameters.map(\.description).joined(separator: " "))
        worker.timeline.record(TimelineStep(step: "flags", process: "worker", pid: Kernel.pid, startMicros: start,
                                            endMicros: Kernel.bootTimeMicros(), ok: warnings.isEmpty,
                                            detail: warnings.isEmpty ? nil : "\(warnings.count) flag(s) not used as given"))
        do {
            try worker.run()
            try Kernel.writeFile(RunFiles.rootReady, "/sysroot\n")
            exit(0)
        } catch {
            worker.requestRescue("\(error)")
        }
    }

    func run() throws {
        try pause(before: .modules)
        loadModules()
        try pause(before: .cascade)
        let found = try timeline.measure("cascade", detail: { "\($0.source): \($0.origin)" }) { try findImage() }
        console.info("boot source=\(found.source) image=\(found.manifest.sha256.prefix(12))")
        try pause(before: .root)
        try RootAssembler(config: config, console: console, timeline: timeline)
            .assemble(manifest: found.manifest, openImage: found.openImage, releaseMedia: found.release)
        try pause(before: .switchRoot)
    }

    /// How long block devices may take to show up. The cascade issue
    /// replaces this with uevents and its own rules.
    static let mediaWaitSeconds: Int64 = 15

    /// Asks the boot sources this build has for an image whose manifest is
    /// signed with the key in this initramfs.
    func findImage() throws -> FoundImage {
        let sources: [any BootSource]
        switch config.mode {
        case .auto, .usb:
            sources = [USBSeedSource()]
        case .rescue:
            throw SpiritError("crom.mode=rescue asks for the rescue shell")
        case .parasite, .http, .nodus:
            throw SpiritError("no system image found: crom.mode=\(config.mode.rawValue) asks for a source this build does not have yet")
        }
        let publicKey: [UInt8]
        do {
            publicKey = try SigningKey.read(InitramfsFiles.signingPublicKey)
        } catch {
            throw SpiritError("this initramfs cannot check any image: \(error)")
        }
        var reasons: [String] = []
        for source in sources {
            let deadline = Kernel.bootTimeMicros() + Self.mediaWaitSeconds * 1_000_000
            do {
                let found = try source.locate(deadline: deadline, console: console)
                do {
                    try found.manifest.verifySignature(publicKey: publicKey)
                } catch {
                    found.release()
                    throw SpiritError("\(found.origin): \(error)")
                }
                return found
            } catch {
                console.info("source \(source.name): \(error)")
                reasons.append("\(source.name): \(error)")
            }
        }
        throw SpiritError("no system image found (" + reasons.joined(separator: "; ") + ")")
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
    func loadModules() {
        let release = Kernel.release()
        let index: ModuleIndex
        do {
            index = try ModuleIndex.load(release: release)
        } catch {
            console.warning("\(error): the initramfs has no modules for kernel \(release); going on with the built-in drivers")
            return
        }
        for problem in index.config.problems { console.warning(problem) }
        let bootList = listEntries((try? Kernel.readText(InitramfsFiles.bootModules)) ?? "")
        let priority = PriorityList((try? Kernel.readText(InitramfsFiles.modulePriorities)) ?? "")
        let uevents: UeventSocket?
        do {
            uevents = try UeventSocket()
        } catch {
            console.warning("\(error); devices that appear later will have no driver loaded for them")
            uevents = nil
        }
        let modules = BootModules(index: index, loader: ParallelLoader(loading: ModuleLoading(release: release)),
                                  console: console, timeline: timeline)
        let tally = modules.run(priority: priority, required: bootList + config.extraModules, uevents: uevents)
        console.info("modules: \(tally)")
    }

    func requestRescue(_ reason: String) -> Never {
        do {
            try Kernel.writeFile(RunFiles.rescueReason, reason + "\n")
        } catch {
            // PID 1 then reports the exit status; say the reason here.
            console.error(reason)
        }
        exit(RunFiles.rescueExitStatus)
    }
}
