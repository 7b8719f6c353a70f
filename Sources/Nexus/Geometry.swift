import SpiritCore

/// A colour as an XRGB8888 pixel holds it: 0x00RRGGBB in a 32-bit word (in
/// memory B, G, R, X on little-endian machines, which is what DRM's
/// XRGB8888 and a 32 bpp fbdev expect).
public struct Color: Sendable, Hashable, CustomStringConvertible {
    public var pixel: UInt32

    public init(_ rgb: UInt32) { pixel = rgb & 0x00FF_FFFF }

    public init(red: UInt8, green: UInt8, blue: UInt8) {
        pixel = UInt32(red) << 16 | UInt32(green) << 8 | UInt32(blue)
    }

    public var red: UInt8 { UInt8(truncatingIfNeeded: pixel >> 16) }
    public var green: UInt8 { UInt8(truncatingIfNeeded: pixel >> 8) }
    public var blue: UInt8 { UInt8(truncatingIfNeeded: pixel) }

    /// `amount` (0–256) of the way from this colour to `other`: for dimmed
    /// tracks and grid lines that stay in the palette's family.
    public func mixed(with other: Color, _ amount: Int) -> Color {
        let a = max(0, min(256, amount))
        func channel(_ from: UInt8, _ to: UInt8) -> UInt8 {
            UInt8((Int(from) * (256 - a) + Int(to) * a) >> 8)
        }
        return Color(red: channel(red, other.red), green: channel(green, other.green), blue: channel(blue, other.blue))
    }

    public var description: String {
        let hex = String(pixel, radix: 16)
        return "#" + String(repeating: "0", count: 6 - hex.count) + hex
    }

    public static let black = Color(0x000000)
    public static let white = Color(0xFFFFFF)
}

/// The one palette of the HUD (after the research probe, hud.md §5.3): a
/// calm dark background, slightly lighter panels, one accent for what has
/// focus or is live, a warm colour for warnings, a red for failures, and
/// text bright enough to read on the panels at 8×16.
public struct Palette: Sendable, Equatable {
    public var background = Color(0x0B0F14)
    public var panel = Color(0x111820)
    public var border = Color(0x1E2A36)
    public var accent = Color(0x2A9D8F)
    public var warning = Color(0xE9C46A)
    public var failure = Color(0xE76F51)
    public var text = Color(0xD8DEE9)
    public var dimText = Color(0x7B8794)

    public init() {}

    public static let standard = Palette()
}
