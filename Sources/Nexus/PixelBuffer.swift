import SpiritCore

/// An XRGB8888 frame in RAM: the HUD draws here and the I/O shell copies
/// the damaged rectangles to the scanout buffer (drawing into dumb buffers
/// in VRAM is slow to read back, hud.md §5.2).
///
/// Rows are `pitch` bytes apart, and a row may be longer than `width`
/// pixels: DRM and fbdev give the pitch, and a renderer that assumed
/// width×4 garbles every line (LVGL#9605). Nothing here writes into the
/// padding at the end of a row.
///
/// Every drawing call is clipped to `clip` (the whole buffer unless a
/// widget narrows it), so a widget cannot draw outside its frame.
public struct PixelBuffer: Sendable {
    public let width: Int
    public let height: Int
    /// Bytes from one row to the next; a multiple of 4, at least width×4.
    public let pitch: Int
    /// The rows, `pitch / 4` words each.
    public internal(set) var pixels: [UInt32]
    /// Where drawing may land; always inside `bounds`.
    public var clip: Rect {
        didSet { clip = clip.intersection(bounds) }
    }

    public init(width: Int, height: Int, pitch: Int? = nil, fill: Color = .black) {
        precondition(width >= 0 && height >= 0, "a buffer has no negative size")
        let rowBytes = pitch ?? width * 4
        precondition(rowBytes % 4 == 0 && rowBytes >= width * 4, "the pitch is whole pixels, at least width×4")
        self.width = width
        self.height = height
        self.pitch = rowBytes
        self.pixels = Array(repeating: fill.pixel, count: rowBytes / 4 * height)
        self.clip = Rect(x: 0, y: 0, width: width, height: height)
    }

    /// Words from one row to the next.
    public var stride: Int { pitch / 4 }
    public var bounds: Rect { Rect(x: 0, y: 0, width: width, height: height) }

    public subscript(x: Int, y: Int) -> Color {
        precondition(bounds.contains(x: x, y: y), "(\(x), \(y)) is outside the \(width)x\(height) buffer")
        return Color(pixels[y * stride + x])
    }

    /// The frame as little-endian bytes, `pitch` to a row: what a scanout
    /// buffer holds.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: pixels.count * 4)
        for (index, word) in pixels.enumerated() {
            out[index * 4] = UInt8(truncatingIfNeeded: word)
            out[index * 4 + 1] = UInt8(truncatingIfNeeded: word >> 8)
            out[index * 4 + 2] = UInt8(truncatingIfNeeded: word >> 16)
            out[index * 4 + 3] = UInt8(truncatingIfNeeded: word >> 24)
        }
        return out
    }

    /// Runs `body` with drawing limited to `rect` (inside the current clip).
    public mutating func clipped(to rect: Rect, _ body: (inout PixelBuffer) -> Void) {
        let saved = clip
        clip = saved.intersection(rect)
        body(&self)
        clip = saved
    }

    // MARK: Rectangles and lines

    public mutating func fill(_ rect: Rect, _ color: Color) {
        let area = rect.intersection(clip)
        guard !area.isEmpty else { return }
        let stride = self.stride
        pixels.withUnsafeMutableBufferPointer { words in
            let base = words.baseAddress!
            for row in area.y..<area.maxY {
                (base + row * stride + area.x).update(repeating: color.pixel, count: area.width)
            }
        }
    }

    public mutating func horizontalLine(x: Int, y: Int, length: Int, _ color: Color, thickness: Int = 1) {
        fill(Rect(x: x, y: y, width: length, height: thickness), color)
    }

    public mutating func verticalLine(x: Int, y: Int, length: Int, _ color: Color, thickness: Int = 1) {
        fill(Rect(x: x, y: y, width: thickness, height: length), color)
    }

    /// A frame of `thickness` pixels just inside `rect`.
    public mutating func border(_ rect: Rect, _ color: Color, thickness: Int = 1) {
        guard !rect.isEmpty else { return }
        let t = min(thickness, (min(rect.width, rect.height) + 1) / 2)
        horizontalLine(x: rect.x, y: rect.y, length: rect.width, color, thickness: t)
        horizontalLine(x: rect.x, y: rect.maxY - t, length: rect.width, color, thickness: t)
        verticalLine(x: rect.x, y: rect.y + t, length: rect.height - 2 * t, color, thickness: t)
        verticalLine(x: rect.maxX - t, y: rect.y + t, length: rect.height - 2 * t, color, thickness: t)
    }

    /// One pixel, if it is inside the clip.
    public mutating func plot(x: Int, y: Int, _ color: Color) {
        guard clip.contains(x: x, y: y) else { return }
        pixels[y * stride + x] = color.pixel
    }

    // MARK: Graphs

    /// Bars from the bottom of `rect`, one per value (0–1, clamped), the
    /// newest on the right; `gap` pixels between bars. Values that do not
    /// fit are the oldest and are left out.
    public mutating func barGraph(_ values: [Double], in rect: Rect, barWidth: Int, gap: Int = 1, _ color: Color) {
        guard barWidth > 0, !rect.isEmpty else { return }
        let step = barWidth + max(0, gap)
        let fitting = min(values.count, (rect.width + max(0, gap)) / step)
        for (slot, value) in values.suffix(fitting).enumerated() {
            let barHeight = Self.scaled(value, rect.height)
            let x = rect.maxX - (fitting - slot) * step + max(0, gap)
            fill(Rect(x: x, y: rect.maxY - barHeight, width: barWidth, height: barHeight), color)
        }
    }

    /// A history line: one sample every `step` columns from the right
    /// edge back (held flat across its columns), each joined to the one
    /// before by a vertical run so the line has no gaps; `area` (if given)
    /// fills beneath it.
    public mutating func lineGraph(_ values: [Double], in rect: Rect, step: Int = 1, _ color: Color, area: Color? = nil) {
        guard !rect.isEmpty, !values.isEmpty, step > 0 else { return }
        let samples = values.suffix((rect.width + step - 1) / step)
        var previous: Int? = nil
        for (slot, value) in samples.enumerated() {
            let x = rect.maxX - (samples.count - slot) * step
            // Height 0 sits on the bottom row, 1 on the top row.
            let y = rect.maxY - 1 - Self.scaled(value, rect.height - 1)
            if let area { fill(Rect(x: x, y: y + 1, width: step, height: rect.maxY - y - 1), area) }
            let from = min(y, previous ?? y), to = max(y, previous ?? y)
            verticalLine(x: x, y: from, length: to - from + 1, color)
            horizontalLine(x: x, y: y, length: step, color)
            previous = y
        }
    }

    /// A horizontal progress bar: `fraction` of `rect` in `color`, the rest in `track`.
    public mutating func progressBar(_ fraction: Double, in rect: Rect, _ color: Color, track: Color) {
        let filled = Self.scaled(fraction, rect.width)
        fill(Rect(x: rect.x + filled, y: rect.y, width: rect.width - filled, height: rect.height), track)
        fill(Rect(x: rect.x, y: rect.y, width: filled, height: rect.height), color)
    }

    /// A ring around (`centerX`, `centerY`) — the bubble's CPU and RAM
    /// gauges — filled clockwise from twelve o'clock for `fraction` of a
    /// turn, the rest in `track`. A pixel belongs to the ring when its
    /// centre lies between the two radii.
    public mutating func progressRing(centerX: Int, centerY: Int, radius: Int, thickness: Int, _ fraction: Double,
                                      _ color: Color, track: Color) {
        guard radius > 0, thickness > 0 else { return }
        let turns = min(max(fraction.isNaN ? 0 : fraction, 0), 1)
        let outer = Double(radius), inner = Double(max(0, radius - thickness))
        let box = Rect(x: centerX - radius, y: centerY - radius, width: 2 * radius, height: 2 * radius).intersection(clip)
        guard !box.isEmpty else { return }
        for y in box.y..<box.maxY {
            let dy = Double(y) + 0.5 - Double(centerY)
            for x in box.x..<box.maxX {
                let dx = Double(x) + 0.5 - Double(centerX)
                let distance = dx * dx + dy * dy
                guard distance <= outer * outer, distance >= inner * inner else { continue }
                pixels[y * stride + x] = (Self.clockwiseTurns(dx: dx, dy: dy) < turns ? color : track).pixel
            }
        }
    }

    /// `value` (0–1, clamped) of `extent`, rounded to whole pixels.
    static func scaled(_ value: Double, _ extent: Int) -> Int {
        guard !value.isNaN, extent > 0 else { return 0 }
        return Int((min(max(value, 0), 1) * Double(extent)).rounded())
    }

    /// The angle of (dx, dy) — y grows downwards — clockwise from twelve
    /// o'clock, in turns (0..<1). The standard library has no atan2, and
    /// the renderer stays free of libm; this polynomial is within 0.0015
    /// radians, far below a pixel on any ring the HUD draws.
    static func clockwiseTurns(dx: Double, dy: Double) -> Double {
        // Angle from twelve o'clock: atan2(dx, -dy).
        let y = dx, x = -dy
        let ax = abs(x), ay = abs(y)
        guard ax > 0 || ay > 0 else { return 0 }
        let ratio = min(ax, ay) / max(ax, ay)
        let r2 = ratio * ratio
        // atan(r) on [0, 1] (Abramowitz–Stegun style minimax, error < 1e-3 rad).
        var angle = ((-0.0464964749 * r2 + 0.15931422) * r2 - 0.327622764) * r2 * ratio + ratio
        if ay > ax { angle = Double.pi / 2 - angle }
        if x < 0 { angle = Double.pi - angle }
        if y < 0 { angle = -angle }
        let turns = angle / (2 * Double.pi)
        return turns < 0 ? turns + 1 : turns
    }

    // MARK: To the screen

    /// Copies the pixels of `rect` (clipped to the buffer) into a scanout
    /// buffer of the same size whose rows are `pitch` bytes apart — a DRM
    /// dumb buffer or an fbdev mapping, which may have another pitch than
    /// this buffer. Only the rect's rows and columns are written.
    public func copy(_ rect: Rect, to destination: UnsafeMutableRawPointer, pitch: Int) {
        let area = rect.intersection(bounds)
        guard !area.isEmpty else { return }
        pixels.withUnsafeBufferPointer { words in
            for row in area.y..<area.maxY {
                let source = UnsafeRawPointer(words.baseAddress! + row * stride + area.x)
                (destination + row * pitch + area.x * 4).copyMemory(from: source, byteCount: area.width * 4)
            }
        }
    }

    // MARK: Comparing frames

    /// The tiles (`tile`×`tile`, clipped to the buffer) whose pixels differ
    /// from `previous`: what a frame changed, for a caller that redrew more
    /// than it had to. Both buffers must have the same size.
    public func changes(since previous: PixelBuffer, tile: Int = 16) -> Damage {
        precondition(width == previous.width && height == previous.height, "frames of different sizes")
        var damage = Damage()
        var tileY = 0
        while tileY < height {
            var tileX = 0
            while tileX < width {
                let cell = Rect(x: tileX, y: tileY, width: min(tile, width - tileX), height: min(tile, height - tileY))
                if !sameContent(previous, in: cell) { damage.add(cell) }
                tileX += tile
            }
            tileY += tile
        }
        return damage
    }

    func sameContent(_ other: PixelBuffer, in rect: Rect) -> Bool {
        for y in rect.y..<rect.maxY {
            for x in rect.x..<rect.maxX where pixels[y * stride + x] != other.pixels[y * other.stride + x] {
                return false
            }
        }
        return true
    }
}

/// The parts of a frame that changed: a few rectangles, merged when they
/// touch so the copy to the screen and DRM's DirtyFB clips stay few.
public struct Damage: Sendable, Equatable {
    public private(set) var rects: [Rect] = []
    /// More rectangles than this become their bounding box: copying a
    /// little extra is cheaper than many small clips.
    public static let maximumRects = 16

    public init() {}

    public init(_ rects: [Rect]) {
        for rect in rects { add(rect) }
    }

    public var isEmpty: Bool { rects.isEmpty }
    public var bounds: Rect { rects.reduce(Rect.zero) { $0.union($1) } }
    /// Pixels covered (overlaps are never kept, so this is exact).
    public var area: Int { rects.reduce(0) { $0 + $1.area } }

    /// Adds `rect`; rectangles that overlap or touch it are merged into one
    /// bounding box, repeatedly, so the rectangles kept never overlap.
    public mutating func add(_ rect: Rect) {
        guard !rect.isEmpty else { return }
        var merged = rect
        var changed = true
        while changed {
            changed = false
            for (index, existing) in rects.enumerated() where Self.touch(existing, merged) {
                merged = merged.union(existing)
                rects.remove(at: index)
                changed = true
                break
            }
        }
        rects.append(merged)
        if rects.count > Self.maximumRects { rects = [bounds] }
    }

    public mutating func formUnion(_ other: Damage) {
        for rect in other.rects { add(rect) }
    }

    public func union(_ other: Damage) -> Damage {
        var out = self
        out.formUnion(other)
        return out
    }

    /// Clipped to `rect` (the screen).
    public func clipped(to rect: Rect) -> Damage { Damage(rects.map { $0.intersection(rect) }) }

    /// Overlapping or sharing a piece of an edge; rects that meet only at
    /// a corner stay apart (their bounding box would be mostly undamaged).
    static func touch(_ a: Rect, _ b: Rect) -> Bool {
        let overlapX = min(a.maxX, b.maxX) - max(a.x, b.x)
        let overlapY = min(a.maxY, b.maxY) - max(a.y, b.y)
        return (overlapX >= 0 && overlapY > 0) || (overlapX > 0 && overlapY >= 0)
    }
}

/// With two scanout buffers, the back buffer missed the frame before, so
/// what must be copied into it is this frame's damage and the last one's
/// (kmscon's bbulk rule, hud.md §5.2).
public struct SwapChainDamage: Sendable {
    var previous = Damage()

    public init() {}

    /// The rectangles to copy for a frame whose own damage is `damage`.
    public mutating func toCopy(_ damage: Damage) -> Damage {
        defer { previous = damage }
        return damage.union(previous)
    }
}
