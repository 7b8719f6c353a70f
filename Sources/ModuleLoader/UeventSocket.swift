import SpiritCore

/// The kernel's uevents (NETLINK_KOBJECT_UEVENT): how devices that appear
/// after coldplug (a USB stick plugged in late) are noticed.
public final class UeventSocket: @unchecked Sendable {
    let fd: CInt

    public init() throws(SystemError) {
        fd = try Kernel.ueventSocket()
    }

    deinit { Kernel.close(fd) }

    /// The next uevent, or nil when none came within `milliseconds`.
    public func next(milliseconds: Int) -> Uevent? {
        Kernel.readUevent(fd, milliseconds: milliseconds).flatMap(Uevent.parse)
    }
}
