/// A rectangle in pixels (or grid cells), x and y from the top left: what
/// the HUD draws and damages, and what the display copies to the screen.
public struct Rect: Sendable, Hashable, CustomStringConvertible {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    public static let zero = Rect(x: 0, y: 0, width: 0, height: 0)

    public var maxX: Int { x + width }
    public var maxY: Int { y + height }
    public var isEmpty: Bool { width <= 0 || height <= 0 }
    public var area: Int { isEmpty ? 0 : width * height }

    public var description: String { "\(width)x\(height)+\(x)+\(y)" }

    /// The part inside both; `.zero` when they do not meet.
    public func intersection(_ other: Rect) -> Rect {
        let left = max(x, other.x), top = max(y, other.y)
        let right = min(maxX, other.maxX), bottom = min(maxY, other.maxY)
        guard right > left, bottom > top else { return .zero }
        return Rect(x: left, y: top, width: right - left, height: bottom - top)
    }

    public func intersects(_ other: Rect) -> Bool { !intersection(other).isEmpty }

    /// The smallest rectangle holding both (an empty one adds nothing).
    public func union(_ other: Rect) -> Rect {
        if isEmpty { return other }
        if other.isEmpty { return self }
        let left = min(x, other.x), top = min(y, other.y)
        return Rect(x: left, y: top, width: max(maxX, other.maxX) - left, height: max(maxY, other.maxY) - top)
    }

    public func contains(_ other: Rect) -> Bool {
        other.isEmpty || (!isEmpty && other.x >= x && other.y >= y && other.maxX <= maxX && other.maxY <= maxY)
    }

    public func contains(x px: Int, y py: Int) -> Bool { px >= x && px < maxX && py >= y && py < maxY }

    /// Smaller by `dx` on the left and right and `dy` on the top and bottom.
    public func insetBy(_ dx: Int, _ dy: Int) -> Rect {
        Rect(x: x + dx, y: y + dy, width: width - 2 * dx, height: height - 2 * dy)
    }

    public func offsetBy(_ dx: Int, _ dy: Int) -> Rect { Rect(x: x + dx, y: y + dy, width: width, height: height) }

    /// The part of the rectangle on a `width`×`height` screen (empty if none).
    public func clipped(width screenWidth: Int, height screenHeight: Int) -> Rect {
        let left = max(0, x), top = max(0, y)
        let right = min(screenWidth, x + max(0, width)), bottom = min(screenHeight, y + max(0, height))
        return Rect(x: left, y: top, width: max(0, right - left), height: max(0, bottom - top))
    }

    /// The smallest rectangle holding every one of `rects` (empty for none).
    public static func bounds(_ rects: [Rect]) -> Rect {
        guard let first = rects.first else { return .zero }
        return rects.dropFirst().reduce(first) { Rect(x: min($0.x, $1.x), y: min($0.y, $1.y),
                                                       width: max($0.maxX, $1.maxX) - min($0.x, $1.x),
                                                       height: max($0.maxY, $1.maxY) - min($0.y, $1.y)) }
    }
}
