import SpiritCore

/// What `spirit serve netboot` serves, by URL path: the media files of
/// ARCHITECTURE.md's "Media layout" (kernel, initramfs.zst, manifest.json,
/// the image the manifest names, layers/), the iPXE loaders, and the boot
/// script it writes for each request.
public struct NetbootMedia: Sendable, Equatable {
    /// URL path without its leading `/` → the file.
    public var files: [String: String]
    /// The media files that are not in any of the places looked in.
    public var missing: [String]

    public static let kernel = "kernel"
    public static let initramfs = "initramfs.zst"
    public static let manifest = "manifest.json"
    public static let script = "boot.ipxe"
    /// Debian's ipxe package: the BIOS PXE loader (UNDI, for any NIC the
    /// BIOS can drive) and the UEFI x64 one.
    public static let biosLoader = "undionly.kpxe"
    public static let efiLoader = "ipxe.efi"

    /// Looks for each media file in `places`, first match wins (the image
    /// copied into RAM, then a still-mounted boot medium), the image under
    /// the name the manifest gives (`imageName`), the layers in `layers/`
    /// beside it, and the loaders in `loaders`. `size` says whether a path
    /// is a file (nil: not there); `list` a directory's names.
    public static func find(places: [String], imageName: String?, loaders: String,
                            size: (String) -> Int64?, list: (String) -> [String]) -> NetbootMedia {
        var files: [String: String] = [:]
        var missing: [String] = []
        let wanted = [kernel, initramfs, manifest] + (imageName.map { [$0] } ?? [])
        for name in wanted {
            if let place = places.first(where: { size($0 + "/" + name) != nil }) {
                files[name] = place + "/" + name
            } else {
                missing.append(name)
            }
        }
        // The kernel also under the name Linux's own boot folders use.
        if let path = files[kernel] { files["vmlinuz"] = path }
        for place in places {
            let directory = place + "/layers"
            for name in list(directory) where !name.hasPrefix(".") && files["layers/" + name] == nil {
                if size(directory + "/" + name) != nil { files["layers/" + name] = directory + "/" + name }
            }
        }
        for loader in [biosLoader, efiLoader] {
            if size(loaders + "/" + loader) != nil { files[loader] = loaders + "/" + loader } else { missing.append(loader) }
        }
        return NetbootMedia(files: files, missing: missing)
    }

    /// The file behind a request path (`/kernel`, `/layers/vm.squashfs`),
    /// or nil: only the names in the table are served, so `..` and
    /// anything else outside it cannot be.
    public func file(for path: String) -> String? {
        files[String(path.drop { $0 == "/" })]
    }
}

/// The iPXE script a PC gets once iPXE runs: Spirit's kernel and initramfs
/// from this server, booting from the Nodus peer `peer` over NBD.
public enum NetbootScript {
    /// The kernel's arguments besides the boot's own: both consoles, as
    /// scripts/mknetboot.sh's boot.ipxe has them.
    public static let defaultAppend = "console=tty0 console=ttyS0,115200 quiet"

    public static func render(httpBase: String, peer: String, append: String) -> String {
        let base = httpBase.hasSuffix("/") ? httpBase : httpBase + "/"
        let arguments = [append.trimmed, "crom.mode=nodus", "crom.nodus.server=\(peer)"].filter { !$0.isEmpty }.joined(separator: " ")
        return """
        #!ipxe
        # Crom-OS Spirit network boot, from spirit serve netboot at \(base)
        echo Crom-OS Spirit: kernel and initramfs from \(base), the image from the Nodus peer \(peer)
        kernel \(base)\(NetbootMedia.kernel) initrd=\(NetbootMedia.initramfs) \(arguments)
        initrd \(base)\(NetbootMedia.initramfs)
        boot

        """
    }
}
