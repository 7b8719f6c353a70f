import Glibc
import SpiritCore
import SystemPackage

enum Shutdown {
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
