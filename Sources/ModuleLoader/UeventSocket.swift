import CSpirit
import Glibc
import SpiritCore
import SystemPackage

/// The kernel's uevents (NETLINK_KOBJECT_UEVENT): how devices that appear
/// after coldplug (a USB stick plugged in late) are noticed.
public final class UeventSocket: @unchecked Sendable {
    let fd: CInt

    public init() throws(SystemError) {
        let rc = spirit_uevent_socket()
        guard rc >= 0 else { throw SystemError("listen to kernel uevents (netlink)", Errno(rawValue: -rc)) }
        fd = rc
    }

    deinit { close(fd) }

    /// The next uevent, or nil when none came within `milliseconds`.
    public func next(milliseconds: Int) -> Uevent? {
        var buffer = [CChar](repeating: 0, count: 8192)
        let n = spirit_uevent_read(fd, &buffer, CInt(buffer.count), CInt(milliseconds))
        guard n > 0 else { return nil }
        return Uevent.parse(buffer[0..<Int(n)].map { UInt8(bitPattern: $0) })
    }
}
