import CDrm
import CSpirit
import Glibc
import SystemPackage

/// The screen the HUD draws on: a DRM/KMS output with two dumb buffers, or
/// an fbdev framebuffer when there is no DRM driver (efifb, vesafb). The
/// caller renders XRGB8888 into its own RAM buffer and presents the damaged
/// rectangles; reading from, or drawing into, video memory is slow on real
/// hardware, so only the damage is copied.
///
/// Pixels are 32-bit 0x00RRGGBB in both cases. Not thread-safe: one owner.
public final class Display {
    public enum Kind: String, Sendable { case drm, fbdev }

    public let kind: Kind
    /// The device node: /dev/dri/card0 or /dev/fb0.
    public let device: String
    /// The kernel driver: "bochs-drm", "virtio_gpu", or fbdev's id ("EFI VGA").
    public let driver: String
    public let width: Int
    public let height: Int
    /// One line for the log: kind, driver, connector, mode, device.
    public let summary: String
    /// Why the DRM card was not used, when `open` fell back to fbdev.
    public private(set) var drmProblem: String?

    private let scanout: any Scanout
    private var closed = false

    private init(_ scanout: any Scanout, kind: Kind, device: String, driver: String, width: Int, height: Int, summary: String) {
        self.scanout = scanout
        self.kind = kind
        self.device = device
        self.driver = driver
        self.width = width
        self.height = height
        self.summary = summary
    }

    deinit { try? close() }

    /// The DRM card if it has a connected output, else the fbdev device.
    /// The error says why neither could be used.
    public static func open(card: String = "/dev/dri/card0", fbdev: String = "/dev/fb0") throws(SpiritError) -> Display {
        let drmProblem: String
        do {
            return try openDRM(card: card)
        } catch {
            drmProblem = "\(error)"
        }
        do {
            let display = try openFramebuffer(fbdev)
            display.drmProblem = drmProblem
            return display
        } catch {
            throw SpiritError("no display: \(drmProblem); \(error)")
        }
    }

    /// DRM/KMS: the first connected connector, its preferred mode, two dumb
    /// buffers and a modeset.
    public static func openDRM(card: String = "/dev/dri/card0") throws -> Display {
        let output = try DRMScanout(card: card)
        return Display(output, kind: .drm, device: card, driver: output.driver, width: output.width, height: output.height,
                       summary: "drm \(output.driver) \(output.connectorName) \(output.modeName) on \(card)")
    }

    /// fbdev: the framebuffer mapped as it is (32 bpp XRGB8888 only).
    public static func openFramebuffer(_ path: String = "/dev/fb0") throws -> Display {
        let output = try FramebufferScanout(path: path)
        return Display(output, kind: .fbdev, device: path, driver: output.driver, width: output.width, height: output.height,
                       summary: "fbdev \(output.driver) \(output.width)x\(output.height) on \(path)")
    }

    /// The whole screen, for the first frame.
    public var bounds: (x: Int, y: Int, width: Int, height: Int) { (0, 0, width, height) }

    /// Puts the damaged rectangles of `pixels` (width×height XRGB8888,
    /// `pitch` bytes a row) on the screen. With DRM the rows go into the
    /// back buffer, which is then flipped to and reported with DIRTYFB
    /// (virtio-gpu shows nothing without it); a present first waits for the
    /// previous flip (a frame at most; a second is an error). Damage outside
    /// the screen is cut off; no damage, no work. The buffers start black:
    /// the first frame damages the whole screen (`bounds`).
    public func present(pixels: UnsafeRawPointer, pitch: Int,
                        damage: [Rect]) throws(SystemError) {
        precondition(!closed, "present on a closed display")
        precondition(pitch >= width * 4, "a pitch of \(pitch) bytes is short of \(width) pixels")
        let rects = damage.map { $0.clipped(width: width, height: height) }
            .filter { !$0.isEmpty }
        if rects.isEmpty { return }
        try scanout.present(pixels, pitch: pitch, rects)
    }

    /// Gives the screen back: with DRM the CRTC gets the framebuffer and
    /// mode it had at open (fbcon's, usually), then the buffers go. Every
    /// resource is released even when the restore fails; the error is
    /// thrown after.
    public func close() throws(SystemError) {
        if closed { return }
        closed = true
        try scanout.close()
    }

    /// Copies `rects` (already on the screen) from `source` to `destination`,
    /// row by row, each buffer with its own pitch.
    public static func copy(_ rects: [Rect], from source: UnsafeRawPointer, pitch sourcePitch: Int,
                            to destination: UnsafeMutableRawPointer, pitch destinationPitch: Int) {
        for rect in rects where !rect.isEmpty {
            let bytes = rect.width * 4
            var from = source + rect.y * sourcePitch + rect.x * 4
            var to = destination + rect.y * destinationPitch + rect.x * 4
            for _ in 0..<rect.height {
                to.copyMemory(from: from, byteCount: bytes)
                from += sourcePitch
                to += destinationPitch
            }
        }
    }

    /// The clip list for DIRTYFB: (x1, y1, x2, y2), x2 and y2 exclusive; one
    /// bounding rectangle when there are more than the kernel takes
    /// (DRM_MODE_FB_DIRTY_MAX_CLIPS).
    public static func dirtyClips(_ rects: [Rect], limit: Int = 256)
        -> [(x1: UInt16, y1: UInt16, x2: UInt16, y2: UInt16)] {
        let kept = rects.filter { !$0.isEmpty }
        let list = kept.count > limit ? [Rect.bounds(kept)] : kept
        return list.map {
            (UInt16(clamping: $0.x), UInt16(clamping: $0.y), UInt16(clamping: $0.x + $0.width), UInt16(clamping: $0.y + $0.height))
        }
    }
}

/// A way to put pixels on the screen.
protocol Scanout: AnyObject {
    func present(_ pixels: UnsafeRawPointer, pitch: Int, _ rects: [Rect]) throws(SystemError)
    func close() throws(SystemError)
}

/// What a double-buffered output must copy into its back buffer: this
/// frame's damage and the frame before's, because the back buffer was last
/// drawn two frames ago (kmscon's rule).
public struct SwapDamage: Sendable {
    private var previous: [Rect] = []

    public init() {}

    /// The rectangles to copy into the back buffer for a frame with `damage`.
    public mutating func backBufferRects(for damage: [Rect]) -> [Rect] {
        defer { previous = damage }
        return previous + damage
    }
}

// MARK: - fbdev

final class FramebufferScanout: Scanout {
    let path: String
    let driver: String
    let width: Int
    let height: Int
    private let fd: CInt
    private let mapping: UnsafeMutableRawPointer
    private let mappingLength: Int
    private let origin: UnsafeMutableRawPointer
    private let pitch: Int

    init(path: String) throws {
        let fd = try Kernel.open(path, O_RDWR, hint: { errno in
            errno == .noSuchFileOrDirectory || errno == .operationNotSupportedByDevice || errno == .noSuchAddressOrDevice
                ? "is an fbdev driver loaded (efifb, simplefb, a DRM driver's fbdev emulation)?" : nil
        })
        do {
            var info = spirit_fb_info()
            try Kernel.shim("read the screen info of \(path) (FBIOGET_VSCREENINFO)") { spirit_fb_screen_info(fd, &info) }
            let driver = withUnsafeBytes(of: info.id) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            let width = Int(info.width), height = Int(info.height), pitch = Int(info.line_length)
            let screen = "\(path) (\(driver), \(width)x\(height), \(info.bits_per_pixel) bpp)"
            guard info.bits_per_pixel == 32 else {
                throw SpiritError("\(screen): only 32 bpp framebuffers are supported")
            }
            guard info.red_offset == 16, info.green_offset == 8, info.blue_offset == 0 else {
                throw SpiritError("\(screen): the pixels are not XRGB8888 (red at bit \(info.red_offset), green at \(info.green_offset), blue at \(info.blue_offset))")
            }
            let visibleStart = Int(info.y_offset) * pitch + Int(info.x_offset) * 4
            guard width > 0, height > 0, pitch >= width * 4,
                  visibleStart + (height - 1) * pitch + width * 4 <= Int(info.memory_length) else {
                throw SpiritError("\(screen): a pitch of \(pitch) bytes and \(info.memory_length) bytes of memory do not hold the screen")
            }
            let mapping = try Kernel.mapShared(fd, length: Int(info.memory_length), path)
            self.path = path
            self.fd = fd
            self.driver = driver
            self.width = width
            self.height = height
            self.pitch = pitch
            self.mapping = mapping
            self.mappingLength = Int(info.memory_length)
            self.origin = mapping + visibleStart
        } catch {
            Kernel.close(fd)
            throw error
        }
    }

    func present(_ pixels: UnsafeRawPointer, pitch sourcePitch: Int, _ rects: [Rect]) throws(SystemError) {
        // No vsync here: it may tear. It is the fallback.
        Display.copy(rects, from: pixels, pitch: sourcePitch, to: origin, pitch: pitch)
    }

    func close() throws(SystemError) {
        Kernel.unmap(mapping, length: mappingLength)
        Kernel.close(fd)
    }
}
