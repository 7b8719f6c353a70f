import SpiritCore

/// A VM as the VMs widget shows it, from the VM manager's `list` answer
/// (`{"vms":[{"name":…,"state":…,"agent":…,"memory-mib":…},…]}`, what
/// `spirit vm list --json` prints). Nexus reads it over the control socket:
/// a daemon never imports another.
public struct VMSummary: Sendable, Equatable {
    public var name: String
    public var state: String
    public var agent: String
    public var memoryMiB: Int64

    public init(name: String, state: String, agent: String, memoryMiB: Int64) {
        self.name = name
        self.state = state
        self.agent = agent
        self.memoryMiB = memoryMiB
    }

    /// The VMs of an answer; an entry without a name is skipped, missing
    /// fields read as "?".
    public static func parse(_ bytes: [UInt8]) -> [VMSummary] {
        let firstLine = Array(bytes.prefix { $0 != 0x0A })
        guard let document = try? JSONReader.parse(firstLine), case .array(let list)? = document["vms"] else { return [] }
        return list.compactMap { vm in
            guard let name = vm["name"]?.string else { return nil }
            return VMSummary(name: name, state: vm["state"]?.string ?? "?", agent: vm["agent"]?.string ?? "?",
                             memoryMiB: vm["memory-mib"]?.integer ?? 0)
        }
    }
}
