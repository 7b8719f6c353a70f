import BootCascade
import Glibc
import ModuleLoader
import Net
import Overlay
import SpiritCore

// spirit-diag: what a person at the rescue shell needs to know first.
extension RescueTools {
    /// Hardware, modules, block devices, network, why each source gave
    /// up, and the timeline: what to look at (or paste) when a boot failed.
    static func diag(_ arguments: [String]) -> Int32 {
        guard arguments.isEmpty else { return Usage.fail("spirit-diag takes no argument") }
        func section(_ title: String) { print("\n== \(title)") }
        func first(_ path: String) -> String? {
            (try? Kernel.readText(path))?.split(separator: "\n").first.map(String.init)
        }
        section("hardware")
        let cpuinfo = (try? Kernel.readText("/proc/cpuinfo")) ?? ""
        let cpus = cpuinfo.split(separator: "\n").filter { $0.hasPrefix("processor") }.count
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":").last?.trimmed ?? "?"
        print("machine: \(first("/sys/class/dmi/id/sys_vendor") ?? "?") \(first("/sys/class/dmi/id/product_name") ?? "?")")
        print("cpu: \(cpus) x \(model)")
        let memory = Zram.memTotalKiB(meminfo: (try? Kernel.readText("/proc/meminfo")) ?? "") ?? 0
        print("memory: \(memory >> 10) MiB")
        print("kernel: \(Kernel.release()); command line: \(first("/proc/cmdline") ?? "?")")
        print("firmware: " + (Kernel.exists("/sys/firmware/efi") ? "UEFI" : "BIOS (or UEFI CSM)"))

        section("modules")
        let loaded = ((try? Kernel.readText("/proc/modules")) ?? "").split(separator: "\n").map { String($0.prefix { $0 != " " }) }
        print("\(loaded.count) loaded: \(loaded.sorted().joined(separator: " "))")
        _ = ModulesCommand.run(["missing"])

        section("block devices")
        let devices = BlockDevices.scan()
        if devices.isEmpty { print("none") }
        for device in devices {
            let sectors = first("/sys/class/block/\(device.name)/size").flatMap { Int64($0) } ?? 0
            print("\(device.path)\t\(sizeText(sectors * 512))\t\(device.type ?? "-")\t\(device.label ?? "-")")
        }
        print("USB controller: " + (BlockDevices.hasUSBController() ? "yes" : "none"))

        section("network")
        let network = Network()
        let interfaces = Kernel.listDirectory("/sys/class/net").filter { $0 != "lo" }
        if interfaces.isEmpty { print("no network interface") }
        for name in interfaces {
            let base = "/sys/class/net/\(name)"
            let driver = Kernel.listDirectory(base + "/device/driver/module").isEmpty ? "" : " driver " + readLink(base + "/device/driver")
            print("\(name): \(first(base + "/operstate") ?? "?"), carrier \(first(base + "/carrier") ?? "?"), "
                  + "MAC \(first(base + "/address") ?? "?")\(driver)")
            if let lease = (try? Kernel.readText(network.leaseDirectory + "/\(name).lease")).flatMap(Network.Lease.parse) {
                print("  DHCP: \(lease)")
            }
        }

        section("boot sources (last attempt)")
        print((try? Kernel.readText(RunFiles.cascadeReport))?.trimmed ?? "no cascade report (the cascade has not given up)")
        // What every source checked each manifest against (anti-rollback).
        do {
            print("anti-rollback: " + (try ImageTrust.read()).minimumDescription)
        } catch {
            print("anti-rollback: \(error)")
        }

        section("timeline")
        if let document = try? Kernel.readFile(Timeline(process: "").documentPath), let steps = try? TimelineStep.steps(document: document) {
            print(TimelineStep.table(steps))
        } else {
            print("no timeline")
        }
        return 0
    }

    static func readLink(_ path: String) -> String {
        Kernel.readLink(path)?.split(separator: "/").last.map(String.init) ?? "?"
    }

    static func sizeText(_ bytes: Int64) -> String {
        if bytes >= 10 << 30 { return "\(bytes >> 30) GiB" }
        if bytes >= 10 << 20 { return "\(bytes >> 20) MiB" }
        return "\(bytes >> 10) KiB"
    }
}
