import Overlay
import SpiritCore

/// One place a system image can come from. Each source is its own file
/// (ParasiteSource, USBSeedSource, HTTPSource; NodusSource joins them);
/// the cascade (Cascade, CascadeEngine) starts them all at once, each on
/// its own thread, and commits to the most preferred one that is ready.
public protocol BootSource: Sendable {
    /// The name in `spirit: boot source=<name>` and in `crom.mode=`; one of
    /// `CascadeEngine.preference`.
    var name: SourceName { get }
    /// How long the cascade waits for this source at most, from its start.
    var timeoutMicros: Int64 { get }
    /// Finds an image and its manifest, or throws why not, by
    /// `context.deadline`. Runs on its own thread; returns early when
    /// `context.cancel` is set. What it mounts or starts, its
    /// `FoundImage.release` lets go of.
    func locate(_ context: SourceContext) throws -> FoundImage
}

/// A boot source's name, as `spirit: boot source=<name>`, `crom.mode=` and
/// the cascade's order of preference spell it.
public struct SourceName: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }

    public static let parasite: SourceName = "parasite"
    public static let usb: SourceName = "usb"
    public static let http: SourceName = "http"
    public static let nodus: SourceName = "nodus"

    /// The one source `crom.mode=` names; nil for auto and rescue.
    public init?(mode: BootMode) {
        switch mode {
        case .parasite: self = .parasite
        case .usb: self = .usb
        case .http: self = .http
        case .nodus: self = .nodus
        case .auto, .rescue: return nil
        }
    }
}

/// What every source gets from the cascade.
public struct SourceContext: Sendable {
    /// CLOCK_BOOTTIME microseconds by which the source gives up.
    public var deadline: Int64
    public var console: Console
    /// When devices have settled (uevents and module loads gone quiet).
    public var devices: DeviceActivity
    /// Set once the cascade has chosen: a source still looking stops.
    public var cancel: CancelFlag

    public init(deadline: Int64, console: Console, devices: DeviceActivity, cancel: CancelFlag) {
        self.deadline = deadline
        self.console = console
        self.devices = devices
        self.cancel = cancel
    }
}

/// A flag threads of the cascade read to know they should stop.
public final class CancelFlag: @unchecked Sendable {
    let monitor = Monitor()
    private var set = false

    public init() {}

    public var isSet: Bool { monitor.withLock { set } }

    public func raise() {
        monitor.withLock { set = true }
        monitor.broadcast()
    }

    public func check(_ source: SourceName) throws {
        if isSet { throw SpiritError("\(source): stopped, another source was chosen") }
    }
}

/// An image a source found: its manifest, a way to read it, and a way to
/// let go of the media once the image is in RAM.
public struct FoundImage: Sendable {
    public var source: SourceName
    /// Where it was found, for messages: `/dev/vda (ext4, CROM_SPIRIT)`.
    public var origin: String
    public var manifest: Manifest
    public var openImage: @Sendable () throws -> any ImageStream
    public var release: @Sendable () -> Void
    /// The layers beside the image, readable until `release`; nil for a
    /// source that carries none.
    public var layers: LayerShelf?
    /// The model packs beside the image (copied into RAM at boot unless
    /// crom.ai=off), readable until `release`; nil for a source without.
    public var models: ModelShelf?
    /// The disk it is on, for /run/spirit/boot-medium.json (persistence
    /// writes there later); nil for a network source.
    public var medium: BootMedium?
    /// Where the media files are while the medium is mounted (until
    /// `release`): the persistence archive is read from there.
    public var mediaDirectory: String?
    /// crom.nodus.stream=1: the peers to stream the image from (host:port),
    /// with how long one may take over a block; nil: copy it first.
    public var stream: StreamedImage?

    public init(source: SourceName, origin: String, manifest: Manifest, openImage: @escaping @Sendable () throws -> any ImageStream,
                release: @escaping @Sendable () -> Void, layers: LayerShelf? = nil, models: ModelShelf? = nil, medium: BootMedium? = nil,
                mediaDirectory: String? = nil) {
        self.source = source
        self.origin = origin
        self.manifest = manifest
        self.openImage = openImage
        self.release = release
        self.layers = layers
        self.models = models
        self.medium = medium
        self.mediaDirectory = mediaDirectory
    }
}

/// Where a streaming boot (crom.nodus.stream=1) reads its image from.
public struct StreamedImage: Sendable, Equatable {
    public var peers: [String]
    public var stallMillis: Int
    public init(peers: [String], stallMillis: Int) {
        self.peers = peers
        self.stallMillis = stallMillis
    }
}

/// The names of the files on every medium (ARCHITECTURE.md, "Media layout").
public enum MediaFiles {
    public static let manifest = "manifest.json"
    public static let kernel = "kernel"
    public static let initramfs = "initramfs.zst"
    /// A manifest is small; a larger file is refused unread.
    public static let manifestLimit = 64 << 10

    /// Reads and parses the manifest in `directory`, and checks that the
    /// image it names is there. Shared by the sources that mount media.
    static func readManifest(directory: String, origin: String) throws -> (Manifest, imagePath: String) {
        let manifestPath = directory + "/" + manifest
        let manifestBytes = try Kernel.readFile(manifestPath)
        guard manifestBytes.count <= manifestLimit else {
            throw SpiritError("\(manifestPath) is \(manifestBytes.count) bytes, more than a manifest can be")
        }
        let parsed = try Manifest.parse(manifestBytes)
        let imagePath = directory + "/" + parsed.image
        guard Kernel.exists(imagePath) else { throw SpiritError("the manifest names \(parsed.image), which is not on \(origin)") }
        return (parsed, imagePath)
    }
}
