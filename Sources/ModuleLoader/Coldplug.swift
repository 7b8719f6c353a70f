import SpiritCore

/// The devices that exist now and the drivers they ask for: every
/// `modalias` file under /sys/devices (symlinks are not followed).
public enum Coldplug {
    /// A USB interface of class 08, mass storage
    /// (`usb:v…p…d…dc..dsc..dp..ic08isc..ip..in..`).
    public static func isUSBMassStorage(_ modalias: String) -> Bool {
        modalias.hasPrefix("usb:") && modalias.contains("ic08")
    }

    public static func modaliases(sys: String = "/sys") -> Set<String> {
        var found: [Device] = []
        walk(sys + "/devices", into: &found, depth: 0, checkDrivers: false)
        return Set(found.map(\.modalias))
    }

    /// A device and the driver it asks for.
    public struct Device: Sendable, Equatable {
        /// Its directory under /sys/devices.
        public var path: String
        public var modalias: String
        /// Whether a driver (built in or loaded) has claimed it.
        public var hasDriver: Bool
    }

    public static func devices(sys: String = "/sys") -> [Device] {
        var found: [Device] = []
        walk(sys + "/devices", into: &found, depth: 0, checkDrivers: true)
        return found
    }

    /// The devices that no driver claimed and no module of the kernel
    /// matches (`modulesFor` is the index's lookup), split in two: those a
    /// driver could claim (a PCI, USB or virtio device: its driver is what
    /// is missing) and those that need none: the firmware's descriptions of
    /// the machine (ACPI and platform nodes, the CPU, the DMI table), which
    /// the kernel's built-in code reads, and the chipset's PCI host and ISA
    /// bridges, which the firmware and the PCI core set up. Listing the
    /// second kind as "without a driver" read like a fault on every machine.
    public static func unclaimed(_ devices: [Device], modulesFor: (String) -> [String]) -> Unclaimed {
        var result = Unclaimed()
        for device in devices where !device.hasDriver && modulesFor(device.modalias).isEmpty {
            if needsNoDriver(device.modalias) {
                result.needingNone.append(device)
            } else {
                result.needingDriver.append(device)
            }
        }
        return result
    }

    /// What `unclaimed` finds.
    public struct Unclaimed: Sendable, Equatable {
        /// Devices a driver could claim and none of this kernel's does.
        public var needingDriver: [Device] = []
        /// Firmware nodes and chipset bridges with no module for them: no driver needed.
        public var needingNone: [Device] = []
    }

    /// The modalias buses of descriptions rather than of devices a driver
    /// binds to ("acpi:PNP0A03:", "platform:pcspkr", "cpu:type:x86,…",
    /// "dmi:bvn…", and "of:" for a device tree).
    static let firmwareBuses: Set<String> = ["acpi", "platform", "cpu", "dmi", "of"]

    static func needsNoDriver(_ modalias: String) -> Bool {
        let bus = modalias.prefix { $0 != ":" }
        if firmwareBuses.contains(String(bus)) { return true }
        // PCI class 06 (bridge), subclass 00 (host) or 01 (ISA): "bc06sc00"
        // cannot occur in the IDs before it, which are hex digits.
        return bus == "pci" && (modalias.contains("bc06sc00") || modalias.contains("bc06sc01"))
    }

    /// `checkDrivers` costs a stat a device: the boot's rescans skip it.
    static func walk(_ path: String, into found: inout [Device], depth: Int, checkDrivers: Bool) {
        guard depth < 64 else { return }
        for entry in Kernel.directoryEntries(path) {
            let name = entry.name
            let child = path + "/" + name
            if entry.kind == .directory {
                walk(child, into: &found, depth: depth + 1, checkDrivers: checkDrivers)
            } else if name == "modalias", entry.kind == .regular,
                      let text = try? Kernel.readText(child) {
                let alias = text.split(separator: "\n").first.map(String.init) ?? ""
                if !alias.isEmpty {
                    found.append(Device(path: path, modalias: alias, hasDriver: checkDrivers && Kernel.exists(path + "/driver")))
                }
            }
        }
    }
}

/// One kernel uevent: `add@/devices/…` then `KEY=value` fields.
public struct Uevent: Sendable, Equatable {
    public var action: String
    public var devpath: String
    public var fields: [String: String]

    public var modalias: String? { fields["MODALIAS"] }

    /// Parses the kernel's format (NUL-separated); nil for anything else,
    /// such as udev's own messages, which start with "libudev".
    public static func parse(_ bytes: [UInt8]) -> Uevent? {
        let parts = bytes.split(separator: 0, omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }
        guard let header = parts.first, let at = header.firstIndex(of: "@") else { return nil }
        var fields: [String: String] = [:]
        for part in parts.dropFirst() {
            guard let equals = part.firstIndex(of: "=") else { continue }
            fields[String(part[..<equals])] = String(part[part.index(after: equals)...])
        }
        return Uevent(action: fields["ACTION"] ?? String(header[..<at]), devpath: fields["DEVPATH"] ?? String(header[header.index(after: at)...]),
                      fields: fields)
    }
}
