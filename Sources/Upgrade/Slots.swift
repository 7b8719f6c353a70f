import SpiritCore

/// One of the two folders of a stick made by `make stick`, `a/` and `b/`,
/// each a whole release (kernel, initramfs, image, layers, release.json).
/// GRUB boots one of them with `crom.slot=a|b`; an upgrade writes the other.
public enum Slot: String, Sendable, Equatable, CaseIterable {
    case a, b

    public var other: Slot { self == .a ? .b : .a }

    public static func parse(_ text: String, origin: String) throws(SpiritError) -> Slot {
        guard let slot = Slot(rawValue: text) else { throw SpiritError("\(origin): \"\(text)\" is not a slot (a or b)") }
        return slot
    }
}

/// The slots as GRUB's environment block says them. GRUB's menu
/// (scripts/mkstick.sh) reads them at every boot:
/// - `slot_good`: the slot that boots (a when the block does not say);
/// - `slot_try`: a slot armed for one try by `spirit upgrade`. GRUB boots
///   it once: it clears `slot_try` and sets `slot_trying` with `save_env`
///   before it loads the kernel, so that any boot after that one is back on
///   `slot_good` unless Spirit marks the tried slot good;
/// - `slot_trying`: the slot GRUB gave its one try to. Spirit marks it good
///   (`slot_good`) once it is healthy, or clears it and sets
///   `slot_failed` when it is not;
/// - `slot_failed`: the last slot whose try failed, for `status`.
public struct SlotState: Sendable, Equatable {
    public static let goodName = "slot_good"
    public static let tryName = "slot_try"
    public static let tryingName = "slot_trying"
    public static let failedName = "slot_failed"

    public var good: Slot
    public var armed: Slot?
    public var trying: Slot?
    public var failed: Slot?

    public init(good: Slot = .a, armed: Slot? = nil, trying: Slot? = nil, failed: Slot? = nil) {
        self.good = good
        self.armed = armed
        self.trying = trying
        self.failed = failed
    }

    public init(_ environment: GrubEnvironment, origin: String) throws(SpiritError) {
        func slot(_ name: String) throws(SpiritError) -> Slot? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            return try Slot.parse(text, origin: "\(origin): \(name)")
        }
        self.init(good: try slot(Self.goodName) ?? .a, armed: try slot(Self.tryName), trying: try slot(Self.tryingName),
                  failed: try slot(Self.failedName))
    }

    /// What this boot is, for a system booted from `booted`.
    public func verdict(booted: Slot) -> BootVerdict {
        if trying == booted { return .trial }
        if booted == good {
            if let trying, trying != booted { return .trialDidNotFinish(trying) }
            return .good
        }
        return .notChosen
    }

    /// The slot the next boot starts (GRUB's choice, as its menu makes it).
    public var nextBoot: Slot { armed ?? good }
}

public enum BootVerdict: Sendable, Equatable {
    /// The known-good slot, nothing pending.
    case good
    /// GRUB's one try of a new slot: marked good once healthy.
    case trial
    /// Back on the good slot after a try of the other that never reached
    /// its health check (a kernel that did not boot, a power cut, a hang).
    case trialDidNotFinish(Slot)
    /// Neither good nor tried: chosen by hand in GRUB's menu.
    case notChosen
}

/// A change of GRUB's environment block, as data: what `grub-editenv`
/// would be told.
public struct EnvironmentChange: Sendable, Equatable {
    public var set: [(name: String, value: String)]
    public var unset: [String]

    public init(set: [(name: String, value: String)] = [], unset: [String] = []) {
        self.set = set
        self.unset = unset
    }

    public static func == (lhs: EnvironmentChange, rhs: EnvironmentChange) -> Bool {
        lhs.unset == rhs.unset && lhs.set.elementsEqual(rhs.set) { $0.name == $1.name && $0.value == $1.value }
    }

    public func applied(to environment: GrubEnvironment) -> GrubEnvironment {
        var result = environment
        for name in unset { result[name] = nil }
        for (name, value) in set { result[name] = value }
        return result
    }

    /// `grub-editenv FILE set a=b c=d; grub-editenv FILE unset e`.
    public func shell(_ path: String) -> String {
        var commands: [String] = []
        if !set.isEmpty { commands.append("grub-editenv \(path) set " + set.map { "\($0.name)=\($0.value)" }.joined(separator: " ")) }
        if !unset.isEmpty { commands.append("grub-editenv \(path) unset " + unset.joined(separator: " ")) }
        return commands.joined(separator: "; ")
    }
}
