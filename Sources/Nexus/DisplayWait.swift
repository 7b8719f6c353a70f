import SpiritCore

/// Whether the HUD can open its display yet. Nexus starts beside the
/// modules service, not after it, so that its own start-up (its exec, the
/// pages of /bin/spirit read from the image's squashfs, its layout) runs
/// while the modules load; the graphics driver comes in that service's
/// graphics step, and the HUD draws as soon as the card is whole.
public enum DisplayWait: Sendable, Equatable {
    /// A display to open (Display.open: DRM, else the framebuffer).
    case open
    /// None, and none will come: the serial line stays the console.
    case none
    /// The modules service is still at work: a card may come.
    case wait

    /// `cardBound`: /dev/dri/card0 is there and its device has a driver
    /// link (the driver's probe has returned: the card is not half set
    /// up). `framebuffer`: /dev/fb0 is there. `modules`: the modules
    /// service's state in the supervisor's status, nil when it has none or
    /// cannot be asked (the HUD started by hand). A framebuffer is taken
    /// only once that service has settled, as when Nexus came after it:
    /// the GPU's own driver, if one comes, replaces a firmware framebuffer.
    /// `graphicsHeld` (crom.gpu=passthrough): no graphics driver loads, so
    /// there is nothing to wait for.
    public static func decide(cardBound: Bool, framebuffer: Bool, modules: String?, graphicsHeld: Bool = false) -> DisplayWait {
        if cardBound { return .open }
        if !graphicsHeld, let modules, ["waiting", "starting", "backoff"].contains(modules) { return .wait }
        return framebuffer ? .open : .none
    }
}
