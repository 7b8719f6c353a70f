import Glibc
import SpiritCore
import SystemPackage

/// What PID 1 (spirit-init, an Embedded Swift binary without SHA-256,
/// JSON or mountinfo parsing) asks /bin/spirit to do for it.
enum InitHelpers {
    /// `spirit init-journal KIND [KEY VALUE]…`: a record of PID 1's
    /// (`shutdown`) in the chained journal, as process "init". Stage 2's
    /// `boot.stage2` goes with the supervisor's start (`supervise --record`).
    static func journal(_ arguments: [String]) -> Int32 {
        guard let kind = arguments.first, let fields = JournalRecord.fields(pairs: arguments.dropFirst()) else {
            return Usage.fail("usage: spirit init-journal KIND [KEY VALUE]...")
        }
        if let problem = JournalFile(process: "init").append(kind, fields) {
            Console().error("the journal cannot be written: \(problem)")
            return 111
        }
        return 0
    }

    /// `spirit shutdown-finish ACTION STARTED_US`, once PID 1 has stopped
    /// every other process: the journal saved to the boot medium, swap
    /// off, every filesystem unmounted (or remounted read-only), sync, and
    /// the last line. PID 1 then calls reboot(2).
    static func shutdownFinish(_ arguments: [String]) -> Int32 {
        guard arguments.count == 2, let action = PowerAction(rawValue: arguments[0]), let start = Int64(arguments[1]) else {
            return Usage.fail("usage: spirit shutdown-finish reboot|halt|poweroff STARTED_US")
        }
        let console = Console(debug: BootConfig.current().debug)
        // Every writer has stopped: the journal is whole.
        let journal = JournalFile(process: "init")
        if let medium = try? BootMedium(json: Kernel.readFile(RunFiles.bootMedium)), let line = JournalMedium.save(journal, medium: medium) {
            console.info("shutdown: " + line)
        }
        Kernel.sync()
        swapOff(console: console)
        let summary = unmountAll(console: console)
        Kernel.sync()
        console.info("shutdown: every process stopped, \(summary), in \(formatMilliseconds(Kernel.bootTimeMicros() - start)) ms; \(action.rawValue) now")
        return 0
    }

    /// Turns off every swap device in /proc/swaps (the zram swap of
    /// crom.upper=tmpfs), so that its device can go.
    static func swapOff(console: Console) {
        let lines = ((try? Kernel.readText("/proc/swaps")) ?? "").split(separator: "\n").dropFirst()
        for line in lines {
            guard let device = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).first else { continue }
            do {
                try Kernel.swapOff(String(device))
            } catch {
                console.warning("shutdown: \(error)")
            }
        }
    }

    /// Unmounts every filesystem but / in the reverse order of mounting; one
    /// that is busy is remounted read-only so that its data is safe.
    /// Returns a summary for the console.
    static func unmountAll(console: Console) -> String {
        let entries = MountInfoEntry.parse((try? Kernel.readText("/proc/self/mountinfo")) ?? "")
        var unmounted = 0
        var readOnly = 0
        var failed: [String] = []
        for entry in entries.reversed() where entry.mountPoint != "/" {
            do {
                try Kernel.unmount(entry.mountPoint)
                unmounted += 1
            } catch {
                do {
                    try Kernel.mount(MountSpec(source: entry.source, target: entry.mountPoint, fstype: "", flags: [.remount, .readOnly]))
                    readOnly += 1
                } catch let remountError {
                    console.debug("\(error); \(remountError)")
                    failed.append(entry.mountPoint)
                }
            }
        }
        var summary = "\(unmounted) filesystems unmounted"
        if readOnly > 0 { summary += ", \(readOnly) remounted read-only" }
        if !failed.isEmpty { summary += ", \(failed.count) left as they were (\(failed.joined(separator: " ")))" }
        return summary
    }
}
