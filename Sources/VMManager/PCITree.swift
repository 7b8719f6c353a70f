import SpiritCore

/// One PCI function as sysfs shows it (/sys/bus/pci/devices/BDF).
public struct PCIFunction: Sendable, Equatable {
    public var address: String
    /// `class`: 0x030000 is a VGA controller, 0x040300 an HD audio function.
    public var classCode: UInt32
    public var vendor: String
    public var device: String
    /// The bound driver's name (the `driver` link's last part), nil if none.
    public var driver: String?
    /// `driver_override`, nil when it reads "(null)".
    public var driverOverride: String?
    /// The IOMMU group's number, nil without an IOMMU.
    public var iommuGroup: String?
    public var modalias: String
    /// Its DRM cards (`drm/card0`): what the HUD opens.
    public var cards: [String]

    public init(address: String, classCode: UInt32, vendor: String = "0x0000", device: String = "0x0000", driver: String? = nil,
                driverOverride: String? = nil, iommuGroup: String? = nil, modalias: String = "", cards: [String] = []) {
        self.address = address
        self.classCode = classCode
        self.vendor = vendor
        self.device = device
        self.driver = driver
        self.driverOverride = driverOverride
        self.iommuGroup = iommuGroup
        self.modalias = modalias
        self.cards = cards
    }

    /// Base class 0x03: VGA, XGA, 3D and other display controllers.
    public var isDisplay: Bool { classCode >> 16 == 0x03 }
    /// PCI-to-PCI bridges share a group with what is behind them and stay with the host.
    public var isBridge: Bool { classCode >> 8 == 0x0604 }

    /// A few words for the class, for status lines and plan comments.
    public var kind: String {
        switch classCode >> 8 {
        case 0x0300: "VGA"
        case 0x0302: "3D controller"
        case 0x0380: "display controller"
        case 0x0403: "audio"
        case 0x0200: "ethernet"
        case 0x0604: "PCI bridge"
        default: "class 0x" + String(classCode >> 8, radix: 16)
        }
    }
}

/// A sysfs tree under `root` ("" is the running system; tests give a fixture
/// tree): the PCI functions, IOMMU groups, registered drivers and loaded
/// modules, and who holds a DRM card open (/proc under the same root).
public struct PCITree: Sendable {
    public var root: String

    public init(root: String = "") {
        self.root = root
    }

    public static func devicePath(_ address: String) -> String { "/sys/bus/pci/devices/\(address)" }

    func text(_ path: String) -> String? {
        (try? Kernel.readText(root + path))?.trimmed
    }

    func linkName(_ path: String) -> String? {
        Kernel.readLink(root + path).map { String($0.split(separator: "/").last ?? "") }
    }

    public func exists(_ address: String) -> Bool { Kernel.exists(root + Self.devicePath(address)) }

    /// The function at `address`, as sysfs shows it now.
    public func function(_ address: String) throws(SpiritError) -> PCIFunction {
        let path = Self.devicePath(address)
        guard let classText = text(path + "/class") else {
            throw SpiritError("no PCI device \(address) (\(path) is missing): `spirit gpu status` lists them")
        }
        let override = text(path + "/driver_override")
        return PCIFunction(
            address: address,
            classCode: UInt32(classText.dropFirst(classText.hasPrefix("0x") ? 2 : 0), radix: 16) ?? 0,
            vendor: text(path + "/vendor") ?? "",
            device: text(path + "/device") ?? "",
            driver: linkName(path + "/driver"),
            driverOverride: override == nil || override == "(null)" || override == "" ? nil : override,
            iommuGroup: linkName(path + "/iommu_group"),
            modalias: text(path + "/modalias") ?? "",
            cards: Kernel.listDirectory(root + path + "/drm").filter { $0.hasPrefix("card") }.sorted())
    }

    /// Every PCI function, in address order.
    public func functions() -> [PCIFunction] {
        Kernel.listDirectory(root + "/sys/bus/pci/devices").sorted().compactMap { try? function($0) }
    }

    /// The addresses in IOMMU group `group`.
    public func groupMembers(_ group: String) -> [String] {
        Kernel.listDirectory(root + "/sys/kernel/iommu_groups/\(group)/devices").sorted()
    }

    /// A PCI driver is registered (its module loaded, or built in).
    public func driverRegistered(_ name: String) -> Bool { Kernel.exists(root + "/sys/bus/pci/drivers/\(name)") }

    /// A module is loaded (or built in with parameters): /sys/module/NAME, with `-` as `_`.
    public func moduleLoaded(_ name: String) -> Bool {
        Kernel.exists(root + "/sys/module/" + name.replacing("-", with: "_"))
    }

    /// A process's program and first argument ("spirit nexus": comm says
    /// only "exe" for Spirit's multi-call binary).
    func commandName(_ pid: String) -> String {
        let words = ((try? Kernel.readFile(root + "/proc/\(pid)/cmdline")) ?? []).split(separator: 0).prefix(2)
            .map { String(decoding: $0, as: UTF8.self).trimmed }
        guard let program = words.first else { return "?" }
        return ([String(program.split(separator: "/").last ?? "")] + words.dropFirst()).joined(separator: " ")
    }

    /// The processes holding /dev/dri/`card` open, as "spirit nexus (pid N)".
    public func cardHolders(_ card: String) -> [String] {
        let target = "/dev/dri/" + card
        var holders: [String] = []
        for pid in Kernel.listDirectory(root + "/proc").filter({ $0.allSatisfy(\.isNumber) }).sorted(by: { Int($0)! < Int($1)! }) {
            let fds = Kernel.listDirectory(root + "/proc/\(pid)/fd")
            guard fds.contains(where: { Kernel.readLink(root + "/proc/\(pid)/fd/\($0)") == target }) else { continue }
            holders.append("\(commandName(pid)) (pid \(pid))")
        }
        return holders
    }
}
