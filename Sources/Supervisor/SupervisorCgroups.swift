import Glibc
import SpiritCore
import SystemPackage

/// The supervisor's cgroups: the cgroup2 tree services run in, and what a
/// supervisor that died left running.
extension SupervisorLoop {
    /// cgroup2 on /sys/fs/cgroup (mounted here if the kernel has it and
    /// nothing is mounted there), with the memory and cpu controllers on.
    func prepareCgroups() -> String? {
        let root = "/sys/fs/cgroup"
        let mounts = MountInfoEntry.parse((try? Kernel.readText("/proc/self/mountinfo")) ?? "")
        if let mounted = mounts.last(where: { $0.mountPoint == root }) {
            guard mounted.fstype == "cgroup2" else {
                console.warning("\(root) is \(mounted.fstype), not cgroup2: services run without cgroup limits")
                return nil
            }
        } else {
            do {
                try Kernel.makeDirectory(root)
                try Kernel.mount(MountSpec(source: "cgroup2", target: root, fstype: "cgroup2", flags: [.noSUID, .noDev, .noExec]))
            } catch {
                console.warning("\(error): services run without cgroup limits")
                return nil
            }
        }
        do {
            try ProcessSpawner.enableControllers(cgroupRoot: root)
        } catch {
            console.warning("\(error): the memory and cpu limits of services are off")
        }
        return root
    }

    /// A supervisor that died left its services running (they went to
    /// PID 1): stop them before starting them again.
    func stopLeftovers() {
        for file in Kernel.listDirectory(paths.pids) where file.hasSuffix(".pid") {
            let path = paths.pids + "/" + file
            if let text = try? Kernel.readText(path), let pid = Int32(text.trimmed), pid > 1 {
                if (try? Kernel.kill(-pid, SIGKILL)) != nil {
                    say(.warning, "service \(file.dropLast(4)): stopped process \(pid), left by the previous supervisor")
                }
            }
            Kernel.remove(path)
        }
    }
}
