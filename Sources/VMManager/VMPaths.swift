/// Every path the VM manager uses, under one injectable root (`""` on a
/// Spirit machine; a test directory in host tests), so that a test points
/// the daemon at its own tree (STYLE.md, lesson 4).
public struct VMPaths: Sendable, Equatable {
    public var root: String

    public init(root: String = "") {
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    /// The definitions: NAME.toml.
    public var definitions: String { root + "/etc/spirit/vms" }
    /// The daemon's run directory: its control socket and one directory a VM.
    public var run: String { root + "/run/spirit/vms" }
    public var controlSocket: String { root + "/run/spirit/vm.sock" }
    /// `@NAME` wrappers, one a defined VM, on the shells' PATH.
    public var wrappers: String { root + "/run/spirit/vm/bin" }
    /// What outlives a VM's run: the OVMF vars copy, the TPM's state.
    public var persistent: String { root + "/var/lib/spirit/vms" }

    public func definition(_ name: String) -> String { definitions + "/" + name + ".toml" }
    /// The PCI functions `spirit gpu passthrough NAME` gave to vfio-pci for
    /// the VM: what goes back when it ends. Beside the VM's directory, which
    /// a start clears.
    public func gpuRecord(_ name: String) -> String { run + "/" + name + ".gpu" }

    /// A running VM's files: its pid, sockets, overlays, console log and
    /// saved state (on the zram-backed root, so compressed in RAM).
    public struct Instance: Sendable, Equatable {
        public var directory: String
        public var persistent: String
        public var pidFile: String { directory + "/qemu.pid" }
        public var qmpSocket: String { directory + "/qmp.sock" }
        public var agentSocket: String { directory + "/agent.sock" }
        public var consoleSocket: String { directory + "/console.sock" }
        public var consoleLog: String { directory + "/console.log" }
        public var qemuLog: String { directory + "/qemu.log" }
        public var tpmSocket: String { directory + "/swtpm.sock" }
        public var stateStream: String { directory + "/state.bin" }
        public var stateRecord: String { directory + "/state.json" }
        public var ovmfVars: String { persistent + "/OVMF_VARS.fd" }
        public var tpmState: String { persistent + "/tpm" }
        public func overlay(_ disk: String) -> String { directory + "/disk-" + disk + ".qcow2" }
    }

    public func instance(_ name: String) -> Instance {
        Instance(directory: run + "/" + name, persistent: persistent + "/" + name)
    }
}
