import Overlay
import SpiritCore

/// One place a system image can come from. Each source is its own file;
/// the cascade (another issue) asks them in order.
public protocol BootSource {
    /// The name in `spirit: boot source=<name>` and in `crom.mode=`.
    var name: String { get }
    /// Finds an image and its manifest, or throws why not. `deadline` is in
    /// microseconds of CLOCK_BOOTTIME.
    func locate(deadline: Int64, console: Console) throws -> FoundImage
}

/// An image a source found: its manifest, a way to read it, and a way to
/// let go of the media once the image is in RAM.
public struct FoundImage {
    public var source: String
    /// Where it was found, for messages: `/dev/vda (ext4, CROM_SPIRIT)`.
    public var origin: String
    public var manifest: Manifest
    public var openImage: () throws -> any ImageStream
    public var release: () -> Void

    public init(source: String, origin: String, manifest: Manifest, openImage: @escaping () throws -> any ImageStream,
                release: @escaping () -> Void) {
        self.source = source
        self.origin = origin
        self.manifest = manifest
        self.openImage = openImage
        self.release = release
    }
}

/// The names of the files on every medium (ARCHITECTURE.md, "Media layout").
public enum MediaFiles {
    public static let manifest = "manifest.json"
    /// A manifest is small; a larger file is refused unread.
    public static let manifestLimit = 64 << 10
}
