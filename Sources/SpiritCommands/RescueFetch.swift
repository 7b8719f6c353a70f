import BootCascade
import Glibc
import ModuleLoader
import Net
import Overlay
import SpiritCore

// spirit-fetch: the next boot attempt from an http:// or https:// base URL.
extension RescueTools {
    /// Fetches the manifest under a base URL and checks it here (its
    /// signature and the initramfs's minimum version), then ends the rescue shell with the flags that make PID 1's
    /// next boot attempt take the image from that URL (copied into RAM and
    /// hashed by the boot worker, as every image).
    static func fetch(_ arguments: [String]) -> Int32 {
        guard arguments.count == 1, let text = arguments.first else {
            return Usage.fail("usage: spirit-fetch URL (the base URL of the media files: http[s]://HOST[:PORT]/PATH/)")
        }
        let console = Console.tool
        do {
            let url = try HTTPURL.parse(text)
            let network = Network()
            let hasLease = network.interfaces().contains { Kernel.exists(network.leaseDirectory + "/\($0).lease") }
            if !hasLease {
                let context = SourceContext(deadline: Kernel.bootTimeMicros() + 15_000_000, console: console,
                                            devices: DeviceActivity(listening: false), cancel: CancelFlag())
                console.info("network: \(try network.up(deadline: context.deadline, context: context))")
            }
            let found = try HTTPSource.fetchManifest(base: url, idleMillis: 10_000, console: console)
            try ImageTrust.read().check(found.manifest)
            print("\(url): \(found.manifest.image) \(found.manifest.version), \(found.manifest.size >> 20) MiB, "
                  + "SHA-256 \(found.manifest.sha256.prefix(12)): signature valid")
            try Kernel.writeFile(RunFiles.bootFlags, "crom.mode=http crom.http=\(url)\n")
        } catch {
            console.error("unable to fetch from \(text): \(error)")
            return 111
        }
        guard let pid = (try? Kernel.readText(RunFiles.rescueShellPID)).flatMap({ pid_t($0.trimmed) }), pid > 1 else {
            print("not in the rescue shell: the next boot attempt takes the image from there ('exit' in the rescue shell)")
            return 0
        }
        print("continuing the boot from there")
        // An interactive shell leaves on a hangup; PID 1 then tries the boot again.
        try? Kernel.kill(pid, SIGHUP)
        return 0
    }
}
