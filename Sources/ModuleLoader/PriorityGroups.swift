import SpiritCore

/// The design's module priorities (/etc/modules-load.d/spirit.conf):
/// virtualization first, to claim devices before other drivers do; then
/// storage; then network; graphics last, so it can be left to a VM.
public enum ModuleGroup: Int, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case virtualization = 1, storage, network, graphics

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .virtualization: "virtualization"
        case .storage: "storage"
        case .network: "network"
        case .graphics: "graphics"
        }
    }

    /// The group of a driver that coldplug found, from where it lives in
    /// the kernel's tree.
    public static func of(path: String) -> ModuleGroup {
        if path.hasPrefix("kernel/drivers/net/") || path.hasPrefix("kernel/net/") { return .network }
        if path.hasPrefix("kernel/drivers/gpu/") || path.hasPrefix("kernel/drivers/video/") { return .graphics }
        if path.hasPrefix("kernel/drivers/vfio/") || path.hasPrefix("kernel/arch/x86/kvm/") || path.hasPrefix("kernel/virt/") {
            return .virtualization
        }
        return .storage
    }

    /// A module of the CPU's hypervisor (kvm, kvm_intel, kvm_amd: they make
    /// /dev/kvm and claim no device), from where it lives in the tree.
    public static func isHypervisor(path: String) -> Bool {
        path.hasPrefix("kernel/arch/") && path.contains("/kvm/")
    }
}

/// The names listed under each `# Priority N` heading of spirit.conf, the
/// format of the design's file; names before any heading count as storage.
public struct PriorityList: Sendable, Equatable {
    public var names: [ModuleGroup: [String]] = [:]

    /// The system's list (/etc/modules-load.d/spirit.conf under `root`):
    /// none when the file is not there.
    public static func read(root: String = "") -> PriorityList {
        PriorityList((try? Kernel.readText(root + InitramfsFiles.modulePriorities)) ?? "")
    }

    public init(_ text: String) {
        var group = ModuleGroup.storage
        for raw in text.split(separator: "\n") {
            let line = raw.trimmed
            if line.hasPrefix("#") {
                let words = line.dropFirst().split(separator: " ")
                if words.count >= 2, words[0].lowercased() == "priority",
                   let number = Int(words[1].filter(\.isNumber)), let heading = ModuleGroup(rawValue: number) {
                    group = heading
                }
                continue
            }
            names[group, default: []] += listEntries(line)
        }
    }
}
