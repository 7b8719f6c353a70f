import Glibc
import SpiritCommands
import SpiritCore
import VMManager

/// `spirit vm …`: VMs over QEMU, through the VM manager's control socket
/// (`spirit vm daemon` is the vm service). `--root DIR` (or SPIRIT_VM_ROOT)
/// puts every path under DIR, SPIRIT_VM_CGROUP_ROOT the cgroup2 tree
/// (default /sys/fs/cgroup): host tests run the daemon that way.
enum VMCommand {
    static let usage = "vm [--root DIR] define FILE | list [--json] | start NAME [--fresh] | stop NAME [--save] [--force] [--timeout S] | "
        + "save NAME | restore NAME | pause NAME | resume NAME | exec NAME [--timeout S] [--stdin] -- CMD… | console NAME | daemon"

    static func run(_ arguments: [String]) -> Int32 {
        var words = arguments
        let root = rootOption(&words, variable: "SPIRIT_VM_ROOT")
        let paths = VMPaths(root: root)
        let client = VMClient(paths: paths)
        let name = words.count > 1 ? words[1] : ""
        let flags = Set(words.dropFirst(2))
        switch words.first {
        case "daemon" where words.count == 1:
            let cgroups = getenv("SPIRIT_VM_CGROUP_ROOT").map { String(cString: $0) } ?? "/sys/fs/cgroup"
            // The machine's own daemon (no --root) loads the hypervisor's modules when a VM needs them first.
            let loadHypervisor: (@Sendable () -> String)? = root.isEmpty ? { @Sendable in HypervisorModules.load() } : nil
            return VMDaemon.run(paths: paths, console: Console(debug: BootConfig.current().debug, kmsgPath: nil), cgroupRoot: cgroups,
                                loadHypervisor: loadHypervisor)
        case "define" where words.count == 2:
            return client.define(name)
        case "list" where words == ["list"] || words == ["list", "--json"]:
            return client.list(json: words.count == 2)
        case "start" where words.count == 2 || (words.count == 3 && flags == ["--fresh"]):
            return client.simple("start \(name)" + (flags.isEmpty ? "" : " fresh"))
        case "stop" where words.count >= 2:
            let timeout = option(words, "--timeout") ?? 30
            guard flags.isSubset(of: ["--save", "--force", "--timeout", String(timeout)]) else { break }
            return client.simple("stop \(name) \(flags.contains("--force") ? "force" : "gentle") \(flags.contains("--save") ? "save" : "off") \(timeout * 1000)")
        case "save" where words.count == 2, "restore" where words.count == 2, "pause" where words.count == 2, "resume" where words.count == 2:
            return client.simple("\(words[0]) \(name)")
        case "exec" where words.count >= 4:
            guard let dash = words.firstIndex(of: "--"), dash + 1 < words.count else { break }
            return client.exec(name, Array(words[(dash + 1)...]), shell: false, timeoutSeconds: option(Array(words[..<dash]), "--timeout") ?? 60,
                               stdin: words[..<dash].contains("--stdin"))
        case "at" where words.count >= 3:
            // `@NAME words…` (the wrapper scripts): the words through the guest's shell.
            return client.exec(name, Array(words.dropFirst(2)), shell: true, timeoutSeconds: 600)
        case "console" where words.count == 2:
            return client.console(name)
        case "help", "--help":
            print("usage: spirit \(usage)")
            return 0
        default:
            break
        }
        return Usage.fail("usage: spirit \(usage)")
    }

    static func option(_ words: [String], _ name: String) -> Int? {
        guard let index = words.firstIndex(of: name), index + 1 < words.count else { return nil }
        return Int(words[index + 1])
    }
}
