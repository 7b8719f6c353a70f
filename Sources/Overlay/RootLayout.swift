import SpiritCore

/// Where the RAM root's pieces live during and after the boot. Everything
/// is under /run/spirit, which moves into the new root at switch_root, so
/// that a running system can still see (and Nodus can serve) its image.
public struct RootLayout: Sendable, Equatable {
    /// tmpfs holding the copy of the image.
    public var imageDirectory = "/run/spirit/image"
    /// Where `spirit nodus hydrate` names the loop device the streamed
    /// root is mounted from (crom.nodus.stream=1).
    public static let hydrateLoop = "/run/spirit/hydrate.loop"
    /// The streamed copy's progress (HydrationProgress), for `spiritctl status`.
    public static let hydrateState = "/run/spirit/hydrate.json"
    /// The squashfs, mounted read-only from a loop device.
    public var lower = "/run/spirit/lower"
    /// The writable layer: ext4 on zram, or tmpfs.
    public var readWrite = "/run/spirit/rw"
    /// The boot medium's kernel and initramfs, kept in RAM with
    /// crom.netboot=on for `spirit serve netboot`.
    public var bootFiles = "/run/spirit/boot"
    /// Where boot media are mounted (read-only) while the image is copied.
    public var media = "/run/spirit/media"
    /// The assembled root, before switch_root.
    public var sysroot = "/sysroot"
    /// Where each add-on layer's squashfs is mounted, read-only: NAME under it.
    public var layers = "/run/spirit/layers"

    /// Where the running system keeps its media, in the order to look:
    /// the image copied into RAM, the kernel and initramfs kept with
    /// crom.netboot=on, and the boot medium while it is still mounted
    /// (`install parasite` and `serve netboot` copy or serve from there).
    public var runningMedia: [String] { [imageDirectory, bootFiles, media] }

    /// The layers' squashfs files and manifests in RAM, beside the image.
    public var layerImages: String { imageDirectory + "/layers" }
    public func layerMount(_ name: String) -> String { layers + "/" + name }

    public init() {}

    public var upper: String { readWrite + "/upper" }
    public var work: String { readWrite + "/work" }

    /// The tmpfs the image (and the layers stacked at boot) is copied
    /// into: just large enough for them.
    public func imageMount(imageBytes: Int64) -> MountSpec {
        let size = Self.tmpfsMiB(imageBytes)
        return MountSpec(source: "spirit-image", target: imageDirectory, fstype: "tmpfs", flags: [.noSUID, .noDev, .noExec],
                         data: "mode=0700,size=\(size)m")
    }

    public func squashfsMount(loopDevice: String) -> MountSpec {
        MountSpec(source: loopDevice, target: lower, fstype: "squashfs", flags: [.readOnly])
    }

    /// The writable layer: the zram device's ext4, or a tmpfs of the same size.
    public func readWriteMount(_ upper: UpperLayer, zramDevice: String, bytes: Int64) -> MountSpec {
        switch upper {
        case .zram:
            MountSpec(source: zramDevice, target: readWrite, fstype: "ext4", flags: [.noSUID, .noDev], data: "discard")
        case .tmpfs:
            MountSpec(source: "spirit-rw", target: readWrite, fstype: "tmpfs", flags: [.noSUID, .noDev], data: "mode=0755,size=\(bytes >> 20)m")
        }
    }

    /// The tmpfs size in MiB that holds `bytes` of files (each file rounds
    /// up to pages; a MiB more covers them).
    public static func tmpfsMiB(_ bytes: Int64) -> Int64 {
        (bytes + (1 << 20) - 1) / (1 << 20) + 1
    }

    /// The root: the writable layer over the layers (the first named is
    /// the topmost) over the image.
    public func overlayMount(layers names: [String] = []) -> MountSpec {
        let lowers = (names.map(layerMount) + [lower]).joined(separator: ":")
        return MountSpec(source: "overlay", target: sysroot, fstype: "overlay", flags: [],
                         data: "lowerdir=\(lowers),upperdir=\(upper),workdir=\(work)")
    }

    public func mediaMount(device: String, fstype: String) -> MountSpec {
        // vfat's file-name charset is named: kernels default it differently
        // (Debian's is ascii, whose module an initramfs may lack).
        MountSpec(source: device, target: media, fstype: fstype, flags: [.readOnly, .noSUID, .noDev, .noExec],
                  data: fstype == "vfat" ? "iocharset=utf8" : nil)
    }
}
