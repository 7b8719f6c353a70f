import SpiritCore

/// How layers added at run time join the running system, as systemd-sysext
/// merges its extensions: a read-only overlay on /usr whose lower layers are
/// the added layers' `usr/` (the newest on top) over the root's own /usr,
/// bind-mounted aside before the first merge. A layer's programs, libraries
/// and data are then at the very paths they have when the layer is stacked
/// at boot (crom.layers=), so QEMU finds its firmware and modules at their
/// built-in paths. overlayfs cannot add a lower layer to a mounted root, and
/// running each layer from its own prefix needs a wrapper per program (its
/// loader, library path, data and module directories): merging over /usr
/// needs neither. The price, as with sysext: while a layer added at run time
/// is merged, /usr is read-only (EROFS).
public struct LayerMerge: Sendable, Equatable {
    public var layout = RootLayout()
    /// The merged directory.
    public var target = "/" + LayerManifest.prefix

    public init() {}

    /// The root's own /usr, seen from under the merge.
    public var base: String { layout.layers + "/.base-" + LayerManifest.prefix }

    /// The base's bind mount, made once before the first merge.
    public var baseMount: MountSpec {
        MountSpec(source: target, target: base, fstype: "", flags: [.bind])
    }

    /// The overlay on /usr for the layers added at run time (the last
    /// added is the topmost); nil when none is left.
    public func mount(layers names: [String]) -> MountSpec? {
        guard !names.isEmpty else { return nil }
        let lowers = names.reversed().map { layout.layerMount($0) + "/" + LayerManifest.prefix } + [base]
        return MountSpec(source: "spirit-layers", target: target, fstype: "overlay", flags: [.readOnly],
                         data: "lowerdir=" + lowers.joined(separator: ":"))
    }

    /// A process as /proc shows it, for finding who uses a layer.
    public struct ProcessView: Sendable, Equatable {
        public var pid: Int
        public var command: String
        /// /proc/PID/maps.
        public var maps: String
        /// Where /proc/PID/exe, cwd, root and fd/* point.
        public var links: [String]

        public init(pid: Int, command: String, maps: String, links: [String]) {
            self.pid = pid
            self.command = command
            self.maps = maps
            self.links = links
        }
    }

    /// The processes that use a layer: a file of it mapped (its program, a
    /// library: /proc/PID/maps names the layer's device, `MAJ:MIN` in hex),
    /// or open, as its program, working directory or root, under /usr where
    /// the layer has that path (`inLayer`).
    public static func users(of device: UInt64, processes: [ProcessView], inLayer: (String) -> Bool) -> [ProcessView] {
        let major = (device >> 8) & 0xfff | (device >> 32) & ~0xfff
        let minor = device & 0xff | (device >> 12) & ~0xff
        let tag = hex(major) + ":" + hex(minor)
        return processes.filter { process in
            let mapped = process.maps.split(separator: "\n").contains { line in
                let fields = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: true)
                return fields.count > 3 && fields[3] == tag
            }
            return mapped || process.links.contains { link in
                link.hasPrefix("/" + LayerManifest.prefix + "/") && inLayer(link)
            }
        }
    }

    static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return digits.count < 2 ? "0" + digits : digits
    }
}
