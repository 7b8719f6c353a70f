import CDrm
import CSpirit
import Glibc
import SystemPackage

// libdrm's modesetting calls (drmModeSetCrtc, drmModeAddFB, the dumb-buffer
// calls, drmModePageFlip, drmModeDirtyFB) return -errno like our shims, so
// they go through Kernel.shim; its getters return NULL with errno set.

/// A DRM/KMS output: one connector, one CRTC, two dumb buffers.
final class DRMScanout: Scanout {
    let card: String
    let driver: String
    let width: Int
    let height: Int
    let connectorName: String
    let modeName: String

    private let fd: CInt
    private let crtc: UInt32
    private var connector: UInt32
    private var mode: drmModeModeInfo
    /// The CRTC as we found it, given back at close (fbcon's framebuffer).
    private let saved: drmModeCrtcPtr?
    private var buffers: [DumbBuffer]
    /// The buffer on the screen.
    private var front = 0
    private var flipPending = false
    /// Whether the driver flips; if not, we draw into the front buffer.
    private var flips = true
    private var dirtySupported = true
    private var swapDamage = SwapDamage()

    init(card: String) throws {
        let fd = try Kernel.open(card, O_RDWR, hint: { errno in
            errno == .noSuchFileOrDirectory || errno == .operationNotSupportedByDevice || errno == .noSuchAddressOrDevice ? "is a DRM driver loaded?" : nil
        })
        var resources: drmModeResPtr?
        var chosen: drmModeConnectorPtr?
        var saved: drmModeCrtcPtr?
        var buffers: [DumbBuffer] = []
        defer {
            drmModeFreeResources(resources)
            drmModeFreeConnector(chosen)
        }
        do {
            let driver = try Self.driverName(fd, card)
            var dumb: UInt64 = 0
            guard drmGetCap(fd, UInt64(DRM_CAP_DUMB_BUFFER), &dumb) == 0, dumb != 0 else {
                throw SpiritError("\(card) (\(driver)) has no dumb buffers")
            }
            resources = drmModeGetResources(fd)
            guard let resources else {
                throw SystemError("read the KMS resources of \(card) (\(driver))", Errno(rawValue: spirit_errno()),
                                  hint: "is it a render-only device without outputs?")
            }
            let connectors = UnsafeBufferPointer(start: resources.pointee.connectors, count: Int(resources.pointee.count_connectors))
            for id in connectors {
                guard let candidate = drmModeGetConnector(fd, id) else { continue }
                if candidate.pointee.connection == DRM_MODE_CONNECTED, candidate.pointee.count_modes > 0 {
                    chosen = candidate
                    break
                }
                drmModeFreeConnector(candidate)
            }
            guard let chosen else { throw SpiritError("no connected connector on \(card) (\(driver))") }
            var connector = chosen.pointee.connector_id
            let connectorName = Self.connectorName(chosen.pointee)
            let modes = UnsafeBufferPointer(start: chosen.pointee.modes, count: Int(chosen.pointee.count_modes))
            var mode = modes.first { $0.type & UInt32(DRM_MODE_TYPE_PREFERRED) != 0 } ?? modes[0]
            let width = Int(mode.hdisplay), height = Int(mode.vdisplay)
            let modeName = "\(width)x\(height)@\(mode.vrefresh)"
            guard let crtc = Self.crtc(for: chosen.pointee, fd: fd, resources: resources.pointee) else {
                throw SpiritError("no CRTC can drive connector \(connectorName) on \(card) (\(driver))")
            }
            saved = drmModeGetCrtc(fd, crtc)
            for _ in 0..<2 { buffers.append(try DumbBuffer(fd: fd, card: card, width: width, height: height)) }
            let first = buffers[0].framebuffer
            try Kernel.shim("set the mode \(modeName) on \(connectorName) of \(card) (\(driver))", hint: { errno in
                errno == .permissionDenied || errno == .notPermitted ? "another process is the DRM master" : nil
            }) {
                drmModeSetCrtc(fd, crtc, first, 0, 0, &connector, 1, &mode)
            }
            self.card = card
            self.fd = fd
            self.driver = driver
            self.width = width
            self.height = height
            self.connector = connector
            self.connectorName = connectorName
            self.modeName = modeName
            self.mode = mode
            self.crtc = crtc
            self.saved = saved
            self.buffers = buffers
        } catch {
            buffers.forEach { $0.release(fd: fd) }
            drmModeFreeCrtc(saved)
            Kernel.close(fd)
            throw error
        }
    }

    func present(_ pixels: UnsafeRawPointer, pitch: Int, _ rects: [Rect]) throws(SystemError) {
        try waitForFlip()
        if flips {
            let back = 1 - front
            Display.copy(swapDamage.backBufferRects(for: rects), from: pixels, pitch: pitch,
                         to: buffers[back].pixels, pitch: buffers[back].pitch)
            let rc = drmModePageFlip(fd, crtc, buffers[back].framebuffer, UInt32(DRM_MODE_PAGE_FLIP_EVENT), nil)
            if rc == 0 {
                flipPending = true
                front = back
            } else if -rc == EINVAL || -rc == ENOSYS || -rc == EOPNOTSUPP {
                // No page flip here: the back buffer holds the whole frame,
                // so it becomes the one front buffer for good. (Without a
                // mode, SETCRTC would turn the CRTC off.)
                flips = false
                try Kernel.shim("show the frame on \(connectorName) of \(card) (drmModeSetCrtc)") {
                    drmModeSetCrtc(fd, crtc, buffers[back].framebuffer, 0, 0, &connector, 1, &mode)
                }
                front = back
            } else {
                throw SystemError("flip to the next frame on \(connectorName) of \(card)", Errno(rawValue: -rc))
            }
        } else {
            Display.copy(rects, from: pixels, pitch: pitch, to: buffers[front].pixels, pitch: buffers[front].pitch)
        }
        try markDirty(buffers[front].framebuffer, rects)
    }

    /// DIRTYFB: tells drivers that copy to the host (virtio-gpu) or to a
    /// shadow what changed. Drivers without it say ENOSYS once.
    private func markDirty(_ framebuffer: UInt32, _ rects: [Rect]) throws(SystemError) {
        guard dirtySupported else { return }
        var clips = Display.dirtyClips(rects).map { drm_clip_rect(x1: $0.x1, y1: $0.y1, x2: $0.x2, y2: $0.y2) }
        let rc = drmModeDirtyFB(fd, framebuffer, &clips, UInt32(clips.count))
        if rc == -ENOSYS || rc == -EOPNOTSUPP {
            dirtySupported = false
        } else if rc < 0 {
            throw SystemError("mark \(clips.count) damaged rectangles on \(card) (drmModeDirtyFB)", Errno(rawValue: -rc))
        }
    }

    /// Waits for the flip event of the last page flip: its old front buffer
    /// is the next back buffer.
    private func waitForFlip() throws(SystemError) {
        var buffer = [UInt8](repeating: 0, count: 1024)
        while flipPending {
            var wanted = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            if try Kernel.poll(&wanted, milliseconds: 1000) == 0 {
                flipPending = false
                throw SystemError("wait for the page flip on \(card)", .timedOut)
            }
            let count = try buffer.withMutableBytes { raw throws(SystemError) in try Kernel.read(fd, into: raw, card) } ?? 0
            if DRMEvents.types(in: buffer[0..<count]).contains(UInt32(DRM_EVENT_FLIP_COMPLETE)) { flipPending = false }
        }
    }

    func close() throws(SystemError) {
        try? waitForFlip()
        var problem: SystemError?
        if let saved, saved.pointee.mode_valid != 0, saved.pointee.buffer_id != 0 {
            do {
                try Kernel.shim("give \(connectorName) of \(card) back its mode") {
                    drmModeSetCrtc(fd, saved.pointee.crtc_id, saved.pointee.buffer_id, saved.pointee.x, saved.pointee.y,
                                   &connector, 1, &saved.pointee.mode)
                }
            } catch {
                problem = error
            }
        }
        // Without a saved CRTC the kernel's lastclose gives fbcon its mode back.
        drmModeFreeCrtc(saved)
        buffers.forEach { $0.release(fd: fd) }
        buffers = []
        Kernel.close(fd)
        if let problem { throw problem }
    }

    /// DRM_IOCTL_VERSION's driver name ("bochs-drm", "virtio_gpu").
    private static func driverName(_ fd: CInt, _ card: String) throws(SystemError) -> String {
        guard let version = drmGetVersion(fd) else {
            let errno = Errno(rawValue: spirit_errno())
            throw SystemError("identify the driver of \(card) (DRM_IOCTL_VERSION)", errno,
                              hint: errno == .inappropriateIOCTLForDevice ? "\(card) is not a DRM device" : nil)
        }
        defer { drmFreeVersion(version) }
        return version.pointee.name.map { String(cString: $0) } ?? "unnamed driver"
    }

    private static func connectorName(_ connector: drmModeConnector) -> String {
        let type = drmModeGetConnectorTypeName(connector.connector_type).map { String(cString: $0) } ?? "Unknown"
        return "\(type)-\(connector.connector_type_id)"
    }

    /// The CRTC the connector's encoder drives now, else the first one any
    /// of its encoders can drive.
    private static func crtc(for connector: drmModeConnector, fd: CInt, resources: drmModeRes) -> UInt32? {
        if connector.encoder_id != 0, let encoder = drmModeGetEncoder(fd, connector.encoder_id) {
            defer { drmModeFreeEncoder(encoder) }
            if encoder.pointee.crtc_id != 0 { return encoder.pointee.crtc_id }
        }
        let crtcs = UnsafeBufferPointer(start: resources.crtcs, count: Int(resources.count_crtcs))
        for id in UnsafeBufferPointer(start: connector.encoders, count: Int(connector.count_encoders)) {
            guard let encoder = drmModeGetEncoder(fd, id) else { continue }
            defer { drmModeFreeEncoder(encoder) }
            for (index, crtc) in crtcs.enumerated() where index < 32 && encoder.pointee.possible_crtcs & (1 << UInt32(index)) != 0 {
                return crtc
            }
        }
        return nil
    }
}

/// A dumb buffer with its framebuffer and its mapping.
struct DumbBuffer {
    let handle: UInt32
    let framebuffer: UInt32
    let pitch: Int
    let size: Int
    let pixels: UnsafeMutableRawPointer

    init(fd: CInt, card: String, width: Int, height: Int) throws(SystemError) {
        var handle: UInt32 = 0, pitch: UInt32 = 0, size: UInt64 = 0
        try Kernel.shim("create a \(width)x\(height) dumb buffer on \(card)") {
            drmModeCreateDumbBuffer(fd, UInt32(width), UInt32(height), 32, 0, &handle, &pitch, &size)
        }
        var framebuffer: UInt32 = 0
        var offset: UInt64 = 0
        do {
            // Depth 24 at 32 bpp is XRGB8888.
            try Kernel.shim("add a \(width)x\(height) XRGB8888 framebuffer on \(card)") {
                drmModeAddFB(fd, UInt32(width), UInt32(height), 24, 32, pitch, handle, &framebuffer)
            }
            try Kernel.shim("prepare a dumb buffer of \(card) for mapping") { drmModeMapDumbBuffer(fd, handle, &offset) }
            pixels = try Kernel.mapShared(fd, length: Int(size), offset: Int64(offset), "a dumb buffer of \(card)")
        } catch {
            if framebuffer != 0 { _ = drmModeRmFB(fd, framebuffer) }
            _ = drmModeDestroyDumbBuffer(fd, handle)
            throw error
        }
        // Dumb buffers in video memory (bochs) are not cleared for us.
        pixels.initializeMemory(as: UInt8.self, repeating: 0, count: Int(size))
        self.handle = handle
        self.framebuffer = framebuffer
        self.pitch = Int(pitch)
        self.size = Int(size)
    }

    func release(fd: CInt) {
        Kernel.unmap(pixels, length: size)
        _ = drmModeRmFB(fd, framebuffer)
        _ = drmModeDestroyDumbBuffer(fd, handle)
    }
}

/// The events a DRM fd reads as: `struct drm_event { u32 type; u32 length; }`
/// and a payload, `length` bytes in all.
public enum DRMEvents {
    /// DRM_EVENT_FLIP_COMPLETE.
    public static let flipComplete: UInt32 = 2

    /// The type of each whole event in `bytes` (read from a DRM fd);
    /// a truncated or malformed tail is ignored.
    public static func types(in bytes: ArraySlice<UInt8>) -> [UInt32] {
        var types: [UInt32] = []
        var offset = bytes.startIndex
        func word(_ at: Int) -> UInt32 {
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) }
        }
        while bytes.endIndex - offset >= 8 {
            let length = Int(word(offset + 4))
            guard length >= 8, length <= bytes.endIndex - offset else { break }
            types.append(word(offset))
            offset += length
        }
        return types
    }
}
