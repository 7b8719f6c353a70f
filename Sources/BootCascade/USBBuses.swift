import SpiritCore

/// What the USB buses hold, read from /sys/bus/usb/devices: when each hub
/// was connected, and the mass-storage interfaces whose disk has not
/// appeared yet. It tells the USB source when no stick plugged in at
/// power-on can still come, so that a machine with a USB controller and no
/// stick does not wait `crom.network.timeout` for one (every real PC has
/// xHCI; research/boot-performance.md).
public struct USBBuses: Sendable, Equatable {
    /// How long a hub takes to bring the devices already plugged into it:
    /// port power-on, the 100 ms debounce, reset and enumeration. QEMU's
    /// xHCI took 350–470 ms under TCG from the root hub to the stick;
    /// hardware takes a few hundred ms a hub level.
    public static let hubSettleMicros: Int64 = 1_000_000

    /// When each hub (a root hub `usbN`, or a hub plugged into a port) was
    /// connected, in CLOCK_BOOTTIME microseconds.
    public var hubsConnectedAt: [Int64]
    /// Mass-storage interfaces (class 08) with no block device under them
    /// yet (usb-storage scans one `delay_use`, 1 s, after it appears), and
    /// devices still being configured (no interface yet: what they are is
    /// not known, and a stick may be one).
    public var storageWithoutDisk: [String]

    public init(hubsConnectedAt: [Int64], storageWithoutDisk: [String]) {
        self.hubsConnectedAt = hubsConnectedAt
        self.storageWithoutDisk = storageWithoutDisk
    }

    /// When the USB source may give up, if no stick has shown up by then:
    /// once every hub has had its time to bring what was plugged in; nil
    /// while a storage device is still to get its disk (its own wait,
    /// bounded by the source's deadline).
    public var givesUpAt: Int64? {
        guard storageWithoutDisk.isEmpty else { return nil }
        return (hubsConnectedAt.max() ?? 0) + Self.hubSettleMicros
    }

    /// Reads the buses now. A hub whose connection time the kernel does not
    /// give (no `power/connected_duration` without CONFIG_PM) counts as
    /// connected at `fallback`.
    public static func read(sys: String = "/sys", now: Int64 = Kernel.bootTimeMicros(), fallback: Int64) -> USBBuses {
        let root = sys + "/bus/usb/devices"
        var hubs: [Int64] = []
        var waiting: [String] = []
        let names = Kernel.listDirectory(root).sorted()
        for name in names {
            let path = root + "/" + name
            if name.contains(":") {
                // An interface, `2-1:1.0`.
                if field(path + "/bInterfaceClass") == "08" && !hasDisk(path, depth: 0) { waiting.append(name) }
            } else if name.hasPrefix("usb") || field(path + "/bDeviceClass") == "09" {
                let connected = field(path + "/power/connected_duration").flatMap { Int64($0) }.map { now - $0 * 1000 }
                hubs.append(connected ?? fallback)
            } else if !names.contains(where: { $0.hasPrefix(name + ":") }) {
                // A device, `2-1`, whose interfaces are not there yet.
                waiting.append(name)
            }
        }
        return USBBuses(hubsConnectedAt: hubs, storageWithoutDisk: waiting)
    }

    static func field(_ path: String) -> String? {
        (try? Kernel.readText(path))?.split(separator: "\n").first.map(String.init)
    }

    /// Whether a SCSI disk hangs under the interface:
    /// `host2/target2:0:0/2:0:0:0/block/sda`.
    static func hasDisk(_ path: String, depth: Int) -> Bool {
        guard depth < 4 else { return false }
        for name in Kernel.listDirectory(path) {
            if name == "block" && depth == 3 { return !Kernel.listDirectory(path + "/block").isEmpty }
            if name.hasPrefix("host") || name.hasPrefix("target") || name.first?.isNumber == true {
                if hasDisk(path + "/" + name, depth: depth + 1) { return true }
            }
        }
        return false
    }
}
