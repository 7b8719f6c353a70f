import SpiritCore

/// A VM as its file in /etc/spirit/vms/NAME.toml says it: read with
/// SpiritCore's `ConfigFile`, so that every wrong value is an error of the
/// form `<file>:<line>: <field>: <why>`, as the service files' are.
public struct VMDefinition: Sendable, Equatable {
    public enum Firmware: String, Sendable, CaseIterable {
        case bios
        case uefi
        /// OVMF's Secure Boot build with a private copy of the Microsoft
        /// vars (what Windows 11 wants), SMM on, q35 only.
        case uefiSecure = "uefi-secure"
    }

    /// Where the guest agent listens: a virtio-serial port named
    /// org.qemu.guest_agent.0 (needs virtio drivers in the guest), or a
    /// plain COM port (`qemu-ga -m isa-serial`: no driver needed, which is
    /// how a physical Windows install runs before virtio-win is on it).
    public enum AgentPort: String, Sendable, CaseIterable {
        case virtioSerial = "virtio-serial"
        case isaSerial = "isa-serial"
        case none
    }

    /// What `@NAME <command>` runs the command line through.
    public enum GuestOS: String, Sendable, CaseIterable {
        case linux
        case windows
    }

    public struct Disk: Sendable, Equatable {
        public enum Format: String, Sendable, CaseIterable { case raw, qcow2 }
        public enum Bus: String, Sendable, CaseIterable { case virtio, ahci, ide }
        /// The `[disk.NAME]` table's name.
        public var name: String
        /// A file or a block device (the physical Windows disk).
        public var path: String
        public var format: Format
        public var bus: Bus
        /// Writes go to a qcow2 overlay in RAM (/run/spirit/vms/NAME/), never
        /// to `path`: true unless the file says `overlay = false`.
        public var overlay: Bool
        public var readOnly: Bool

        public init(name: String, path: String, format: Format, bus: Bus, overlay: Bool, readOnly: Bool) {
            self.name = name
            self.path = path
            self.format = format
            self.bus = bus
            self.overlay = overlay
            self.readOnly = readOnly
        }
    }

    public struct Network: Sendable, Equatable {
        public enum Mode: String, Sendable, CaseIterable { case none, user }
        public var mode: Mode
        public var model: String
    }

    public struct Input: Sendable, Equatable {
        /// evdev devices QEMU grabs (input-linux), by path.
        public var evdev: [String]
        /// The key combination that gives the keyboard back to Spirit.
        public var grabToggle: String
    }

    public var name: String
    public var memoryMiB: Int
    public var cpus: Int
    public var machine: String
    /// tcg, kvm or kvm:tcg (KVM when /dev/kvm works, else TCG).
    public var accelerator: String
    public var firmware: Firmware
    public var ovmfCode: String
    public var ovmfVars: String
    public var tpm: Bool
    public var disks: [Disk]
    public var network: Network
    public var agent: AgentPort
    public var os: GuestOS
    /// PCI functions given to the guest with vfio-pci (`0000:01:00.0`): the
    /// GPU and its audio function. Parsed now; the hand-over comes later.
    public var gpuDevices: [String]
    public var input: Input?
    /// Direct kernel boot (test guests, appliances): a kernel, its initrd
    /// and its command line instead of firmware and a boot disk.
    public var kernel: String?
    public var initrd: String?
    public var append: String?
    /// The emulated display card (`-vga`): std, virtio, none.
    public var vga: String
    public var qemu: String

    public static let fields: Set<String> = [
        "memory-mib", "cpus", "machine", "accel", "firmware", "ovmf-code", "ovmf-vars", "tpm", "agent", "os",
        "kernel", "initrd", "append", "vga", "qemu",
        "network.mode", "network.model", "gpu.devices", "input.evdev", "input.grab-toggle",
    ]
    static let diskFields: Set<String> = ["path", "format", "bus", "overlay", "read-only"]

    /// Debian's OVMF (package ovmf), 4 MiB builds.
    public static func defaultCode(_ firmware: Firmware) -> String {
        firmware == .uefiSecure ? "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd" : "/usr/share/OVMF/OVMF_CODE_4M.fd"
    }

    public static func defaultVars(_ firmware: Firmware) -> String {
        firmware == .uefiSecure ? "/usr/share/OVMF/OVMF_VARS_4M.ms.fd" : "/usr/share/OVMF/OVMF_VARS_4M.fd"
    }

    /// A VM's name: what its file is called and what `@NAME` says.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 32 && name.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x2D || byte == 0x5F
        } && name.utf8.first != 0x2D
    }

    /// The definition in `text`, the content of `path` (NAME.toml: the
    /// VM's name is the file's).
    public static func parse(_ text: String, path: String) throws(ConfigError) -> VMDefinition {
        let file = try ConfigFile.parse(text, path: path)
        let base = String(path.split(separator: "/").last ?? "")
        let name = base.hasSuffix(".toml") ? String(base.dropLast(5)) : base
        guard isValidName(name) else {
            throw ConfigError(path: path, line: 1, field: "name",
                              "'\(name)' is not a VM name: the file is NAME.toml, NAME in a-z, 0-9, '-' and '_', at most 32")
        }
        for entry in file.entries {
            if entry.key.hasPrefix("disk.") {
                let parts = entry.key.split(separator: ".")
                guard parts.count == 3, diskFields.contains(String(parts[2])) else {
                    throw file.error(entry, "not a disk field (\(diskFields.sorted().joined(separator: ", ")))")
                }
            } else if !fields.contains(entry.key) {
                throw file.error(entry, "unknown field")
            }
        }
        func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ default: T) throws(ConfigError) -> T where T.RawValue == String {
            guard let (text, entry) = try file.string(key) else { return `default` }
            guard let value = T(rawValue: text) else {
                throw file.error(entry, "'\(text)' is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return value
        }
        let firmware: Firmware = try choice("firmware", .bios)
        let machine = try file.string("machine")?.value ?? "q35"
        if let (text, entry) = try file.string("machine"), !["q35", "pc"].contains(text) {
            throw file.error(entry, "'\(text)' is not q35 or pc")
        }
        if firmware == .uefiSecure, machine != "q35", let entry = file["firmware"] {
            throw file.error(entry, "Secure Boot needs machine = \"q35\" (SMM)")
        }
        let accelerator = try file.string("accel")?.value ?? "kvm:tcg"
        if let (text, entry) = try file.string("accel"), !["tcg", "kvm", "kvm:tcg"].contains(text) {
            throw file.error(entry, "'\(text)' is not tcg, kvm or kvm:tcg")
        }
        var disks: [Disk] = []
        for table in file.tables where table.name.hasPrefix("disk.") {
            let disk = String(table.name.dropFirst(5))
            guard isValidName(disk) else {
                throw ConfigError(path: path, line: table.line, field: table.name, "a disk name is a-z, 0-9, '-' and '_'")
            }
            let key = "disk." + disk + "."
            guard let (diskPath, _) = try file.string(key + "path") else {
                throw ConfigError(path: path, line: table.line, field: key + "path", "a disk needs a path")
            }
            guard diskPath.hasPrefix("/") else {
                throw file.error(file[key + "path"]!, "'\(diskPath)' is not an absolute path")
            }
            let format: Disk.Format = try choice(key + "format", .raw)
            disks.append(Disk(name: disk, path: diskPath, format: format, bus: try choice(key + "bus", .virtio),
                              overlay: try file.bool(key + "overlay") ?? true, readOnly: try file.bool(key + "read-only") ?? false))
        }
        if let table = file.tables.first(where: { $0.name != "network" && $0.name != "gpu" && $0.name != "input" && !$0.name.hasPrefix("disk.") }) {
            throw ConfigError(path: path, line: table.line, field: table.name, "unknown table (network, gpu, input, disk.NAME)")
        }
        let gpu = try file.strings("gpu.devices") ?? []
        for device in gpu where !isPCIAddress(device) {
            throw file.error(file["gpu.devices"]!, "'\(device)' is not a PCI address (0000:01:00.0)")
        }
        var input: Input?
        if let evdev = try file.strings("input.evdev") {
            input = Input(evdev: evdev, grabToggle: try file.string("input.grab-toggle")?.value ?? "ctrl-scrolllock")
        }
        let kernel = try file.string("kernel")?.value
        if kernel == nil, let key = ["initrd", "append"].first(where: { file[$0] != nil }) {
            throw file.error(file[key]!, "only with kernel = \"…\" (direct kernel boot)")
        }
        let definition = VMDefinition(
            name: name,
            memoryMiB: Int(try file.integer("memory-mib", in: 16...1_048_576) ?? 1024),
            cpus: Int(try file.integer("cpus", in: 1...256) ?? 1),
            machine: machine,
            accelerator: accelerator,
            firmware: firmware,
            ovmfCode: try file.string("ovmf-code")?.value ?? defaultCode(firmware),
            ovmfVars: try file.string("ovmf-vars")?.value ?? defaultVars(firmware),
            tpm: try file.bool("tpm") ?? false,
            disks: disks,
            network: Network(mode: try choice("network.mode", .none), model: try file.string("network.model")?.value ?? "e1000"),
            agent: try choice("agent", .virtioSerial),
            os: try choice("os", .linux),
            gpuDevices: gpu,
            input: input,
            kernel: kernel,
            initrd: try file.string("initrd")?.value,
            append: try file.string("append")?.value,
            vga: try file.string("vga")?.value ?? "std",
            qemu: try file.string("qemu")?.value ?? "/usr/bin/qemu-system-x86_64")
        if let entry = file["vga"], !["std", "virtio", "none", "qxl", "cirrus"].contains(definition.vga) {
            throw file.error(entry, "'\(definition.vga)' is not std, virtio, qxl, cirrus or none")
        }
        if definition.tpm, definition.firmware == .bios, let entry = file["tpm"] {
            throw file.error(entry, "a TPM is for UEFI guests (firmware = \"uefi\" or \"uefi-secure\")")
        }
        return definition
    }

    /// `DDDD:BB:DD.F`, lower-case hex.
    public static func isPCIAddress(_ text: String) -> Bool {
        let hex = "0123456789abcdef"
        let shape = Array(text)
        guard shape.count == 12, shape[4] == ":", shape[7] == ":", shape[10] == "." else { return false }
        return shape.enumerated().allSatisfy { index, character in
            [4, 7, 10].contains(index) || (index == 11 ? ("0"..."7").contains(character) : hex.contains(character))
        }
    }
}
