/// A kernel uevent as far as the HUD cares: a device node that came or
/// went (a keyboard plugged in, the real GPU driver's card replacing the
/// firmware framebuffer). Pure: parsed from the datagram's bytes.
public struct DeviceEvent: Sendable, Equatable {
    public var action: String
    public var subsystem: String
    /// Below /dev: `input/event5`, `dri/card0`, `fb0`.
    public var node: String

    public init(action: String, subsystem: String, node: String) {
        self.action = action
        self.subsystem = subsystem
        self.node = node
    }

    /// `add@/devices/…` then NUL-separated `KEY=value` fields; nil for a
    /// uevent without a device node (most of them) or one that does not parse.
    public static func parse(_ bytes: [UInt8]) -> DeviceEvent? {
        var fields: [String: String] = [:]
        for part in bytes.split(separator: 0).dropFirst() {
            let text = String(decoding: part, as: UTF8.self)
            guard let equals = text.firstIndex(of: "=") else { continue }
            fields[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        guard let action = fields["ACTION"], let subsystem = fields["SUBSYSTEM"], let node = fields["DEVNAME"], !node.isEmpty else { return nil }
        return DeviceEvent(action: action, subsystem: subsystem, node: node)
    }

    /// A keyboard or other key device's event node.
    public var isInputEvents: Bool { subsystem == "input" && node.hasPrefix("input/event") }
    /// A DRM card (not a render node).
    public var isDisplayCard: Bool { subsystem == "drm" && node.hasPrefix("dri/card") }
}
