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
        try timeline.measure("modules", detail: { $0 }) { try loadBootModules() }
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

    /// Loads the modules listed in the initramfs and those of `crom.modules=`.
    /// A missing or failing module is a warning: the step that needs it
    /// says what is missing.
    func loadBootModules() throws -> String {
        let release = Kernel.release()
        let listed = ((try? Kernel.readText(InitramfsFiles.bootModules)) ?? "")
            .split(separator: "\n")
            .map { $0.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first?.trimmingSpaces ?? "" }
            .filter { !$0.isEmpty }
        let index: ModuleIndex
        do {
            index = try ModuleIndex.load(release: release)
        } catch {
            console.warning("\(error): the initramfs has no modules for kernel \(release); going on with the built-in drivers")
            return "no modules for \(release)"
        }
        let plan = index.plan(listed + config.extraModules)
        for name in plan.missing {
            console.warning("module \(name): not found for kernel \(release); skipped")
        }
        let loader = ModuleLoading(release: release)
        var loaded = 0
        var present = 0
        var failed = 0
        for module in plan.modules {
            switch loader.load(module) {
            case .loaded:
                loaded += 1
                console.debug("loaded \(module.name)")
            case .alreadyLoaded:
                present += 1
            case .failed(let message):
                failed += 1
                console.warning(message)
            }
        }
        let summary = "\(loaded) loaded, \(present) already there, \(plan.builtin.count) built in, \(failed) failed, \(plan.missing.count) not found"
        console.info("modules: " + summary)
        return summary
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

extension Substring {
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
