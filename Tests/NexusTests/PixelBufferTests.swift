@testable import Nexus
import Testing
import SpiritCore

/// Golden buffers are pictures: one character a pixel, so a failing test
/// shows what was drawn.
func picture(_ buffer: PixelBuffer, _ key: [Color: Character]) -> [String] {
    (0..<buffer.height).map { y in
        String((0..<buffer.width).map { x in key[buffer[x, y]] ?? "?" })
    }
}

let ink = Color(0xFF0000), paper = Color(0x000000), blue = Color(0x0000FF)
let key: [Color: Character] = [ink: "#", paper: ".", blue: "b"]

/// The words past `width` in each row, which drawing must never touch.
func padding(_ buffer: PixelBuffer) -> [UInt32] {
    (0..<buffer.height).flatMap { y in buffer.pixels[(y * buffer.stride + buffer.width)..<((y + 1) * buffer.stride)] }
}

@Suite struct PixelBufferTests {
    @Test func fillsARectangleWithAPitchWiderThanTheRow() {
        // 6 pixels wide, rows 40 bytes (10 pixels) apart, as a DRM dumb buffer may be.
        var buffer = PixelBuffer(width: 6, height: 4, pitch: 40, fill: paper)
        #expect(buffer.stride == 10 && buffer.pixels.count == 40)
        buffer.fill(Rect(x: 1, y: 1, width: 3, height: 2), ink)
        #expect(picture(buffer, key) == [
            "......",
            ".###..",
            ".###..",
            "......",
        ])
        #expect(padding(buffer).allSatisfy { $0 == paper.pixel })
        // Little-endian XRGB: B, G, R, X.
        #expect(Array(buffer.bytes[(40 + 4)..<(40 + 8)]) == [0x00, 0x00, 0xFF, 0x00])
        #expect(buffer.bytes.count == 160)
    }

    @Test func clipsAtEveryEdgeAndNeverWritesThePadding() {
        var buffer = PixelBuffer(width: 8, height: 6, pitch: 48, fill: paper)
        buffer.fill(Rect(x: -3, y: 1, width: 4, height: 1), ink)   // off the left edge
        buffer.fill(Rect(x: 6, y: 2, width: 10, height: 1), ink)   // off the right edge (into the pitch, if unclipped)
        buffer.fill(Rect(x: 3, y: -5, width: 2, height: 6), blue)  // off the top: only row 0 shows
        buffer.fill(Rect(x: 0, y: 5, width: 2, height: 9), ink)    // off the bottom
        buffer.fill(Rect(x: 20, y: 20, width: 5, height: 5), ink)  // wholly outside
        buffer.fill(Rect(x: 2, y: 3, width: 0, height: 4), ink)    // empty
        buffer.fill(Rect(x: 2, y: 3, width: 3, height: -1), ink)   // negative
        #expect(picture(buffer, key) == [
            "...bb...",
            "#.......",
            "......##",
            "........",
            "........",
            "##......",
        ])
        #expect(padding(buffer).allSatisfy { $0 == paper.pixel })
    }

    @Test func aNarrowedClipHoldsTheDrawing() {
        var buffer = PixelBuffer(width: 8, height: 4, fill: paper)
        buffer.clipped(to: Rect(x: 2, y: 1, width: 4, height: 2)) { inner in
            inner.fill(Rect(x: 0, y: 0, width: 8, height: 4), ink)
            inner.plot(x: 0, y: 0, blue)
        }
        buffer.plot(x: 7, y: 3, blue)
        #expect(buffer.clip == buffer.bounds)
        #expect(picture(buffer, key) == [
            "........",
            "..####..",
            "..####..",
            ".......b",
        ])
        buffer.clip = Rect(x: -5, y: -5, width: 7, height: 100)
        #expect(buffer.clip == Rect(x: 0, y: 0, width: 2, height: 4))
    }

    @Test func bordersAndLines() {
        var buffer = PixelBuffer(width: 7, height: 5, pitch: 32, fill: paper)
        buffer.border(Rect(x: 0, y: 0, width: 7, height: 5), ink)
        buffer.horizontalLine(x: 2, y: 2, length: 3, blue)
        #expect(picture(buffer, key) == [
            "#######",
            "#.....#",
            "#.bbb.#",
            "#.....#",
            "#######",
        ])
        var thick = PixelBuffer(width: 6, height: 6, fill: paper)
        thick.border(Rect(x: 0, y: 0, width: 6, height: 6), ink, thickness: 2)
        thick.verticalLine(x: 2, y: 2, length: 2, blue)
        #expect(picture(thick, key) == [
            "######",
            "######",
            "##b.##",
            "##b.##",
            "######",
            "######",
        ])
        // A border half off the screen draws only its visible sides.
        var edge = PixelBuffer(width: 4, height: 3, fill: paper)
        edge.border(Rect(x: 1, y: -1, width: 5, height: 3), ink)
        #expect(picture(edge, key) == [
            ".#..",
            ".###",
            "....",
        ])
    }

    @Test func barGraphKeepsTheNewestOnTheRight() {
        var buffer = PixelBuffer(width: 8, height: 4, fill: paper)
        buffer.barGraph([1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0], in: Rect(x: 0, y: 0, width: 8, height: 4), barWidth: 1, gap: 1, ink)
        // 4 bars fit (width 1, gap 1, from the right): 0.5, 0.75, 1.0, 2.0 (clamped).
        #expect(picture(buffer, key) == [
            ".....#.#",
            "...#.#.#",
            ".#.#.#.#",
            ".#.#.#.#",
        ])
    }

    @Test func lineGraphJoinsItsSamples() {
        var buffer = PixelBuffer(width: 5, height: 4, fill: paper)
        buffer.lineGraph([0, 1, 1, 0.34], in: Rect(x: 0, y: 0, width: 5, height: 4), ink, area: blue)
        // Samples at rows 3, 0, 0, 2 (0.34 of 3 rows rounds to 1 up from the
        // bottom); each joined to the one before in its own column.
        #expect(picture(buffer, key) == [
            "..###",
            "..#b#",
            "..#b#",
            ".##bb",
        ])
    }

    @Test func historyWithWideSteps() {
        var buffer = PixelBuffer(width: 7, height: 3, fill: paper)
        // Four samples of 2 columns fit 7 columns (the oldest half cut at the
        // left edge); the first of the five is left out.
        buffer.lineGraph([0.5, 0, 1, 0.5, 2], in: Rect(x: 0, y: 0, width: 7, height: 3), step: 2, ink)
        #expect(picture(buffer, key) == [
            ".###.##",
            ".#.###.",
            "##.....",
        ])
    }

    @Test func progressBarAndRing() {
        var bar = PixelBuffer(width: 8, height: 1, fill: paper)
        bar.progressBar(0.5, in: Rect(x: 0, y: 0, width: 8, height: 1), ink, track: blue)
        #expect(picture(bar, key) == ["####bbbb"])
        bar.progressBar(1.5, in: Rect(x: 0, y: 0, width: 8, height: 1), ink, track: blue)
        #expect(picture(bar, key) == ["########"])

        var ring = PixelBuffer(width: 12, height: 12, fill: paper)
        ring.progressRing(centerX: 6, centerY: 6, radius: 6, thickness: 2, 0.25, ink, track: blue)
        let rows = picture(ring, key).map(Array.init)
        // The centre is empty, the first quarter (top right) is filled, the rest is track.
        #expect(rows[6][6] == ".")
        #expect(rows[1][9] == "#")   // top right
        #expect(rows[9][9] == "b")   // bottom right
        #expect(rows[9][2] == "b")   // bottom left
        #expect(rows[2][1] == "b")   // top left
        // Symmetric ring: as many ring pixels left of the centre as right.
        let ringPixels = rows.map { $0.filter { $0 != "." }.count }.reduce(0, +)
        #expect(ringPixels > 40 && ringPixels < 100)
    }

    @Test(arguments: [(0.0, 1.0, 0.0), (1.0, 0.0, 0.25), (0.0, -1.0, 0.5), (-1.0, 0.0, 0.75), (1.0, 1.0, 0.125), (1.0, -1.0, 0.375), (-1.0, 1.0, 0.875)])
    func clockwiseAngle(_ dx: Double, _ dy: Double, _ expected: Double) {
        // dy grows downwards: (0, -1) is twelve o'clock, turns 0.
        let turns = PixelBuffer.clockwiseTurns(dx: dx, dy: -dy)
        #expect(abs(turns - expected) < 0.001 || abs(turns - expected - 1) < 0.001, "\(turns)")
    }
}

@Suite struct ScanoutCopyTests {
    @Test func copiesOnlyTheRectIntoAnotherPitch() {
        var frame = PixelBuffer(width: 4, height: 3, pitch: 16, fill: paper)
        frame.fill(Rect(x: 1, y: 1, width: 3, height: 2), ink)
        // The screen's rows are 6 pixels (24 bytes) apart; 0xAA marks what was there.
        var screen = [UInt32](repeating: 0xAA, count: 6 * 3)
        screen.withUnsafeMutableBytes { frame.copy(Rect(x: 2, y: 1, width: 5, height: 1), to: $0.baseAddress!, pitch: 24) }
        #expect(screen == [0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA,
                           0xAA, 0xAA, ink.pixel, ink.pixel, 0xAA, 0xAA,
                           0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA])
        screen.withUnsafeMutableBytes { frame.copy(Rect(x: -2, y: -2, width: 3, height: 3), to: $0.baseAddress!, pitch: 24) }
        #expect(screen[0] == paper.pixel && screen[1] == 0xAA && screen[6] == 0xAA)
    }
}

@Suite struct DamageTests {
    @Test func mergesTouchingRectsAndKeepsApartOnes() {
        var damage = Damage()
        damage.add(Rect(x: 0, y: 0, width: 4, height: 4))
        damage.add(Rect(x: 4, y: 0, width: 4, height: 2))   // shares an edge: merged
        damage.add(Rect(x: 20, y: 20, width: 2, height: 2)) // apart
        damage.add(.zero)
        #expect(damage.rects == [Rect(x: 0, y: 0, width: 8, height: 4), Rect(x: 20, y: 20, width: 2, height: 2)])
        #expect(damage.bounds == Rect(x: 0, y: 0, width: 22, height: 22))
        // A rect that bridges the two merges all three.
        damage.add(Rect(x: 7, y: 3, width: 14, height: 18))
        #expect(damage.rects == [Rect(x: 0, y: 0, width: 22, height: 22)])
    }

    @Test func tooManyRectsBecomeTheirBounds() {
        let damage = Damage((0..<20).map { Rect(x: $0 * 10, y: 0, width: 2, height: 2) })
        // The 17th collapses the first 17 into their bounds; the last 3 stay apart.
        #expect(damage.rects == [Rect(x: 0, y: 0, width: 162, height: 2), Rect(x: 170, y: 0, width: 2, height: 2),
                                 Rect(x: 180, y: 0, width: 2, height: 2), Rect(x: 190, y: 0, width: 2, height: 2)])
    }

    @Test func theBackBufferGetsThisFrameAndTheLast() {
        var chain = SwapChainDamage()
        let first = Damage([Rect(x: 0, y: 0, width: 2, height: 2)])
        let second = Damage([Rect(x: 10, y: 10, width: 2, height: 2)])
        #expect(chain.toCopy(first) == first)
        #expect(chain.toCopy(second).rects == [Rect(x: 10, y: 10, width: 2, height: 2), Rect(x: 0, y: 0, width: 2, height: 2)])
        #expect(chain.toCopy(Damage()) == second)
    }

    @Test func changesBetweenTwoFramesAreTheTilesThatDiffer() {
        let before = PixelBuffer(width: 40, height: 20, pitch: 176, fill: paper)
        var after = before
        after.plot(x: 17, y: 3, ink)
        after.plot(x: 39, y: 19, ink)
        // The two tiles meet only at a corner, so they stay two rects.
        let damage = after.changes(since: before, tile: 16)
        #expect(damage.rects == [Rect(x: 16, y: 0, width: 16, height: 16), Rect(x: 32, y: 16, width: 8, height: 4)])
        #expect(before.changes(since: before).isEmpty)
        #expect(damage.clipped(to: Rect(x: 0, y: 0, width: 20, height: 10)).rects == [Rect(x: 16, y: 0, width: 4, height: 10)])
    }
}
