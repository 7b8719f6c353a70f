import BootCascade
import Glibc
import ModuleLoader
import Overlay
import SpiritCore

// The rescue watcher: media and network cards that appear while the rescue shell is open.
extension RescueTools {
    /// Run by PID 1 beside the stage-1 rescue shell (`spirit rescue-watch`):
    /// loads the drivers of devices that appear (the boot worker that did
    /// so is gone) and announces boot media and network cards that appear,
    /// so that the person at the shell knows 'exit' will find them.
    static func watch() -> Int32 {
        let console = Console()
        let uevents: UeventSocket
        do {
            uevents = try UeventSocket()
        } catch {
            console.warning("\(error); media that appears now will not be announced")
            return 111
        }
        let release = Kernel.release()
        // Read on the first device that needs a driver, not at once: the
        // watcher starts with the rescue shell and must not slow it down.
        var index: ModuleIndex?
        var indexRead = false
        let loader = ParallelLoader(loading: ModuleLoading(release: release))
        while true {
            guard let event = uevents.next(milliseconds: 60_000), event.action == "add" else { continue }
            if event.modalias != nil, !indexRead {
                indexRead = true
                index = try? ModuleIndex.load(release: release)
            }
            if let alias = event.modalias, let index {
                let names = index.lookup(alias).filter { !index.config.blacklist.contains($0) }
                if !names.isEmpty { _ = loader.load(index.plan(names)) }
            }
            let name = event.fields["DEVNAME"] ?? ""
            switch event.fields["SUBSYSTEM"] {
            case "block" where !name.isEmpty:
                let device = BlockDevices.probe(name: name, path: "/dev/" + name)
                // The shell's prompt is on the line: start a new one.
                if device.label == USBSeedSource.label {
                    console.newLine()
                    console.info("media appeared: /dev/\(device): 'exit' boots from it")
                } else if device.type == "ntfs" {
                    console.newLine()
                    console.info("NTFS partition appeared: /dev/\(device): 'exit' looks for \\\(ParasiteSource.directory)\\ on it")
                }
            case "net" where event.fields["INTERFACE"].map({ $0 != "lo" }) ?? false:
                console.newLine()
                console.info("network card appeared: \(event.fields["INTERFACE"] ?? "?"): 'exit' tries DHCP and HTTP on it")
            default:
                continue
            }
        }
    }
}
