import SpiritCore

/// Whether the HUD can open its display yet. Nexus starts beside the
/// modules service, not after it, so that its own start-up (its exec, the
/// pages of /bin/spirit read from the image's squashfs, its layout) runs
/// while the modules load; the graphics driver comes in that service's
/// graphics step, and the HUD draws as soon as the card is whole.
public enum DisplayWait: Sendable, Equatable {
    /// A display to open: this DRM card, or (nil) the framebuffer.
    case open(card: String?)
    /// None, and none will come: the serial line stays the console.
    case none
    /// The modules service is still at work: a card may come.
    case wait

    /// What the supervisor says of the modules service.
    public enum Modules: Sendable, Equatable {
        /// Its state: "starting", "running", "failed"…
        case state(String)
        /// The supervisor is there but did not answer in time (busy
        /// starting the other services): as good as "still at work".
        case unanswered
        /// No supervisor to ask (the HUD started by hand), or no such service.
        case absent
    }

    /// A DRM card as /sys/class/drm shows it: `cardN`, the bus of its
    /// device (`pci`, `virtio`, `platform`…) and whether the device has its
    /// driver link (there from the probe's start; the card node, which the
    /// wait looks for too, comes with drm_dev_register near its end, and
    /// opens with ENODEV until that has finished: NexusDaemon.openCard
    /// tries again).
    public struct Card: Sendable, Equatable {
        public var name: String
        public var bus: String?
        public var bound: Bool

        public init(name: String, bus: String?, bound: Bool) {
            self.name = name
            self.bus = bus
            self.bound = bound
        }

        /// N of `cardN`; a name that is not one sorts last.
        public var number: Int { Int(name.dropFirst(4)) ?? .max }
    }

    /// The card to open at once: the first by number on a PCI or virtio
    /// device with its driver. A firmware framebuffer's card (simpledrm,
    /// efidrm: the platform bus, bound from the start under UEFI) does not
    /// count: the GPU's own driver takes it away when it binds, and the
    /// HUD would be left on a dead card.
    public static func gpuCard(_ cards: [Card]) -> String? {
        cards.filter { $0.bound && ($0.bus == "pci" || $0.bus == "virtio") }
            .min { $0.number < $1.number }?.name
    }

    /// `gpuCard`: a GPU's card ready now. `anyCard` and `framebuffer`: some
    /// card (a firmware one included) or /dev/fb0 is there. A firmware
    /// display is taken only once the modules service has settled, as when
    /// Nexus came after it; `graphicsHeld` (crom.gpu=passthrough): no
    /// graphics driver loads, so there is nothing to wait for.
    public static func decide(gpuCard: String?, anyCard: String?, framebuffer: Bool, modules: Modules,
                              graphicsHeld: Bool = false) -> DisplayWait {
        if let gpuCard { return .open(card: gpuCard) }
        if !graphicsHeld {
            switch modules {
            case .state(let state) where ["waiting", "starting", "backoff"].contains(state): return .wait
            case .unanswered: return .wait
            case .state, .absent: break
            }
        }
        if let anyCard { return .open(card: anyCard) }
        return framebuffer ? .open(card: nil) : .none
    }
}
