import Glibc
import SpiritCore
import SystemPackage
import Testing

@Suite struct DisplayPixelTests {
    @Test func clipsDamageToTheScreen() {
        #expect(Rect(x: -5, y: 10, width: 20, height: 5).clipped(width: 100, height: 50) == Rect(x: 0, y: 10, width: 15, height: 5))
        #expect(Rect(x: 90, y: 45, width: 20, height: 20).clipped(width: 100, height: 50) == Rect(x: 90, y: 45, width: 10, height: 5))
        #expect(Rect(x: 100, y: 0, width: 5, height: 5).clipped(width: 100, height: 50).isEmpty)
        #expect(Rect(x: 3, y: 3, width: -4, height: 5).clipped(width: 100, height: 50).isEmpty)
        #expect(Rect.bounds([Rect(x: 2, y: 8, width: 3, height: 1), Rect(x: 10, y: 1, width: 5, height: 2)])
            == Rect(x: 2, y: 1, width: 13, height: 8))
    }

    /// Source and destination rows of different lengths (the renderer's
    /// buffer and a dumb buffer rarely share a pitch): only the rectangle
    /// moves, nothing beside it or in the padding.
    @Test func copyHonoursBothPitches() {
        let width = 6, height = 4
        let sourcePitch = width * 4 + 8, destinationPitch = width * 4 + 12
        var source = [UInt32](repeating: 0xFFFF_FFFF, count: sourcePitch / 4 * height)
        for y in 0..<height { for x in 0..<width { source[y * sourcePitch / 4 + x] = UInt32(y * 16 + x) } }
        var destination = [UInt32](repeating: 0xDEAD_BEEF, count: destinationPitch / 4 * height)
        source.withUnsafeBytes { from in
            destination.withUnsafeMutableBytes { to in
                Display.copy([Rect(x: 1, y: 1, width: 3, height: 2), Rect(x: 5, y: 3, width: 1, height: 1)],
                             from: from.baseAddress!, pitch: sourcePitch, to: to.baseAddress!, pitch: destinationPitch)
            }
        }
        for y in 0..<height {
            for x in 0..<destinationPitch / 4 {
                let inside = (1...3).contains(x) && (1...2).contains(y) || (x == 5 && y == 3)
                #expect(destination[y * destinationPitch / 4 + x] == (inside ? UInt32(y * 16 + x) : 0xDEAD_BEEF), "pixel \(x),\(y)")
            }
        }
    }

    @Test func dirtyClipsAreCornersOrOneBoundingBox() {
        let clips = Display.dirtyClips([Rect(x: 10, y: 20, width: 30, height: 40), Rect(x: 0, y: 0, width: 0, height: 9)])
        #expect(clips.count == 1)
        #expect(clips.first.map { [$0.x1, $0.y1, $0.x2, $0.y2] } == [10, 20, 40, 60])
        let many = (0..<300).map { Rect(x: $0, y: 2 * $0, width: 1, height: 1) }
        let bounded = Display.dirtyClips(many)
        #expect(bounded.count == 1)
        #expect(bounded.first.map { [$0.x1, $0.y1, $0.x2, $0.y2] } == [0, 0, 300, 599])
        #expect(Display.dirtyClips(Array(many.prefix(256))).count == 256)
    }

    /// The back buffer was drawn two frames ago: it needs the last frame's
    /// damage as well as this one's.
    @Test func backBufferGetsThisAndThePreviousDamage() {
        var swap = SwapDamage()
        let full = Rect(x: 0, y: 0, width: 640, height: 480)
        let clock = Rect(x: 600, y: 0, width: 40, height: 16)
        let cursor = Rect(x: 8, y: 100, width: 8, height: 16)
        #expect(swap.backBufferRects(for: [full]) == [full])
        #expect(swap.backBufferRects(for: [clock]) == [full, clock])
        #expect(swap.backBufferRects(for: [cursor]) == [clock, cursor])
        #expect(swap.backBufferRects(for: []) == [cursor])
        #expect(swap.backBufferRects(for: []) == [])
    }

    @Test func drmEventTypes() {
        func event(_ type: UInt32, length: UInt32) -> [UInt8] {
            withUnsafeBytes(of: type.littleEndian, Array.init) + withUnsafeBytes(of: length.littleEndian, Array.init)
                + [UInt8](repeating: 0xAA, count: max(0, Int(length) - 8))
        }
        let bytes = event(1, length: 32) + event(DRMEvents.flipComplete, length: 32) + [2, 0, 0]
        #expect(DRMEvents.types(in: bytes[...]) == [1, 2])
        #expect(DRMEvents.types(in: event(2, length: 32)[0..<20]) == [])
        #expect(DRMEvents.types(in: (event(2, length: 4) + event(2, length: 32))[...]) == [])
    }

    @Test func openErrorsSayTheDeviceAndWhatFailed() throws {
        let missing = try fixtureDirectory("display")
        do {
            _ = try Display.open(card: missing + "/card0", fbdev: missing + "/fb0")
            Issue.record("a display opened from an empty directory")
        } catch {
            #expect(error.description == "no display: unable to open \(missing)/card0 for writing: No such file or directory — is a DRM driver loaded?; "
                + "unable to open \(missing)/fb0 for writing: No such file or directory — is an fbdev driver loaded (efifb, simplefb, a DRM driver's fbdev emulation)?")
        }
        // /dev/null opens, but answers no ioctl: each shim's error names its request.
        do {
            _ = try Display.openDRM(card: "/dev/null")
            Issue.record("/dev/null opened as a DRM card")
        } catch {
            #expect("\(error)" == "unable to identify the driver of /dev/null (DRM_IOCTL_VERSION): Inappropriate ioctl for device — /dev/null is not a DRM device")
        }
        do {
            _ = try Display.openFramebuffer("/dev/null")
            Issue.record("/dev/null opened as a framebuffer")
        } catch {
            #expect("\(error)" == "unable to read the screen info of /dev/null (FBIOGET_VSCREENINFO): Inappropriate ioctl for device")
        }
        try Kernel.removeDirectory(missing)
    }
}
